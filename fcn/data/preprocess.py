"""Training augmentation (scale, pad, crop, flip, photometric jitter), all in graph ops."""
from fcn.compat import tf
from fcn.nets.vgg import MEAN_RGB


def random_scale(image, label, min_scale, max_scale, step):
    """Resizes by a random factor: images bilinear, labels nearest neighbour."""
    if min_scale == max_scale == 1.0:
        return image, label
    if step and step > 0:
        num_steps = int(round((max_scale - min_scale) / step)) + 1
        scales = tf.linspace(float(min_scale), float(max_scale), num_steps)
        scale = tf.random.shuffle(scales)[0]
    else:
        scale = tf.random.uniform([], min_scale, max_scale)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_size = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new_size, method='bilinear')
    label = tf.image.resize(label, new_size, method='nearest')
    return image, label


def pad_to_size(image, label, height, width, ignore_label):
    """Pads bottom/right up to (height, width): image with the mean colour, label with ignore."""
    shape = tf.shape(image)
    pad_h = tf.maximum(height - shape[0], 0)
    pad_w = tf.maximum(width - shape[1], 0)
    paddings = [[0, pad_h], [0, pad_w], [0, 0]]
    mean = tf.constant(MEAN_RGB, tf.float32)
    image = tf.pad(image - mean, paddings) + mean
    label = tf.pad(label - ignore_label, paddings) + ignore_label
    return image, label


def random_crop(image, label, height, width):
    """The same random window of image and label."""
    stacked = tf.concat([image, tf.cast(label, tf.float32)], axis=2)
    cropped = tf.image.random_crop(stacked, [height, width, 4])
    return cropped[:, :, :3], tf.cast(cropped[:, :, 3:], tf.int32)


def random_flip(image, label):
    flip = tf.random.uniform([]) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def photometric_jitter(image, aug):
    """Colour jitter on a [0, 255] float image; each strength 0 disables that step."""
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


def preprocess_train(image, label, crop_size, aug, ignore_label=255):
    """uint8 image [H,W,3] + label [H,W,1] -> float32 [c,c,3] in [0,255], int32 [c,c]."""
    image = tf.cast(image, tf.float32)
    label = tf.cast(label, tf.int32)
    image, label = random_scale(image, label, aug.min_scale, aug.max_scale, aug.scale_step)
    image, label = pad_to_size(image, label, crop_size, crop_size, ignore_label)
    image, label = random_crop(image, label, crop_size, crop_size)
    if aug.flip:
        image, label = random_flip(image, label)
    image = photometric_jitter(image, aug)
    image.set_shape([crop_size, crop_size, 3])
    label = tf.reshape(label, [crop_size, crop_size])
    return image, label


def train_preprocess_fn(cfg):
    """A (image, label) -> (image, label) function configured from `train` and `augment`."""
    def fn(image, label):
        return preprocess_train(image, label, cfg.train.crop_size, cfg.augment, cfg.data.ignore_label)
    return fn
