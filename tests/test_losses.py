"""fcn.losses against numpy and hand computations."""
import math
import warnings

import numpy as np
import pytest

from fcn import losses
from fcn.compat import tf, tf1
from fcn.data.info import DatasetInfo, SplitInfo

NUM_CLASSES = 3


def _random_batch(seed=0, shape=(2, 4, 5), ignore_fraction=0.3):
    rng = np.random.RandomState(seed)
    logits = rng.randn(*shape, NUM_CLASSES).astype(np.float32) * 2.0
    labels = rng.randint(0, NUM_CLASSES, size=shape)
    labels[rng.rand(*shape) < ignore_fraction] = 255
    return logits, labels


def _numpy_pixel_losses(logits, labels):
    """Cross-entropy of every valid pixel (label != 255), in flattened order."""
    flat_logits = logits.reshape(-1, NUM_CLASSES).astype(np.float64)
    flat_labels = labels.reshape(-1)
    valid = flat_labels != 255
    z = flat_logits[valid]
    log_norm = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    return log_norm - z[np.arange(len(z)), flat_labels[valid]], flat_labels[valid]


def _loss_value(logits, labels, **kwargs):
    with tf.Graph().as_default():
        loss = losses.segmentation_loss(tf.constant(logits), tf.constant(labels), NUM_CLASSES, **kwargs)
        with tf1.Session() as sess:
            return sess.run(loss)


def test_loss_matches_numpy_and_ignores_255():
    logits, labels = _random_batch()
    expected, _ = _numpy_pixel_losses(logits, labels)
    assert (labels == 255).any()
    assert _loss_value(logits, labels) == pytest.approx(expected.mean(), rel=1e-5)


def test_labels_with_trailing_channel_axis():
    logits, labels = _random_batch(seed=1)
    expected, _ = _numpy_pixel_losses(logits, labels)
    assert _loss_value(logits, labels[..., None]) == pytest.approx(expected.mean(), rel=1e-5)


def test_custom_ignore_label():
    logits, labels = _random_batch(seed=2, ignore_fraction=0.0)
    expected, _ = _numpy_pixel_losses(logits, np.where(labels == 0, 255, labels))
    assert _loss_value(logits, labels, ignore_label=0) == pytest.approx(expected.mean(), rel=1e-5)


@pytest.mark.parametrize('kwargs', [{}, {'class_weights': [1.0, 2.0, 3.0]}, {'top_k_percent': 0.5}])
def test_all_ignored_gives_zero_not_nan(kwargs):
    logits, _ = _random_batch()
    labels = np.full(logits.shape[:-1], 255)
    value = _loss_value(logits, labels, **kwargs)
    assert value == 0.0 and not math.isnan(value)


def test_class_weights_scale_each_pixel_and_divide_by_valid_count():
    logits, labels = _random_batch(seed=3)
    pixel_losses, pixel_labels = _numpy_pixel_losses(logits, labels)
    weights = [0.5, 2.0, 0.0]
    expected = sum(weights[c] * l for c, l in zip(pixel_labels, pixel_losses)) / len(pixel_losses)
    assert _loss_value(logits, labels, class_weights=weights) == pytest.approx(expected, rel=1e-5)


def test_class_weights_of_wrong_length_are_rejected():
    logits, labels = _random_batch()
    with pytest.raises(ValueError, match='class_weights'):
        _loss_value(logits, labels, class_weights=[1.0, 2.0])


def test_top_k_keeps_the_hardest_pixels():
    # Four valid pixels whose losses are known by construction, one ignored pixel.
    logits = np.zeros((1, 1, 5, NUM_CLASSES), np.float32)
    logits[0, 0, :, 0] = [4.0, 1.0, -2.0, 0.0, 9.0]
    labels = np.array([[[0, 0, 0, 0, 255]]])
    pixel_losses, _ = _numpy_pixel_losses(logits, labels)
    hardest_two = np.sort(pixel_losses)[-2:]  # pixels 2 and 3 (logit -2 and 0)
    assert _loss_value(logits, labels, top_k_percent=0.5) == pytest.approx(hardest_two.mean(), rel=1e-6)
    # ceil(0.3 * 4) = 2 pixels too; the ignored pixel never competes.
    assert _loss_value(logits, labels, top_k_percent=0.3) == pytest.approx(hardest_two.mean(), rel=1e-6)


