"""Bilinear upsampling kernels and the stride-f transposed convolution that uses them."""
import numpy as np

from fcn.compat import slim, tf, tf1


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


def upsample_conv_transpose(inputs, factor, output_shape, trainable=True, scope='upsample'):
    """Upsamples `inputs` [B, h, w, C] by `factor` to `output_shape` [B, H, W, C].

    The kernel starts as the exact bilinear kernel, so at initialisation this equals
    bilinear interpolation; with `trainable` it is learned with the rest of the net.
    Padding is chosen so output pixel i sits at input position (i - (f-1)/2) / f,
    the same alignment as scikit-image `rescale(order=1)`.
    """
    num_classes = inputs.get_shape().as_list()[-1]
    size = bilinear_kernel_size(factor)
    with tf1.variable_scope(scope):
        weights = tf1.get_variable(
            'weights', shape=[size, size, num_classes, num_classes], dtype=inputs.dtype,
            initializer=bilinear_initializer(factor),
            trainable=trainable)
        return _conv2d_transpose_aligned(inputs, weights, factor, output_shape)


def _conv2d_transpose_aligned(inputs, weights, factor, output_shape):
    """Transposed conv with Caffe's crop: pad input by 1, take a window offset by the kernel."""
    size = bilinear_kernel_size(factor)
    pad = (size - factor) // 2  # Caffe-style crop of a full transposed conv
    shape = tf.shape(inputs)
    full_h = (shape[1] - 1) * factor + size
    full_w = (shape[2] - 1) * factor + size
    full = tf.nn.conv2d_transpose(
        inputs, weights, tf.stack([shape[0], full_h, full_w, weights.shape[2]]),
        strides=[1, factor, factor, 1], padding='VALID')
    out = full[:, pad:pad + output_shape[1], pad:pad + output_shape[2], :]
    return tf.reshape(out, tf.stack(output_shape))
