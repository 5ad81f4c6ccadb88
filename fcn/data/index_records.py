"""Records written by another tool (DeepLab's keys, `{split}-NNNNN-of-NNNNN.tfrecord`):
`build_tfrecords.py --dataset records` indexes them into a folder of our own.

Every record of every shard is read: the images of each split are counted, every label value is
checked (a class id < num_classes or the ignore label; otherwise an error naming the value, the
record's filename and the shard), and the same statistics as our builder's are collected; JPEGs
that carry an EXIF orientation are counted (`exif_tagged`: the records hold their raw pixels,
which training reads unturned; a warning says so). The
output folder gets summary.json and the shards, linked (or copied where links fail): the
original folder is never written to.
"""
import os
import shutil

import numpy as np

from fcn.data import info as dataset_info
from fcn.data import records, stats
from fcn.data.palette import voc_palette
from fcn.data.spec import DatasetError

NAME = 'records'


def index(data_dir, out_dir, num_classes, class_names=None, ignore_label=255, splits=None):
    """Reads and checks the shards of data_dir, links them into out_dir, writes its summary.json.

    Returns the DatasetInfo written."""
    _check_arguments(data_dir, out_dir, num_classes, class_names, ignore_label)
    shards = _find_shards(data_dir, splits)
    entries = {split: index_split(paths, num_classes, ignore_label) for split, paths in sorted(shards.items())}
    info = dataset_info.DatasetInfo(
        num_classes=num_classes, class_names=tuple(class_names or dataset_info.default_class_names(num_classes)),
        palette=tuple(tuple(c) for c in voc_palette(num_classes).tolist()), ignore_label=ignore_label, name=NAME,
        splits={split: dataset_info.SplitInfo.from_dict(entry, split) for split, entry in entries.items()},
        source=dataset_info.summary_path(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    for split, paths in shards.items():
        link_shards(paths, out_dir, split)
    info.write(dataset_info.summary_path(out_dir))
    return info


def _check_arguments(data_dir, out_dir, num_classes, class_names, ignore_label):
    if not os.path.isdir(data_dir):
        raise DatasetError('records folder not found', data_dir)
    if not 1 <= num_classes <= 255:
        raise DatasetError('--num_classes must be 1 to 255 (labels are 8-bit), got %d' % num_classes)
    if not 0 <= ignore_label <= 255 or ignore_label < num_classes:
        raise DatasetError('--ignore_label must be a label value in %d..255 (not a class id), got %d'
                           % (num_classes, ignore_label))
    if class_names is not None and len(class_names) != num_classes:
        raise DatasetError('%d class names for --num_classes %d' % (len(class_names), num_classes))
    if os.path.realpath(out_dir) == os.path.realpath(data_dir):
        raise DatasetError('--out must be another folder than --data_dir: the records folder is never written to',
                           out_dir)


def _find_shards(data_dir, splits):
    try:
        found = records.split_shards(data_dir)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    if not found:
        raise DatasetError('no shards named SPLIT-NNNNN-of-NNNNN.tfrecord in this folder', data_dir)
    if splits:
        missing = [s for s in splits if s not in found]
        if missing:
            raise DatasetError('no shards of split %r (has: %s)' % (missing[0], ', '.join(sorted(found))), data_dir)
        found = {s: found[s] for s in splits}
    return found


def index_split(paths, num_classes, ignore_label):
    """The summary entry of one split's shards; DatasetError naming the shard on a bad record."""
    total = stats.LabelStats(num_classes, ignore_label)
    tagged = 0
    for path in paths:
        try:
            for raw in records.read_records(path):
                feature = _features(raw)
                height, width, histogram = _label_histogram(feature, path, num_classes, ignore_label)
                total.add(height, width, histogram)
                tagged += _exif_tagged(feature)
        except ValueError as e:
            if isinstance(e, DatasetError):
                raise
            raise DatasetError(str(e), path) from None
    entry = total.to_dict()
    entry['num_shards'] = len(paths)
    entry['exif_tagged'] = tagged
    return entry


def _features(raw):
    from fcn.compat import tf  # quiet: no TensorFlow start-up lines (workers import this too)
    return tf.train.Example.FromString(raw).features.feature


def _exif_tagged(feature):
    """1 when the record's image is a JPEG with an EXIF orientation other than 1, else 0."""
    from fcn import orientation
    encoded = feature[records.IMAGE_ENCODED].bytes_list.value if records.IMAGE_ENCODED in feature else []
    return int(bool(encoded) and orientation.jpeg_orientation(encoded[0]) != orientation.UPRIGHT)


def _label_histogram(feature, shard, num_classes, ignore_label):
    import cv2
    name = _text(feature, records.IMAGE_FILENAME) or '(no image/filename)'
    encoded = feature[records.LABEL_ENCODED].bytes_list.value if records.LABEL_ENCODED in feature else []
    where = 'record %r' % name
    if not encoded or not encoded[0]:
        raise DatasetError('%s has no %s' % (where, records.LABEL_ENCODED), shard)
    label = cv2.imdecode(np.frombuffer(encoded[0], np.uint8), cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError('%s: the label is not a single-channel 8-bit PNG of class ids' % where, shard)
    histogram = np.bincount(label.ravel(), minlength=256)
    bad = [v for v in np.nonzero(histogram)[0].tolist() if v >= num_classes and v != ignore_label]
    if bad:
        raise DatasetError('label value %d in %s is neither a class id (0..%d) nor the ignore label %d '
                           '(values found: %s); index with the --num_classes the labels use, or --ignore_label'
                           % (bad[0], where, num_classes - 1, ignore_label, _values(histogram)), shard)
    height, width = (_integer(feature, k) for k in (records.IMAGE_HEIGHT, records.IMAGE_WIDTH))
    if (height, width) != (None, None) and (height, width) != label.shape:
        raise DatasetError('%s: the label is %dx%d but image/height, image/width say %sx%s'
                           % (where, label.shape[0], label.shape[1], height, width), shard)
    return label.shape[0], label.shape[1], histogram


def _values(histogram):
    values = np.nonzero(histogram)[0].tolist()
    return ', '.join(str(v) for v in values) if len(values) <= 8 else '%d..%d' % (values[0], values[-1])


def _text(feature, key):
    values = feature[key].bytes_list.value if key in feature else []
    return values[0].decode('utf-8', 'replace') if values else ''


def _integer(feature, key):
    values = feature[key].int64_list.value if key in feature else []
    return int(values[0]) if values else None


def link_shards(paths, out_dir, split):
    """Links (else copies) the shards into out_dir, replacing out_dir's previous shards of the split."""
    names = {os.path.basename(p) for p in paths}
    for name in os.listdir(out_dir):
        match = records.SHARD_PATTERN.match(name)
        if match and match.group('split') == split and name not in names:
            os.remove(os.path.join(out_dir, name))
    for path in paths:
        target = os.path.join(out_dir, os.path.basename(path))
        if os.path.lexists(target):
            os.remove(target)
        try:
            os.symlink(os.path.abspath(path), target)
        except OSError:
            shutil.copyfile(path, target + '.tmp')
            os.replace(target + '.tmp', target)
