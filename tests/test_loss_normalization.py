"""loss.normalization: valid_pixels (the per-pixel mean) and sum (Caffe's SoftmaxWithLoss with
normalize: false: summed over each image's pixels, averaged over the batch), against NumPy,
over clones and accumulated batches, and the combinations the config refuses."""
import os

import numpy as np
import pytest

from fcn import accumulate, deploy, losses, options
from fcn.compat import tf, tf1
from fcn.config import ConfigError, load_config
from fcn.data.info import DatasetInfo, SplitInfo
from pipeline_fixtures import REPO_ROOT, run_script

DEMO = os.path.join(REPO_ROOT, 'configs', 'demo.yaml')
NUM_CLASSES = 3
IGNORE = 255


def _numpy_cross_entropy(logits, labels, class_weights=None):
    """Per-pixel cross-entropy of the valid pixels (float64), each times its class weight."""
    z = logits.reshape(-1, NUM_CLASSES).astype(np.float64)
    y = labels.reshape(-1)
    valid = y != IGNORE
    z, y = z[valid], y[valid]
    log_norm = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    ce = log_norm - z[np.arange(len(z)), y]
    return ce if class_weights is None else ce * np.asarray(class_weights)[y]


def _run(fn):
    with tf.Graph().as_default():
        value = fn()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return sess.run(value)


def _loss(logits, labels, **kwargs):
    return float(_run(lambda: losses.segmentation_loss(tf.constant(logits), tf.constant(labels), NUM_CLASSES,
                                                       ignore_label=IGNORE, **kwargs)))


def test_hand_made_batch_sums_each_image_and_averages_over_the_batch():
    # two 2x2 images; image 0: uniform logits on 3 valid pixels (log 3 each), one ignored;
    # image 1: one pixel certain and right (0), one with logits (2, 0, 0) labelled 1, two ignored
    logits = np.zeros((2, 2, 2, NUM_CLASSES), np.float32)
    logits[1, 0, 0] = [0.0, 50.0, 0.0]
    logits[1, 0, 1] = [2.0, 0.0, 0.0]
    labels = np.array([[[0, 1], [2, IGNORE]], [[1, 1], [IGNORE, IGNORE]]], np.int32)
    image_1 = np.log(np.exp(2.0) + 2.0)  # -log softmax(2, 0, 0)[1]
    expected_sum = (3 * np.log(3.0) + 0.0 + image_1) / 2  # two images
    expected_mean = (3 * np.log(3.0) + image_1) / 5  # five valid pixels
    assert _loss(logits, labels, normalization='sum') == pytest.approx(expected_sum, rel=1e-6)
    assert _loss(logits, labels, normalization='valid_pixels') == pytest.approx(expected_mean, rel=1e-6)
    assert _loss(logits, labels) == pytest.approx(expected_mean, rel=1e-6)  # the default


@pytest.mark.parametrize('class_weights', [None, [0.5, 2.0, 1.0]])
def test_sum_matches_numpy_on_a_random_batch_with_ignored_pixels(class_weights):
    rng = np.random.RandomState(3)
    logits = (rng.randn(3, 5, 7, NUM_CLASSES) * 3).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, size=(3, 5, 7)).astype(np.int32)
    labels[rng.rand(3, 5, 7) < 0.3] = IGNORE
    labels[2] = IGNORE  # an image with no valid pixel still counts as an image of the batch
    pixel_losses = _numpy_cross_entropy(logits, labels, class_weights)
    value = _loss(logits, labels, class_weights=class_weights, normalization='sum')
    assert value == pytest.approx(pixel_losses.sum() / 3, rel=1e-5)
    assert value != pytest.approx(pixel_losses.mean(), rel=1e-2)


def test_sum_of_an_all_ignored_batch_is_zero():
    logits = np.ones((2, 3, 3, NUM_CLASSES), np.float32)
    assert _loss(logits, np.full((2, 3, 3), IGNORE, np.int32), normalization='sum') == 0.0


def test_focal_sums_like_the_cross_entropy():
    rng = np.random.RandomState(4)
    logits = rng.randn(2, 4, 4, NUM_CLASSES).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, size=(2, 4, 4)).astype(np.int32)
    labels[0, 0] = IGNORE
    ce = _numpy_cross_entropy(logits, labels)
    gamma = 2.0
    focal = (1 - np.exp(-ce)) ** gamma * ce
    value = _run(lambda: losses.focal_loss(tf.constant(logits), tf.constant(labels), NUM_CLASSES, IGNORE,
                                           gamma=gamma, normalization='sum'))
    assert float(value) == pytest.approx(focal.sum() / 2, rel=1e-5)