def test_top_k_on_random_batch_with_weights_and_tensor_fraction():
    logits, labels = _random_batch(seed=4)
    pixel_losses, pixel_labels = _numpy_pixel_losses(logits, labels)
    weights = np.array([1.0, 3.0, 0.5])
    weighted = pixel_losses * weights[pixel_labels]
    k = math.ceil(0.25 * len(weighted))
    expected = np.sort(weighted)[-k:].mean()
    with tf.Graph().as_default():
        fraction = tf1.placeholder(tf.float32, [])
        loss = losses.segmentation_loss(tf.constant(logits), tf.constant(labels), NUM_CLASSES,
                                        class_weights=weights.tolist(), top_k_percent=fraction)
        with tf1.Session() as sess:
            assert sess.run(loss, {fraction: 0.25}) == pytest.approx(expected, rel=1e-5)
            assert sess.run(loss, {fraction: 1.0}) == pytest.approx(weighted.mean(), rel=1e-5)


def test_top_k_percent_out_of_range_is_rejected():
    logits, labels = _random_batch()
    with pytest.raises(ValueError, match='top_k_percent'):
        _loss_value(logits, labels, top_k_percent=0.0)


def test_annealed_top_k_is_linear_then_flat():
    with tf.Graph().as_default():
        step = tf1.placeholder(tf.int64, [])
        top_k = losses.annealed_top_k(step, 0.2, 100)
        with tf1.Session() as sess:
            values = [sess.run(top_k, {step: s}) for s in (0, 25, 100, 500)]
    assert values == pytest.approx([1.0, 0.8, 0.2, 0.2], rel=1e-6)


def test_annealed_top_k_without_annealing_is_the_final_value():
    assert losses.annealed_top_k(tf.constant(5), 0.3, 0) == 0.3


def test_median_frequency_weights():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        weights = losses.class_weights_from_counts([10, 30, 0, 60], 'median_frequency', [100, 100, 0, 100])
    # freq = 0.1, 0.3, 0.6 over the present classes; median 0.3.
    np.testing.assert_allclose(weights, [3.0, 1.0, 0.0, 0.5])


def test_median_frequency_needs_present_pixel_counts():
    with pytest.raises(ValueError, match='class_present_pixel_counts'):
        losses.class_weights_from_counts([10, 30, 60], 'median_frequency')


def test_median_frequency_with_present_image_pixels():
    # Eigen & Fergus: freq_c = count_c / pixels of the images containing c.
    weights = losses.class_weights_from_counts([10, 30, 60], 'median_frequency', present_pixel_counts=[20, 100, 100])
    np.testing.assert_allclose(weights, [0.5 / 0.5, 0.5 / 0.3, 0.5 / 0.6])


def test_inverse_frequency_weights_average_to_one_per_pixel():
    counts = np.array([10, 30, 0, 60])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        weights = losses.class_weights_from_counts(counts, 'inverse_frequency')
    np.testing.assert_allclose(weights, [100 / 30, 100 / 90, 0.0, 100 / 180])
    assert (weights * counts).sum() / counts.sum() == pytest.approx(1.0)


