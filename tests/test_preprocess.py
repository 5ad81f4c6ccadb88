"""Training augmentation keeps image and label aligned, pads with mean / ignore, crops exactly."""
import numpy as np
import pytest

from fcn.compat import tf, tf1
from fcn.input import preprocess
from fcn.nets.vgg import MEAN_RGB

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)


def blocks(height=48, width=64):
    """A label of 3 rectangles and an image whose colour is the class colour."""
    label = np.zeros((height, width), np.uint8)
    label[:, width // 3:] = 1
    label[height // 2:, 2 * width // 3:] = 2
    return COLOURS[label], label


def augment(image, label, crop, **aug):
    options = dict(min_scale=1.0, max_scale=1.0, scale_step=0.0, flip=False,
                   brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    options.update(aug)
    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        out = preprocess.preprocess_train(tf.constant(image), tf.constant(label[:, :, None]),
                                          preprocess.AugmentOptions(crop_size=crop, **options))
        with tf1.Session() as sess:
            return [sess.run(out) for _ in range(6)]


def test_identity_when_crop_equals_image_and_no_scaling():
    image, label = blocks(64, 64)
    for out_image, out_label in augment(image, label, 64):
        np.testing.assert_allclose(out_image, image, atol=1e-3)
        np.testing.assert_array_equal(out_label, label)


def erode(mask):
    """Binary erosion by one pixel; the crop's own edges count as borders."""
    out = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    out[[0, -1], :] = False
    out[:, [0, -1]] = False
    return out


@pytest.mark.parametrize('scale', [0.5, 1.5, 2.0])
def test_scaled_crops_keep_image_and_label_aligned(scale):
    image, label = blocks()
    for out_image, out_label in augment(image, label, 40, min_scale=scale, max_scale=scale):
        assert out_image.shape == (40, 40, 3) and out_label.shape == (40, 40)
        assert set(np.unique(out_label)) <= {0, 1, 2, 255}
        for c in range(3):
            inner = (out_label == c)
            # away from class borders (bilinear mixes source pixels up to `scale` output pixels apart)
            eroded = erode(erode(inner))
            if eroded.any():
                np.testing.assert_allclose(out_image[eroded], np.broadcast_to(COLOURS[c], out_image[eroded].shape), atol=1)


def test_small_images_pad_with_mean_and_ignore():
    image, label = blocks(20, 24)
    for out_image, out_label in augment(image, label, 32):
        np.testing.assert_array_equal(out_label[20:], 255)
        np.testing.assert_array_equal(out_label[:, 24:], 255)
        np.testing.assert_allclose(out_image[20:, 0], np.broadcast_to(MEAN_RGB, (12, 3)), atol=1e-3)
        np.testing.assert_array_equal(out_label[:20, :24], label)  # scale 1: the image itself, top-left


def test_flip_mirrors_image_and_label_together():
    image, label = blocks(32, 32)
    outputs = augment(image, label, 32, flip=True)
    flipped = [np.array_equal(out_label, label[:, ::-1]) for _, out_label in outputs]
    assert any(flipped) and not all(flipped)  # random: both happen over 6 draws with this seed
    for out_image, out_label in outputs:
        expected = COLOURS[out_label]
        np.testing.assert_allclose(out_image, expected, atol=1e-3)


def test_upscaled_borders_take_edge_values_not_padding():
    image, label = blocks(32, 32)
    for _, out_label in augment(image, label, 64, min_scale=2.0, max_scale=2.0):
        assert not (out_label == 255).any()  # 32 * 2 = 64 fills the crop: no ignore pixels


def test_photometric_jitter_changes_colours_but_not_labels():
    image, label = blocks(32, 32)
    plain = augment(image, label, 32)
    jittered = augment(image, label, 32, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    for (plain_image, plain_label), (jit_image, jit_label) in zip(plain, jittered):
        np.testing.assert_array_equal(plain_label, jit_label)
        assert np.abs(plain_image - jit_image).mean() > 1.0
        assert jit_image.min() >= 0.0 and jit_image.max() <= 255.0


# --- non-square crops: train.crop_size [height, width] ------------------------------------------

def test_non_square_crop_equal_to_the_image_is_the_image():
    image, label = blocks(48, 64)
    for out_image, out_label in augment(image, label, [48, 64]):
        assert out_image.shape == (48, 64, 3) and out_label.shape == (48, 64)
        np.testing.assert_allclose(out_image, image, atol=1e-3)
        np.testing.assert_array_equal(out_label, label)


@pytest.mark.parametrize('crop', [[32, 64], [64, 32]])
def test_non_square_crop_pads_each_side_on_its_own(crop):
    image, label = blocks(20, 24)
    for out_image, out_label in augment(image, label, crop):
        assert out_label.shape == tuple(crop) and out_image.shape == tuple(crop) + (3,)
        np.testing.assert_array_equal(out_label[:20, :24], label)  # scale 1: the image, top-left
        np.testing.assert_array_equal(out_label[20:], 255)
        np.testing.assert_array_equal(out_label[:, 24:], 255)
        np.testing.assert_allclose(out_image[20:, :24].reshape(-1, 3), np.broadcast_to(MEAN_RGB, (24 * (crop[0] - 20), 3)),
                                   atol=1e-3)


def test_non_square_crop_of_a_larger_image_is_a_window_of_it():
    label = np.random.RandomState(0).randint(0, 3, (48, 96)).astype(np.uint8)  # one window matches
    image = COLOURS[label]
    windows = set()
    for out_image, out_label in augment(image, label, [32, 64]):
        matches = [(top, left) for top in range(17) for left in range(33)
                   if np.array_equal(label[top:top + 32, left:left + 64], out_label)]
        assert len(matches) == 1, 'the label crop is one 32x64 window of the label'
        top, left = matches[0]
        np.testing.assert_allclose(out_image, image[top:top + 32, left:left + 64], atol=0.01)  # float box coords
        windows.add(matches[0])
    assert len(windows) > 1  # random offsets


# --- whole-image training (Caffe's FCN solvers: batch 1, no rescale) ---------------------------------

def _photo(height, width, seed=0):
    """A VOC-sized noise image and a label with ignored pixels (255) inside it."""
    rng = np.random.RandomState(seed)
    label = rng.randint(0, 21, (height, width)).astype(np.uint8)
    label[rng.rand(height, width) < 0.1] = 255
    return rng.randint(0, 256, (height, width, 3)).astype(np.uint8), label


@pytest.mark.parametrize('height, width', [(375, 500), (500, 375), (333, 500)])
def test_a_crop_covering_the_image_holds_all_of_it_top_left_and_pads_the_rest(height, width):
    """train.crop_size 512 >= every VOC image, augment.min_scale = max_scale = 1: each pixel of
    the image, exactly, at its own place from the top left; mean colour / ignore label below and
    right of it; nothing cut."""
    image, label = _photo(height, width)
    mean = np.asarray(MEAN_RGB, np.float32)
    for out_image, out_label in augment(image, label, 512):
        assert out_image.shape == (512, 512, 3) and out_label.shape == (512, 512)
        np.testing.assert_array_equal(out_image[:height, :width], image.astype(np.float32))
        np.testing.assert_array_equal(out_label[:height, :width], label)
        for padding in (out_image[height:], out_image[:, width:]):
            np.testing.assert_array_equal(padding, np.broadcast_to(mean, padding.shape))
        assert (out_label[height:] == 255).all() and (out_label[:, width:] == 255).all()


def test_a_covering_crop_with_flips_mirrors_the_whole_image_with_its_padding():
    image, label = _photo(375, 500, seed=1)
    mirrored_image, mirrored_label = image[:, ::-1].astype(np.float32), label[:, ::-1]
    seen = set()
    for out_image, out_label in augment(image, label, 512, flip=True):
        flipped = not np.array_equal(out_label[:375, :500], label)
        seen.add(flipped)
        if not flipped:
            np.testing.assert_array_equal(out_image[:375, :500], image.astype(np.float32))
        else:  # flipped: the image at the top right, the padding columns on the left
            np.testing.assert_array_equal(out_label[:375, 12:], mirrored_label)
            np.testing.assert_array_equal(out_image[:375, 12:], mirrored_image)
            assert (out_label[:, :12] == 255).all()
        assert (out_label[375:] == 255).all()
    assert seen == {False, True}  # six draws (seeded): both layouts came up


def test_scale_1_with_a_smaller_crop_is_an_exact_window_of_the_image():
    image, label = _photo(100, 90, seed=2)
    offsets = set()
    for out_image, out_label in augment(image, label, [64, 32]):
        matches = [(y, x) for y in range(100 - 64 + 1) for x in range(90 - 32 + 1)
                   if np.array_equal(out_label, label[y:y + 64, x:x + 32])
                   and np.array_equal(out_image, image[y:y + 64, x:x + 32].astype(np.float32))]
        assert matches, 'the crop is no window of the image'
        offsets.add(matches[0])
    assert len(offsets) > 1  # a random window, not always the same one
