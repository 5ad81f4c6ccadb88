import numpy as np
import pytest
from skimage.transform import rescale

from fcn.compat import tf, tf1
from fcn.nets import upsample


def test_kernel_sizes_and_fcn32_shape():
    assert upsample.bilinear_kernel_size(32) == 64
    assert upsample.bilinear_kernel_size(3) == 5
    weights = upsample.bilinear_weights(32, 4)
    assert weights.shape == (64, 64, 4, 4)
    # only the class diagonal is non-zero
    off_diagonal = weights.copy()
    for c in range(4):
        off_diagonal[:, :, c, c] = 0
    assert not off_diagonal.any()


def test_filter_matches_formula():
    size = 4  # factor 2: center 1.5
    expected = np.array([[(1 - abs(y - 1.5) / 2) * (1 - abs(x - 1.5) / 2) for x in range(4)] for y in range(4)])
    np.testing.assert_allclose(upsample.bilinear_filter(size), expected, rtol=1e-6)
    size = 5  # factor 3: center 2
    expected = np.array([[(1 - abs(y - 2) / 3) * (1 - abs(x - 2) / 3) for x in range(5)] for y in range(5)])
    np.testing.assert_allclose(upsample.bilinear_filter(size), expected, rtol=1e-6)


def _upsample(image, factor):
    height, width, channels = image.shape
    with tf.Graph().as_default():
        inputs = tf.constant(image[None])
        out = upsample.upsample_conv_transpose(inputs, factor, [1, height * factor, width * factor, channels])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(out)[0]


@pytest.mark.parametrize('factor', [2, 3, 4, 5, 6, 7, 8])
def test_transposed_conv_equals_skimage_rescale(factor):
    """The bilinear-initialised transposed conv is exactly rescale(order=1, mode='constant').

    clip=False: rescale's default clips to the input's value range, which would hide the
    zero-padding attenuation at the borders that both computations share.
    """
    rng = np.random.RandomState(factor)
    image = rng.rand(5, 7, 3).astype(np.float32)
    expected = np.stack([rescale(image[:, :, c], factor, order=1, mode='constant', anti_aliasing=False, clip=False)
                         for c in range(3)], axis=-1)
    result = _upsample(image, factor)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_initializer_gives_the_numpy_weights():
    with tf.Graph().as_default():
        value = upsample.bilinear_initializer(3)([5, 5, 4, 4])
        with tf1.Session() as sess:
            np.testing.assert_array_equal(sess.run(value), upsample.bilinear_weights(3, 4))