def test_none_method_and_empty_counts():
    np.testing.assert_array_equal(losses.class_weights_from_counts([5, 0], 'none'), [1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        np.testing.assert_array_equal(losses.class_weights_from_counts([0, 0], 'median_frequency', [0, 0]),
                                      [0.0, 0.0])
    with pytest.raises(ValueError, match='unknown class weight method'):
        losses.class_weights_from_counts([1, 2], 'sqrt')


SPLIT = SplitInfo(num_images=3, class_pixel_counts=(10, 30, 60), class_present_pixel_counts=(100, 100, 100))


def test_resolve_class_weights_from_config_values():
    assert losses.resolve_class_weights(None, SPLIT) is None
    assert losses.resolve_class_weights('none', SPLIT) is None
    assert losses.resolve_class_weights([1, 2, 0.5], SPLIT) == [1.0, 2.0, 0.5]
    assert losses.resolve_class_weights([1, 2], None, num_classes=2) == [1.0, 2.0]
    assert losses.resolve_class_weights('median_frequency', SPLIT) == pytest.approx([3.0, 1.0, 0.5])


def test_resolve_class_weights_errors_name_the_key():
    with pytest.raises(ValueError, match=r'loss\.class_weights has 2 entries but there are 3 classes'):
        losses.resolve_class_weights([1.0, 2.0], SPLIT)
    with pytest.raises(ValueError, match=r'loss\.class_weights.*class_pixel_counts'):
        losses.resolve_class_weights('inverse_frequency', SplitInfo(num_images=3))
    with pytest.raises(ValueError, match=r'loss\.class_weights.*class_present_pixel_counts'):
        losses.resolve_class_weights('median_frequency', SplitInfo(3, class_pixel_counts=(1, 2, 3)))
    with pytest.raises(ValueError, match=r'loss\.class_weights: unknown method'):
        losses.resolve_class_weights('median', SPLIT)
    with pytest.raises(ValueError, match=r'loss\.class_weights must hold non-negative numbers'):
        losses.resolve_class_weights([1.0, -1.0, 'x'], SPLIT)
    with pytest.raises(ValueError, match=r'loss\.class_weights must be null'):
        losses.resolve_class_weights(3.0, SPLIT)


def test_median_frequency_weights_of_a_built_dataset_match_a_hand_computation(tmp_path):
    """Three 4x4 masks, built by the folder builder; the statistics and weights worked out by hand.

    a: 8 px class 0, 8 px class 1             (16 labelled)
    b: 12 px class 0, 2 px class 2, 2 px 255  (14 labelled)
    c: 4 px class 1, 4 px class 2, 8 px 255   (8 labelled)
    pixels:   c0 = 20, c1 = 12, c2 = 6
    present:  c0 in a, b: 16 + 14 = 30; c1 in a, c: 16 + 8 = 24; c2 in b, c: 14 + 8 = 22
    freq:     2/3, 1/2, 3/11; median 1/2 -> weights 3/4, 1, 11/6
    """
    from fcn.data import build, folder
    from datasets_fixtures import write_jpeg, write_png
    masks = {
        'a': np.array([[0] * 4, [0] * 4, [1] * 4, [1] * 4]),
        'b': np.array([[0] * 4, [0] * 4, [0] * 4, [2, 2, 255, 255]]),
        'c': np.array([[1] * 4, [2] * 4, [255] * 4, [255] * 4]),
    }
    for stem, mask in masks.items():
        write_jpeg(str(tmp_path / 'images' / (stem + '.jpg')), np.full((4, 4, 3), 128, np.uint8))
        write_png(str(tmp_path / 'masks' / (stem + '.png')), mask.astype(np.uint8))
    (tmp_path / 'classes.txt').write_text('bg\none\ntwo\n')
    (tmp_path / 'train.txt').write_text('a\nb\nc\n')
    spec = folder.folder_spec(str(tmp_path / 'images'), str(tmp_path / 'masks'), str(tmp_path / 'classes.txt'),
                              train_list=str(tmp_path / 'train.txt'))
    build.build(spec, str(tmp_path / 'out'))
    split = DatasetInfo.read(str(tmp_path / 'out')).split('train')
    assert split.class_pixel_counts == (20, 12, 6)
    assert split.class_present_pixel_counts == (30, 24, 22)
    assert split.class_image_counts == (2, 2, 2)
    assert split.ignored_pixels == 10
    weights = losses.resolve_class_weights('median_frequency', split, 3)
    assert weights == pytest.approx([3 / 4, 1.0, 11 / 6])
