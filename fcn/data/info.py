"""The dataset description: the one typed owner of `summary.json`.

The builder writes it next to the shards; training copies it into the run dir
(`RUN_DIR/dataset.json`), so that eval, export and predict of a run need neither the records
folder nor the config's data section to know the classes, their colours and the ignore label.
Everything else receives a `DatasetInfo` (or values taken from it), never the raw JSON.
"""
import json
import os
from dataclasses import dataclass, field, replace

SUMMARY_NAME = 'summary.json'
RUN_INFO_NAME = 'dataset.json'
DEFAULT_IGNORE_LABEL = 255


class DatasetInfoError(ValueError):
    """A dataset description that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class SplitInfo:
    """One split: its image count and pixel statistics (counts have one entry per class).

    `class_present_pixel_counts[c]` is the number of labelled pixels in the images where
    class c occurs: the denominator of median-frequency balancing (Eigen & Fergus)."""
    num_images: int
    num_shards: int = 0
    class_pixel_counts: tuple = None
    class_present_pixel_counts: tuple = None
    class_image_counts: tuple = None
    ignored_pixels: int = 0
    skipped: tuple = ()
    extra: dict = field(default_factory=dict)

    _KNOWN = ('num_images', 'num_shards', 'class_pixel_counts', 'class_present_pixel_counts',
              'class_image_counts', 'ignored_pixels', 'skipped')

    @classmethod
    def from_dict(cls, data, where):
        if not isinstance(data, dict) or 'num_images' not in data:
            raise DatasetInfoError('%s: a split entry needs num_images, got %r' % (where, data))
        counts = {key: _int_tuple(data.get(key), '%s %s' % (where, key))
                  for key in ('class_pixel_counts', 'class_present_pixel_counts', 'class_image_counts')}
        return cls(num_images=_non_negative(data['num_images'], where + ' num_images'),
                   num_shards=int(data.get('num_shards') or 0), ignored_pixels=int(data.get('ignored_pixels') or 0),
                   skipped=tuple(data.get('skipped') or ()),
                   extra={k: v for k, v in data.items() if k not in cls._KNOWN}, **counts)

    def to_dict(self):
        data = dict(self.extra)
        data.update(num_images=self.num_images, num_shards=self.num_shards, ignored_pixels=self.ignored_pixels,
                    skipped=list(self.skipped))
        for key in ('class_pixel_counts', 'class_present_pixel_counts', 'class_image_counts'):
            value = getattr(self, key)
            if value is not None:
                data[key] = list(value)
        return data


@dataclass(frozen=True)
class DatasetInfo:
    """Classes (names, palette colours), the ignore label and the splits of a dataset."""
    num_classes: int
    class_names: tuple
    palette: tuple
    ignore_label: int = DEFAULT_IGNORE_LABEL
    name: str = ''
    splits: dict = field(default_factory=dict)
    source: str = ''  # the file it was read from, for error messages

    @classmethod
    def from_dict(cls, data, source=''):
        where = source or 'dataset description'
        if not isinstance(data, dict) or 'num_classes' not in data:
            raise DatasetInfoError('%s: expected a mapping with num_classes, class_names, palette, '
                                   'ignore_label and splits' % where)
        num_classes = _positive(data['num_classes'], where + ' num_classes')
        ignore_label = int(data.get('ignore_label', DEFAULT_IGNORE_LABEL))
        if 0 <= ignore_label < num_classes:
            raise DatasetInfoError('%s: ignore_label %d is also a class id (num_classes %d)'
                                   % (where, ignore_label, num_classes))
        splits = {name: SplitInfo.from_dict(entry, '%s split %r' % (where, name))
                  for name, entry in (data.get('splits') or {}).items()}
        return cls(num_classes=num_classes, class_names=_class_names(data.get('class_names'), num_classes, where),
                   palette=_palette(data.get('palette'), num_classes, where), ignore_label=ignore_label,
                   name=str(data.get('dataset') or ''), splits=splits, source=source)

    def to_dict(self):
        return {'dataset': self.name, 'num_classes': self.num_classes, 'class_names': list(self.class_names),
                'palette': [list(c) for c in self.palette], 'ignore_label': self.ignore_label,
                'splits': {name: split.to_dict() for name, split in self.splits.items()}}

    def split(self, name):
        if name not in self.splits:
            raise DatasetInfoError('split %r not in %s (has: %s)'
                                   % (name, self.source or 'the dataset', ', '.join(sorted(self.splits)) or 'none'))
        return self.splits[name]

    def with_split(self, name, split):
        return replace(self, splits=dict(self.splits, **{name: split}))

    def without_splits(self):
        return replace(self, splits={})

    def write(self, path):
        """Writes the description as JSON, atomically (a crash never leaves half a file)."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found' % path)
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise DatasetInfoError('%s cannot be read as JSON: %s' % (path, e)) from None
        return cls.from_dict(data, path)

    @classmethod
    def read(cls, data_dir):
        """The description of a records folder (its summary.json)."""
        path = summary_path(data_dir)
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found: data.dir must be a folder written by build_tfrecords.py '
                                    '(records from another tool: build_tfrecords.py --dataset records)' % path)
        return cls.load(path)


def summary_path(data_dir):
    return os.path.join(data_dir, SUMMARY_NAME)


def run_info_path(run_dir):
    return os.path.join(run_dir, RUN_INFO_NAME)


def read_run(run_dir):
    """The description a run keeps of its dataset, or None (a run from before it was kept)."""
    path = run_info_path(run_dir)
    return DatasetInfo.load(path) if os.path.isfile(path) else None


def for_run(run_dir, data_dir, expected=None):
    """The dataset a run uses: the run's own copy (RUN_DIR/dataset.json) when it has one, else
    the records' summary (DATA_DIR/summary.json). `expected` (data.num_classes), when set,
    must agree with it."""
    info = read_run(run_dir) or DatasetInfo.read(data_dir)
    if expected is not None and int(expected) != info.num_classes:
        raise DatasetInfoError('data.num_classes is %d but %s says %d classes; drop the key or fix it'
                               % (expected, info.source, info.num_classes))
    return info


def default_class_names(num_classes):
    return ['class_%d' % i for i in range(num_classes)]


def _class_names(names, num_classes, where):
    if not names:
        return tuple(default_class_names(num_classes))
    if len(names) != num_classes:
        raise DatasetInfoError('%s: %d class_names for num_classes %d' % (where, len(names), num_classes))
    return tuple(str(n) for n in names)


def _palette(palette, num_classes, where):
    from fcn.data.palette import voc_palette
    if not palette:
        return tuple(tuple(int(v) for v in c) for c in voc_palette(256).tolist())
    if len(palette) < num_classes or not all(len(c) == 3 for c in palette):
        raise DatasetInfoError('%s: palette must hold an [r, g, b] colour for each of the %d classes'
                               % (where, num_classes))
    return tuple(tuple(int(v) for v in c) for c in palette)


def _int_tuple(values, where):
    if values is None:
        return None
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise DatasetInfoError('%s must be a list of integers, got %r' % (where, values)) from None


def _positive(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DatasetInfoError('%s must be a positive integer, got %r' % (where, value))
    return value


def _non_negative(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DatasetInfoError('%s must be a non-negative integer, got %r' % (where, value))
    return value
