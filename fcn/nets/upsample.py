"""Bilinear upsampling kernels and the stride-f transposed convolution that uses them."""
import numpy as np

from fcn.compat import tf, tf1
from fcn.config import UPSAMPLE_MODES


def bilinear_kernel_size(factor):
    """Kernel size for upsampling by `factor`: 2f - f%2 (64 for FCN-32s)."""
    return 2 * factor - factor % 2


def bilinear_filter(size):
    """2-D bilinear weights of a `size` x `size` kernel (Long et al.'s upsample_filt)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    grid = np.ogrid[:size, :size]
    return ((1 - abs(grid[0] - center) / factor) * (1 - abs(grid[1] - center) / factor)).astype(np.float32)


def bilinear_weights(factor, num_classes):
    """[k, k, C, C] transposed-conv weights: the bilinear filter on the class diagonal."""
    size = bilinear_kernel_size(factor)
    weights = np.zeros((size, size, num_classes, num_classes), dtype=np.float32)
    kernel = bilinear_filter(size)
    for c in range(num_classes):
        weights[:, :, c, c] = kernel
    return weights


def bilinear_initializer(factor):
    """A variable initializer giving `bilinear_weights(factor, C)` for shape [k, k, C, C].

    Built from graph ops, not a numpy constant: a [64, 64, C, C] constant would be stored
    in the GraphDef (16 GB for C = 1000).
    """
    def initializer(shape, dtype=tf.float32, partition_info=None):
        del partition_info
        size, _, in_channels, out_channels = [int(d) for d in shape]
        kernel = tf.constant(bilinear_filter(size), dtype=dtype)[:, :, None, None]
        return kernel * tf.eye(in_channels, out_channels, dtype=dtype)[None, None]
    return initializer


def kernel_shape(mode, factor, num_classes):
    """Shape of the variable `mode` learns for one upsampling by `factor` (None: `fixed` has none).

    learnable: Caffe's full [k, k, C, C] layout (class-to-class terms, bilinear on the diagonal);
    per_class: [k, k, C], one bilinear-initialised k x k kernel per class.
    """
    size = bilinear_kernel_size(factor)
    return {'learnable': [size, size, num_classes, num_classes], 'per_class': [size, size, num_classes],
            'fixed': None}[mode]


def per_class_initializer(shape, dtype=tf.float32, partition_info=None):
    """[k, k, C] per-class kernels, each the bilinear filter of size k."""
    del partition_info
    size, _, num_classes = [int(d) for d in shape]
    return tf.tile(tf.constant(bilinear_filter(size), dtype=dtype)[:, :, None], [1, 1, num_classes])


def upsample(inputs, factor, output_shape, mode='learnable', scope='upsample'):
    """Upsamples `inputs` [B, h, w, C] by `factor` to `output_shape` [B, H, W, C].

    Every mode starts as the exact bilinear kernel, so at initialisation all three equal
    bilinear interpolation (scikit-image `rescale(order=1)`: output pixel i sits at input
    position (i - (f-1)/2) / f). `learnable` is a transposed conv with a [k, k, C, C] variable
    (`scope`/weights); `per_class` a depthwise transposed conv with a [k, k, C] variable under
    the same name; `fixed` the depthwise transposed conv with the constant bilinear kernel (no
    variable). None of them is weight-decayed (Caffe: no decay on the `lr_mult: 0` kernels).
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError('model.upsample must be one of %s, got %r' % (', '.join(UPSAMPLE_MODES), mode))
    num_classes = inputs.get_shape().as_list()[-1]
    size = bilinear_kernel_size(factor)
    with tf1.variable_scope(scope):
        if mode == 'learnable':
            weights = tf1.get_variable('weights', shape=kernel_shape(mode, factor, num_classes), dtype=inputs.dtype,
                                       initializer=bilinear_initializer(factor))
            return _conv2d_transpose_aligned(inputs, weights, factor, output_shape)
        if mode == 'per_class':
            kernels = tf1.get_variable('weights', shape=kernel_shape(mode, factor, num_classes), dtype=inputs.dtype,
                                       initializer=per_class_initializer)
        else:
            kernels = per_class_initializer([size, size, num_classes], dtype=inputs.dtype)
        return _depthwise_transpose_aligned(inputs, kernels, factor, output_shape)


def _full_size(inputs, factor):
    """[B, H_full, W_full] of the uncropped transposed conv: (n - 1) f + k per side."""
    size = bilinear_kernel_size(factor)
    shape = tf.shape(inputs)
    return shape[0], (shape[1] - 1) * factor + size, (shape[2] - 1) * factor + size


def _crop(full, factor, output_shape):
    """Caffe's crop of a full transposed conv: offset (k - f) / 2, to `output_shape`."""
    pad = (bilinear_kernel_size(factor) - factor) // 2
    out = full[:, pad:pad + output_shape[1], pad:pad + output_shape[2], :]
    return tf.reshape(out, tf.stack(output_shape))


def _conv2d_transpose_aligned(inputs, weights, factor, output_shape):
    """Transposed conv (all class pairs) with Caffe's crop."""
    batch, full_h, full_w = _full_size(inputs, factor)
    full = tf.nn.conv2d_transpose(
        inputs, weights, tf.stack([batch, full_h, full_w, weights.shape[2]]),
        strides=[1, factor, factor, 1], padding='VALID')
    return _crop(full, factor, output_shape)


def _depthwise_transpose_aligned(inputs, kernels, factor, output_shape):
    """Depthwise transposed conv (class c by kernels[:, :, c] only) with Caffe's crop: the
    input gradient of a depthwise conv, which is what a transposed conv is."""
    batch, full_h, full_w = _full_size(inputs, factor)
    full = tf.nn.depthwise_conv2d_backprop_input(
        tf.stack([batch, full_h, full_w, tf.shape(inputs)[3]]), kernels[:, :, :, None], inputs,
        strides=[1, factor, factor, 1], padding='VALID')
    return _crop(full, factor, output_shape)
