"""Small datasets written in the exact real on-disk formats, plus a reader for built records.

Other tests may import these helpers. Images are tiny so that tests stay fast.
"""
import os

import cv2
import numpy as np

from fcn.data import records
from fcn.data.palette import voc_palette, write_palette_png

VOC_LIST_DIR = os.path.join('ImageSets', 'Segmentation')


def random_image(rng, height, width):
    """A smooth-ish random RGB uint8 image (JPEG-friendly, so decoded values stay close)."""
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def random_label(rng, height, width, num_classes, void_border=True):
    """Blocks of random class ids with a 1-pixel void (255) outline, like VOC labels."""
    small = rng.integers(0, num_classes, (max(2, height // 8), max(2, width // 8))).astype(np.uint8)
    label = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    if void_border:
        edges = np.zeros_like(label, bool)
        edges[:, 1:] |= label[:, 1:] != label[:, :-1]
        edges[1:, :] |= label[1:, :] != label[:-1, :]
        label[edges] = 255
    return label


def write_jpeg(path, rgb, quality=95):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise IOError('could not write %s' % path)


def write_png(path, array):
    """Writes RGB (HxWx3) or grayscale (HxW) uint8 as a plain PNG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, array):
        raise IOError('could not write %s' % path)


def write_list(path, entries):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(e + '\n' for e in entries))


def write_voc(root, splits, num_classes=21, seed=0, sizes=((40, 56), (48, 32), (32, 40)), labels=True):
    """A VOC2012-layout folder: JPEGImages/*.jpg, SegmentationClass/*.png (palette), ImageSets lists.

    splits: {split: [stem, ...]}; a stem in several splits is written once. Returns
    {stem: (rgb image, label)}. labels=False writes no SegmentationClass PNGs (SBD-only images).
    """
    rng = np.random.default_rng(seed)
    palette = voc_palette(256)
    data = {}
    os.makedirs(os.path.join(root, 'SegmentationClass'), exist_ok=True)
    for split, stems in splits.items():
        write_list(os.path.join(root, VOC_LIST_DIR, split + '.txt'), stems)
        for stem in stems:
            if stem in data:
                continue
            height, width = sizes[len(data) % len(sizes)]
            image = random_image(rng, height, width)
            label = random_label(rng, height, width, num_classes)
            write_jpeg(os.path.join(root, 'JPEGImages', stem + '.jpg'), image)
            if labels:
                write_palette_png(os.path.join(root, 'SegmentationClass', stem + '.png'), label, palette)
            data[stem] = (image, label)
    return data


def truncate_file(path, keep_fraction=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep_fraction)])


def read_examples(out_dir, split):
    """All examples of a built split, decoded with TensorFlow: a list of dicts.

    Keys: filename, format, height, width, channels, image_bytes, image (RGB uint8), label.
    Uses its own graph + session, so it works whether or not eager execution is on.
    """
    import tensorflow as tf
    examples = []
    for path in records.shard_paths(out_dir, split):
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            examples.append(_parse(tf.train.Example.FromString(raw)))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        for ex in examples:
            image = tf.io.decode_image(ex['image_bytes'], channels=3, expand_animations=False)
            label = tf.io.decode_png(ex['label_bytes'], channels=0)
            ex['image'], label = session.run([image, label])
            ex['label_channels'] = label.shape[2]
            ex['label'] = label[:, :, 0]
    return examples


def _parse(example):
    feature = example.features.feature

    def text(key):
        return feature[key].bytes_list.value[0].decode()

    def integer(key):
        return feature[key].int64_list.value[0]

    return {
        'filename': text(records.IMAGE_FILENAME),
        'format': text(records.IMAGE_FORMAT),
        'label_format': text(records.LABEL_FORMAT),
        'height': integer(records.IMAGE_HEIGHT),
        'width': integer(records.IMAGE_WIDTH),
        'channels': integer(records.IMAGE_CHANNELS),
        'image_bytes': feature[records.IMAGE_ENCODED].bytes_list.value[0],
        'label_bytes': feature[records.LABEL_ENCODED].bytes_list.value[0],
    }
