"""Bilinear upsampling: the kernel formula, the three model.upsample modes (learnable: Caffe's
classes x classes kernel; per_class: one kernel per class; fixed: the constant bilinear kernel),
their variables, and their output: scikit-image rescale(order=1) at initialisation."""
import zlib

import numpy as np
import pytest
from skimage.transform import rescale

from fcn.compat import tf, tf1
from fcn.nets import fcn, upsample


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


def _upsample(image, factor, mode):
    """(output, {variable name: shape}) of upsample() on one image [h, w, C]."""
    height, width, channels = image.shape
    with tf.Graph().as_default():
        inputs = tf.constant(image[None])
        out = upsample.upsample(inputs, factor, [1, height * factor, width * factor, channels], mode=mode)
        variables = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(out)[0], variables


@pytest.mark.parametrize('mode', ['learnable', 'per_class', 'fixed'])
@pytest.mark.parametrize('factor', [2, 3, 4, 5, 6, 7, 8])
def test_every_mode_equals_skimage_rescale_at_initialisation(factor, mode):
    """Each mode at initialisation is exactly rescale(order=1, mode='constant').

    clip=False: rescale's default clips to the input's value range, which would hide the
    zero-padding attenuation at the borders that both computations share.
    """
    rng = np.random.RandomState(factor)
    image = rng.rand(5, 7, 3).astype(np.float32)
    expected = np.stack([rescale(image[:, :, c], factor, order=1, mode='constant', anti_aliasing=False, clip=False)
                         for c in range(3)], axis=-1)
    result, _ = _upsample(image, factor, mode)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_variables_of_each_mode():
    """learnable keeps Caffe's [k, k, C, C] layout and name (old checkpoints load); per_class is
    [k, k, C] under the same name; fixed has no variable."""
    image = np.ones((4, 4, 7), np.float32)
    assert _upsample(image, 32, 'learnable')[1] == {'upsample/weights': [64, 64, 7, 7]}
    assert _upsample(image, 32, 'per_class')[1] == {'upsample/weights': [64, 64, 7]}
    assert _upsample(image, 32, 'fixed')[1] == {}
    for mode in ('learnable', 'per_class', 'fixed'):
        shape = upsample.kernel_shape(mode, 32, 7)
        assert shape == _upsample(image, 32, mode)[1].get('upsample/weights')


def test_per_class_equals_fixed_at_initialisation_in_the_net():
    """FCN-8s with per_class upsampling gives fixed's logits before training (same trunk values)."""
    images = np.random.RandomState(0).uniform(0, 255, (1, 70, 90, 3)).astype(np.float32)
    logits = {}
    for mode in ('fixed', 'per_class'):
        with tf.Graph().as_default():
            out, _ = fcn.fcn(tf.constant(images), 4, 'fcn8s', width=0.0625, upsample=mode)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                for var in tf1.global_variables():  # the same random trunk and score layers in both
                    if 'upscore' not in var.op.name:
                        rng = np.random.RandomState(zlib.crc32(var.op.name.encode()))
                        var.load(rng.standard_normal(var.shape.as_list()).astype(np.float32) * 0.1, sess)
                logits[mode] = sess.run(out)
    assert np.abs(logits['fixed']).max() > 0
    np.testing.assert_allclose(logits['per_class'], logits['fixed'], atol=1e-5 * np.abs(logits['fixed']).max())


def test_per_class_kernels_train_and_fixed_has_nothing_to_train():
    """One SGD step on a loss of the upsampled scores changes each class's own kernel."""
    rng = np.random.RandomState(1)
    scores = rng.standard_normal((1, 3, 4, 5)).astype(np.float32)
    target = rng.standard_normal((1, 12, 16, 5)).astype(np.float32)
    with tf.Graph().as_default():
        out = upsample.upsample(tf.constant(scores), 4, [1, 12, 16, 5], mode='per_class')
        loss = tf.reduce_sum(tf.square(out - target))
        kernels, = tf1.trainable_variables()
        step = tf1.train.GradientDescentOptimizer(0.01).minimize(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = sess.run(kernels)
            sess.run(step)
            after = sess.run(kernels)
    np.testing.assert_array_equal(before, np.stack([upsample.bilinear_filter(8)] * 5, axis=-1))
    moved = np.abs(after - before).max(axis=(0, 1))
    assert (moved > 1e-4).all(), moved  # every class's kernel moved
    with tf.Graph().as_default():
        upsample.upsample(tf.constant(scores), 4, [1, 12, 16, 5], mode='fixed')
        assert tf1.trainable_variables() == []


def test_unknown_mode_is_an_error():
    with tf.Graph().as_default(), pytest.raises(ValueError, match="model.upsample must be one of .*'cubic'"):
        upsample.upsample(tf.zeros([1, 2, 2, 3]), 2, [1, 4, 4, 3], mode='cubic')


def test_initializer_gives_the_numpy_weights():
    with tf.Graph().as_default():
        value = upsample.bilinear_initializer(3)([5, 5, 4, 4])
        with tf1.Session() as sess:
            np.testing.assert_array_equal(sess.run(value), upsample.bilinear_weights(3, 4))


@pytest.mark.parametrize('mode', ['learnable', 'per_class'])
def test_upsampling_kernels_get_no_weight_decay(mode):
    """model.weight_decay reaches the conv weights (trunk, fc8, skips), not the upsampling kernels."""
    with tf.Graph().as_default():
        fcn.fcn(tf1.placeholder(tf.float32, [1, 64, 64, 3]), 3, 'fcn16s', width=0.0625, upsample=mode)
        decayed = ' '.join(loss.name for loss in tf1.get_collection(tf1.GraphKeys.REGULARIZATION_LOSSES))
        kernels = [v.op.name for v in tf1.trainable_variables() if 'upscore' in v.op.name]
    assert 'score_pool4' in decayed and 'fc8' in decayed
    assert len(kernels) == 2 and 'upscore' not in decayed
