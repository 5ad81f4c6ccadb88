"""FCN-32s: VGG-16 trunk -> fc8 scores (num_classes) -> 32x learnable bilinear upsampling."""
from fcn.compat import slim, tf, tf1
from fcn.nets import upsample, vgg

STRIDE = 32
HEAD_SCOPE = 'fcn'


def padded_size(size, multiple=STRIDE):
    return (size + multiple - 1) // multiple * multiple


def pad_to_stride(images):
    """Pads mean-subtracted images at the bottom/right to a multiple of 32 with zeros (= the mean)."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    pad_h = padded_size(height) - height
    pad_w = padded_size(width) - width
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def fcn32s(images, num_classes, is_training=False, width=1.0, dropout_keep_prob=0.5,
           weight_decay=0.0005, upsample_trainable=True):
    """Per-pixel class logits [B, H, W, num_classes] for RGB `images` [B, H, W, 3] in [0, 255].

    Any H, W: inputs are padded to a multiple of 32 and the logits cropped back, so
    train, eval, export and predict all share this one function.
    Variables: vgg_16/* (as vgg_16.ckpt, fc8 with num_classes outputs) and fcn/upscore32.
    """
    inputs = pad_to_stride(vgg.subtract_mean(images))
    with tf1.variable_scope(vgg.SCOPE, values=[inputs]):
        with slim.arg_scope(vgg.arg_scope(weight_decay)):
            fc7, end_points = vgg.vgg_16_trunk(inputs, width, is_training, dropout_keep_prob)
            # Zero-initialised score layer, as in Long et al.: training starts from uniform scores.
            scores = slim.conv2d(fc7, num_classes, [1, 1], activation_fn=None,
                                 weights_initializer=tf1.zeros_initializer(), scope='fc8')
    end_points['fc8'] = scores
    padded_shape = tf.shape(inputs)
    with tf1.variable_scope(HEAD_SCOPE):
        logits = upsample.upsample_conv_transpose(
            scores, STRIDE, [padded_shape[0], padded_shape[1], padded_shape[2], num_classes],
            trainable=upsample_trainable, scope='upscore32')
    image_shape = tf.shape(images)
    logits = logits[:, :image_shape[1], :image_shape[2], :]
    end_points['logits'] = logits
    return logits, end_points


def build_model(images, cfg, num_classes, is_training):
    """fcn32s configured from the `model` section of a config."""
    model = cfg.model
    if model.name != 'fcn32s':
        raise ValueError('model.name %r is not available (valid: fcn32s)' % model.name)
    if model.upsample not in ('learnable', 'fixed'):
        raise ValueError('model.upsample must be learnable or fixed, got %r' % model.upsample)
    return fcn32s(images, num_classes, is_training=is_training, width=model.width,
                  dropout_keep_prob=model.dropout_keep_prob, weight_decay=model.weight_decay,
                  upsample_trainable=model.upsample == 'learnable')
