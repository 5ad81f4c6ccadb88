"""Training augmentation (scale, pad, crop, flip, photometric jitter), all in graph ops."""
import dataclasses

from fcn.compat import tf
from fcn.config import crop_size as crop_shape
from fcn.nets.vgg import MEAN_RGB


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
    """What `preprocess_train` does (fcn.options builds it from `train.crop_size` and `augment`)."""
    crop_size: tuple  # (height, width)
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.25
    flip: bool = True
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


def _random_scale_factor(min_scale, max_scale, step):
    """A scalar drawn from {min, min+step, ..., max} (step > 0) or uniformly from [min, max]."""
    if min_scale == max_scale:
        return tf.constant(float(min_scale))
    if step and step > 0:
        num_steps = int(round((max_scale - min_scale) / step)) + 1
        return tf.random.shuffle(tf.linspace(float(min_scale), float(max_scale), num_steps))[0]
    return tf.random.uniform([], min_scale, max_scale)


def _source_box(offset, crop, scale, size):
    """Normalised [start, end] coordinates, in the 1-pixel edge-padded source, of output
    pixels offset .. offset+crop-1.

    Output pixel i of the image rescaled by `scale` sits at source coordinate
    (i + 0.5) / scale - 0.5 (half-pixel centres, as tf.image.resize); +1 for the padding,
    which makes samples up to half a pixel outside the image take the edge value, as
    resize does, where crop_and_resize alone would extrapolate.
    """
    first = (offset + 0.5) / scale - 0.5 + 1.0
    last = (offset + crop - 0.5) / scale - 0.5 + 1.0
    denominator = size + 1.0  # padded size - 1
    return first / denominator, last / denominator


def random_scale_pad_crop(image, label, crop_size, min_scale, max_scale, step, ignore_label):
    """Rescale by a random factor, pad to the crop (mean colour / ignore), take a random crop.

    `crop_size` is one side (a square crop) or (height, width). Equivalent to resize ->
    pad -> random crop, but computed in one crop_and_resize of only the crop's pixels: the
    cost no longer grows with the scale (a 2x VOC image would be resized to 1000x750 just
    to keep 512x512 of it).

    Scale 1 (min_scale = max_scale = 1) takes the image's own pixels, with no resampling
    (`_pad_crop`): with a crop at least the image's size, that is whole-image training as in
    Caffe's FCN solvers (batch 1, no rescale): the whole image at the top left, nothing cut,
    the bottom and right padded with the mean colour and the ignore label (then flipped with
    its padding when augment.flip is on).
    """
    crop_size = crop_shape(crop_size)
    if float(min_scale) == float(max_scale) == 1.0:
        return _pad_crop(image, label, crop_size, ignore_label)
    scale = _random_scale_factor(min_scale, max_scale, step)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    scaled = tf.round(size * scale)
    slack = tf.maximum(scaled - tf.constant(crop_size, tf.float32), 0.0)  # room for the crop in the scaled image
    offset = tf.floor(tf.random.uniform([2]) * (slack + 1.0))
    y1, y2 = _source_box(offset[0], float(crop_size[0]), scaled[0] / size[0], size[0])
    x1, x2 = _source_box(offset[1], float(crop_size[1]), scaled[1] / size[1], size[1])
    box = tf.reshape(tf.stack([y1, x1, y2, x2]), [1, 4])
    in_image = _inside_mask(offset, crop_size, scaled)
    mean = tf.constant(MEAN_RGB, tf.float32)
    image = _crop_resize(_pad_edges(image - mean), box, crop_size, 'bilinear') * in_image + mean
    label = _crop_resize(_pad_edges(tf.cast(label, tf.float32)), box, crop_size, 'nearest')
    label = tf.where(in_image > 0, label, float(ignore_label))
    return image, tf.cast(label, tf.int32)


