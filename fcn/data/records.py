"""The on-disk record format: DeepLab's tf.train.Example keys, shard names, summary.json.

Labels are stored as single-channel PNGs whose pixel values are class ids (255 = ignore),
never as palette PNGs: TensorFlow's PNG decoder expands a palette to colours.
"""
import json
import os
import re

import numpy as np

IMAGE_ENCODED = 'image/encoded'
IMAGE_FILENAME = 'image/filename'
IMAGE_FORMAT = 'image/format'
IMAGE_HEIGHT = 'image/height'
IMAGE_WIDTH = 'image/width'
IMAGE_CHANNELS = 'image/channels'
LABEL_ENCODED = 'image/segmentation/class/encoded'
LABEL_FORMAT = 'image/segmentation/class/format'

SUMMARY_NAME = 'summary.json'
SHARD_PATTERN = re.compile(r'^(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tfrecord$')


def _bytes_feature(value):
    import tensorflow as tf
    if isinstance(value, str):
        value = value.encode('utf-8')
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value):
    import tensorflow as tf
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(image_bytes, label_png_bytes, filename, height, width, image_format='jpeg', channels=3):
    """Builds one tf.train.Example with the DeepLab feature keys."""
    import tensorflow as tf
    feature = {
        IMAGE_ENCODED: _bytes_feature(image_bytes),
        IMAGE_FILENAME: _bytes_feature(filename),
        IMAGE_FORMAT: _bytes_feature(image_format),
        IMAGE_HEIGHT: _int64_feature(height),
        IMAGE_WIDTH: _int64_feature(width),
        IMAGE_CHANNELS: _int64_feature(channels),
        LABEL_ENCODED: _bytes_feature(label_png_bytes),
        LABEL_FORMAT: _bytes_feature('png'),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_name(split, index, num_shards):
    return '%s-%05d-of-%05d.tfrecord' % (split, index, num_shards)


def shard_paths(data_dir, split):
    """The complete shards of `split` in `data_dir`, sorted; temporary files are not matched."""
    if not os.path.isdir(data_dir):
        raise FileNotFoundError('data.dir %r is not a folder of TFRecords (build one with build_tfrecords.py)' % data_dir)
    paths = []
    for name in sorted(os.listdir(data_dir)):
        match = SHARD_PATTERN.match(name)
        if match and match.group('split') == split:
            paths.append(os.path.join(data_dir, name))
    if not paths:
        raise FileNotFoundError('no shards named %s-NNNNN-of-NNNNN.tfrecord in %s' % (split, data_dir))
    return paths


def summary_path(data_dir):
    return os.path.join(data_dir, SUMMARY_NAME)


def read_summary(data_dir):
    """Loads `summary.json` written by build_tfrecords.py, with a clear error when absent."""
    path = summary_path(data_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: data.dir must be a folder written by build_tfrecords.py' % path)
    with open(path) as f:
        return json.load(f)


def write_summary(data_dir, summary):
    """Writes summary.json atomically so a crash never leaves half a file."""
    path = summary_path(data_dir)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def split_info(summary, split, data_dir=''):
    splits = summary.get('splits', {})
    if split not in splits:
        raise KeyError('split %r not in %s (has: %s)' % (split, summary_path(data_dir), ', '.join(sorted(splits)) or 'none'))
    return splits[split]


def encode_label_png(label):
    """uint8 HxW class-id array -> single-channel PNG bytes."""
    import cv2
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError('label must be a 2-D uint8 array, got %s %s' % (label.dtype, label.shape))
    ok, buf = cv2.imencode('.png', label)
    if not ok:
        raise ValueError('could not PNG-encode a label of shape %s' % (label.shape,))
    return buf.tobytes()