def _gradient_of_sum_loss(images_per_run, num_clones=1, accumulate_steps=1):
    """The gradient of a per-pixel linear classifier (logits = x W) under the sum-normalised
    loss on the same 4 images, taken as `num_clones` clones (slim's 1/num_clones loss scaling)
    or `accumulate_steps` accumulated runs of `images_per_run` images; -> (loss, gradient)."""
    rng = np.random.RandomState(5)
    features = rng.randn(4, 3, 3, 2).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, size=(4, 3, 3)).astype(np.int32)
    labels[rng.rand(4, 3, 3) < 0.25] = IGNORE
    initial = rng.randn(2, NUM_CLASSES).astype(np.float32)
    with tf.Graph().as_default():
        runs = iter([(features[i:i + images_per_run], labels[i:i + images_per_run])
                     for i in range(0, 4, images_per_run)])
        weights = tf1.get_variable('w', initializer=initial)
        options_ = losses.LossOptions(normalization='sum')

        def clone_fn():
            x, y = next(runs)
            logits = tf.einsum('bhwc,ck->bhwk', tf.constant(x), weights)
            loss, _ = losses.weighted_loss(logits, tf.constant(y), NUM_CLASSES, IGNORE, options_)
            tf1.losses.add_loss(loss)

        if accumulate_steps == 1:
            clones = deploy.create_clones(deploy.DeploymentConfig(num_clones=num_clones, clone_on_cpu=True), clone_fn)
            loss, grads = deploy.optimize_clones(clones, tf1.train.GradientDescentOptimizer(1.0))
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                return sess.run([loss, grads[0][0]])
        x = tf1.placeholder(tf.float32, [images_per_run, 3, 3, 2])
        y = tf1.placeholder(tf.int32, [images_per_run, 3, 3])
        loss, _ = losses.weighted_loss(tf.einsum('bhwc,ck->bhwk', x, weights), y, NUM_CLASSES, IGNORE, options_)
        accumulator = accumulate.GradientAccumulator(
            tf1.train.GradientDescentOptimizer(1.0).compute_gradients(loss, [weights]), loss, accumulate_steps)
        (mean_grad, _), = accumulator.mean_gradients()
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            batches = list(runs)
            for bx, by in batches[:-1]:
                sess.run(accumulator.add_op, {x: bx, y: by})
            bx, by = batches[-1]
            return sess.run([accumulator.mean_loss, mean_grad], {x: bx, y: by})


def test_sum_over_clones_and_accumulated_batches_is_the_sum_loss_of_the_whole_batch():
    loss, grad = _gradient_of_sum_loss(4)
    for kwargs in ({'images_per_run': 2, 'num_clones': 2}, {'images_per_run': 1, 'num_clones': 4},
                   {'images_per_run': 2, 'accumulate_steps': 2}, {'images_per_run': 1, 'accumulate_steps': 4}):
        other_loss, other_grad = _gradient_of_sum_loss(**kwargs)
        assert other_loss == pytest.approx(loss, rel=1e-5), kwargs
        np.testing.assert_allclose(other_grad, grad, rtol=1e-5, atol=1e-6, err_msg=str(kwargs))


@pytest.mark.parametrize('terms, top_k, message', [
    ('dice', 1.0, 'loss.normalization sum needs losses that are sums over pixels (cross_entropy, focal); '
                  'loss.terms has dice'),
    ('lovasz', 1.0, 'loss.terms has lovasz'),
    ('cross_entropy', 0.5, 'loss.normalization sum cannot be combined with loss.top_k_percent 0.5 < 1'),
])
def test_weighted_loss_refuses_what_cannot_be_summed(terms, top_k, message):
    options_ = losses.LossOptions(terms=(losses.LossTerm(terms),), top_k_percent=top_k, normalization='sum')
    with tf.Graph().as_default(), pytest.raises(ValueError) as error:
        losses.weighted_loss(tf.zeros([1, 2, 2, NUM_CLASSES]), tf.zeros([1, 2, 2], tf.int32), NUM_CLASSES, IGNORE,
                             options_)
    assert message in str(error.value)


@pytest.mark.parametrize('overrides, message', [
    (['loss.terms=[{name: cross_entropy}, {name: dice, weight: 0.5}]'],
     '--set: loss.normalization sum needs losses that are sums over pixels (cross_entropy, focal); loss.terms has '
     'dice (a ratio over the whole batch)'),
    (['loss.terms=[{name: lovasz}]'], 'loss.terms has lovasz'),
    (['loss.top_k_percent=0.25'], '--set: loss.normalization sum cannot be combined with loss.top_k_percent 0.25'),
])
def test_the_config_refuses_sum_with_ratio_losses_and_hard_mining(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(DEMO, ['loss.normalization=sum'] + overrides)
    assert message in str(error.value)


def test_the_config_reaches_the_loss_options():
    cfg = load_config(DEMO, ['loss.normalization=sum', 'loss.class_weights=[1, 2, 1]',
                             'loss.terms=[{name: cross_entropy}, {name: focal, weight: 0.5}]'])
    assert options.loss(cfg, _info()).normalization == 'sum'
    assert options.loss(load_config(DEMO), _info()).normalization == 'valid_pixels'
    with pytest.raises(ConfigError, match=r"loss\.normalization must be one of valid_pixels, sum, got 'mean'"):
        load_config(DEMO, ['loss.normalization=mean'])


def _info():
    return DatasetInfo(num_classes=3, class_names=('a', 'b', 'c'), palette=((0, 0, 0),) * 3, ignore_label=IGNORE,
                       splits={'train': SplitInfo(10)})


def test_train_py_refuses_sum_with_dice_in_one_line():
    run = run_script('train.py', '--config', 'configs/demo.yaml', '--set', 'loss.normalization=sum',
                     '--set', 'loss.terms=[{name: dice}]')
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert run.stderr.strip() == ('error: --set: loss.normalization sum needs losses that are sums over pixels '
                                  '(cross_entropy, focal); loss.terms has dice (a ratio over the whole batch): use '
                                  'loss.normalization valid_pixels or drop it')