def _pad_crop(image, label, crop_size, ignore_label):
    """The scale-1 case of `random_scale_pad_crop`, exact: the image padded at the bottom and
    right to at least `crop_size`, and a random window of that size (the same offsets as the
    resampling path draws); padding is the mean colour in the image and `ignore_label` in the label."""
    size = tf.shape(image)[:2]
    crop = tf.constant(crop_size, tf.int32)
    slack = tf.cast(tf.maximum(size - crop, 0), tf.float32)
    offset = tf.floor(tf.random.uniform([2]) * (slack + 1.0))
    start = tf.concat([tf.cast(offset, tf.int32), [0]], axis=0)
    padding = tf.stack([[0, tf.maximum(crop[0] - size[0], 0)], [0, tf.maximum(crop[1] - size[1], 0)], [0, 0]])
    window = [crop_size[0], crop_size[1], -1]
    in_image = _inside_mask(offset, crop_size, tf.cast(size, tf.float32)) > 0
    image = tf.slice(tf.pad(image, padding), start, window)
    image = tf.where(in_image, image, tf.constant(MEAN_RGB, tf.float32))
    label = tf.slice(tf.pad(tf.cast(label, tf.int32), padding), start, window)
    return image, tf.where(in_image, label, ignore_label)


def _pad_edges(image):
    return tf.pad(image, [[1, 1], [1, 1], [0, 0]], mode='SYMMETRIC')


def _crop_resize(image, box, crop_size, method):
    return tf.image.crop_and_resize(image[None], box, [0], list(crop_size), method=method)[0]


def _inside_mask(offset, crop_size, scaled):
    """1 where a crop pixel lies inside the scaled image, 0 in the padding (bottom/right)."""
    rows = tf.cast(tf.range(crop_size[0]), tf.float32) + offset[0] < scaled[0]
    cols = tf.cast(tf.range(crop_size[1]), tf.float32) + offset[1] < scaled[1]
    inside = tf.logical_and(rows[:, None], cols[None, :])
    return tf.cast(inside, tf.float32)[:, :, None]


def random_flip(image, label):
    flip = tf.random.uniform([]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def photometric_jitter(image, aug):
    """Colour jitter on a [0, 255] float image for `AugmentOptions` `aug`; each strength 0
    disables that step; with all four 0 the image is returned as it is."""
    if not (aug.brightness > 0 or aug.contrast > 0 or aug.saturation > 0 or aug.hue > 0):
        return image
    image = image / 255.0
    if aug.brightness > 0:
        image = tf.image.random_brightness(image, aug.brightness)
    if aug.contrast > 0:
        image = tf.image.random_contrast(image, 1.0 - aug.contrast, 1.0 + aug.contrast)
    if aug.saturation > 0:
        image = tf.image.random_saturation(image, 1.0 - aug.saturation, 1.0 + aug.saturation)
    if aug.hue > 0:
        image = tf.image.random_hue(image, aug.hue)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def preprocess_train(image, label, aug, ignore_label=255):
    """uint8 image [H,W,3] + label [H,W,1] -> float32 [h,w,3] in [0,255], int32 [h,w], where
    (h, w) is `aug.crop_size` (`aug`: AugmentOptions)."""
    height, width = crop_shape(aug.crop_size)
    image = tf.cast(image, tf.float32)
    image, label = random_scale_pad_crop(image, label, aug.crop_size, aug.min_scale, aug.max_scale,
                                         aug.scale_step, ignore_label)
    if aug.flip:
        image, label = random_flip(image, label)
    image = photometric_jitter(image, aug)
    image.set_shape([height, width, 3])
    label = tf.reshape(label, [height, width])
    return image, label


def train_preprocess_fn(aug, ignore_label):
    """A (image, label) -> (image, label) function for `AugmentOptions` `aug`; padding is
    labelled `ignore_label` (the dataset's, fcn.data.info)."""
    def fn(image, label):
        return preprocess_train(image, label, aug, ignore_label)
    return fn
