"""VGG-16 as a fully convolutional trunk, under the exact scopes of TF-Slim's vgg_16.ckpt.

At `width` 1.0 every variable has the name and shape of the released checkpoint
(`vgg_16/conv1/conv1_1/weights` ... `vgg_16/fc7/biases`); a smaller width scales
every channel count, for tests and demos on small machines.
"""
from fcn.compat import slim, tf, tf1
from fcn.nets import MEAN_RGB  # noqa: F401 (vgg.MEAN_RGB)

SCOPE = 'vgg_16'
# (block name, number of convs, channels) as in vgg_16.ckpt
BLOCKS = (('conv1', 2, 64), ('conv2', 2, 128), ('conv3', 3, 256), ('conv4', 3, 512), ('conv5', 3, 512))
FC_CHANNELS = 4096


def scaled(channels, width):
    """Channel count at a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


def arg_scope(weight_decay=0.0005):
    """ReLU convs with L2 weight decay and SAME padding, as TF-Slim's vgg_arg_scope."""
    with slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu,
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        biases_initializer=tf1.zeros_initializer()):
        with slim.arg_scope([slim.conv2d], padding='SAME') as scope:
            return scope


def vgg_16_trunk(inputs, width=1.0, is_training=False, dropout_keep_prob=0.5):
    """conv1..conv5 + fc6 (7x7, SAME) + fc7 (1x1) on mean-subtracted RGB inputs.

    Returns (fc7, end_points); fc7 has stride 32 and `scaled(4096, width)` channels.
    Must be called inside `tf1.variable_scope(SCOPE)`.
    """
    end_points = {}
    net = inputs
    for name, repeats, channels in BLOCKS:
        net = slim.repeat(net, repeats, slim.conv2d, scaled(channels, width), [3, 3], scope=name)
        end_points[name] = net
        net = slim.max_pool2d(net, [2, 2], scope='pool' + name[-1])
        end_points['pool' + name[-1]] = net
    net = slim.conv2d(net, scaled(FC_CHANNELS, width), [7, 7], padding='SAME', scope='fc6')
    net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout6')
    net = slim.conv2d(net, scaled(FC_CHANNELS, width), [1, 1], scope='fc7')
    net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout7')
    end_points['fc7'] = net
    return net, end_points


def subtract_mean(images):
    """uint8/float RGB in [0, 255] -> float32 minus the ImageNet mean, as vgg_16.ckpt expects."""
    return tf.cast(images, tf.float32) - tf.constant(MEAN_RGB, dtype=tf.float32)
