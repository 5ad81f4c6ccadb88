"""The on-disk record format: DeepLab's tf.train.Example keys, shard names, TFRecord framing.

The dataset description next to the shards (summary.json) is fcn.data.info's.

Labels are stored as single-channel PNGs whose pixel values are class ids (255 = ignore),
never as palette PNGs: TensorFlow's PNG decoder expands a palette to colours.
"""
import os
import re
import struct

import numpy as np

IMAGE_ENCODED = 'image/encoded'
IMAGE_FILENAME = 'image/filename'
IMAGE_FORMAT = 'image/format'
IMAGE_HEIGHT = 'image/height'
IMAGE_WIDTH = 'image/width'
IMAGE_CHANNELS = 'image/channels'
LABEL_ENCODED = 'image/segmentation/class/encoded'
LABEL_FORMAT = 'image/segmentation/class/format'

SHARD_PATTERN = re.compile(r'^(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tfrecord$')


def _bytes_feature(value):
    from fcn.compat import tf  # quiet: no TensorFlow start-up lines (workers import this too)
    if isinstance(value, str):
        value = value.encode('utf-8')
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value):
    from fcn.compat import tf  # quiet: no TensorFlow start-up lines (workers import this too)
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(image_bytes, label_png_bytes, filename, height, width, image_format='jpeg', channels=3):
    """Builds one tf.train.Example with the DeepLab feature keys."""
    from fcn.compat import tf  # quiet: no TensorFlow start-up lines (workers import this too)
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


def read_records(path):
    """The serialized records of a TFRecord file, in order (the framing only: length, CRCs, data).

    Plain file reads, no TensorFlow: a record is an 8-byte little-endian length, a 4-byte CRC
    of it, the data and a 4-byte CRC of the data. A file that ends inside a record is an error."""
    with open(path, 'rb') as f:
        while True:
            length = _record_length(f, path)
            if length is None:
                return
            data = f.read(length)
            if len(data) != length or len(f.read(4)) != 4:
                raise ValueError('%s ends inside a record (truncated shard?)' % path)
            yield data


def count_records(path):
    """The number of records in a TFRecord file, reading only their length fields (seeks)."""
    size = os.path.getsize(path)
    count = 0
    with open(path, 'rb') as f:
        while True:
            length = _record_length(f, path)
            if length is None:
                return count
            if f.seek(length + 4, 1) > size:
                raise ValueError('%s ends inside a record (truncated shard?)' % path)
            count += 1


def _record_length(f, path):
    header = f.read(12)
    if not header:
        return None
    if len(header) != 12:
        raise ValueError('%s ends inside a record header (truncated shard?)' % path)
    return struct.unpack('<Q', header[:8])[0]


def split_shards(data_dir):
    """{split: [shard path, ...]} of every complete set of shards in data_dir.

    ValueError naming the split and the missing shard when a set is incomplete (some of
    split-NNNNN-of-TOTAL missing) or mixes totals."""
    found = {}
    for name in sorted(os.listdir(data_dir)):
        match = SHARD_PATTERN.match(name)
        if match:
            found.setdefault(match.group('split'), []).append(
                (int(match.group('index')), int(match.group('total')), os.path.join(data_dir, name)))
    splits = {}
    for split, shards in found.items():
        totals = {total for _, total, _ in shards}
        if len(totals) != 1:
            raise ValueError('split %r in %s has shards of different totals (%s): remove the stale ones'
                             % (split, data_dir, ', '.join(str(t) for t in sorted(totals))))
        total = totals.pop()
        missing = sorted(set(range(total)) - {index for index, _, _ in shards})
        if missing:
            raise ValueError('split %r in %s is incomplete: %s is missing'
                             % (split, data_dir, shard_name(split, missing[0], total)))
        splits[split] = [path for _, _, path in shards]
    return splits


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
