"""What a dataset is made of, before any building: `DatasetSpec` (classes, palette, splits of
`Item`s), the data errors, and the list / path helpers the dataset modules share.

A dataset module (voc, sbd, coco, folder, synthetic, ...) turns plain values into a DatasetSpec;
fcn.data.build turns a DatasetSpec into shards. This module imports nothing heavy.
"""
import os

IGNORE_LABEL = 255  # the ignore label of every dataset this project builds (records: --ignore_label)


class DatasetError(ValueError):
    """Bad input data or arguments. The message names the file (when there is one) and the problem."""

    def __init__(self, reason, file=None):
        self.reason = reason
        self.file = None if file is None else str(file)
        super().__init__('%s: %s' % (self.file, reason) if file is not None else reason)

    def __reduce__(self):  # so that it survives the trip back from a worker process
        return (type(self), (self.reason, self.file))


class Item:
    """One example: an image file plus a label source. Subclasses implement load_label.

    Items are pickled to worker processes, so they hold plain data (paths, numbers, dicts).
    """

    def __init__(self, name, image_path):
        self.name = name
        self.image_path = image_path

    @property
    def label_file(self):
        """The file named in label errors."""
        raise NotImplementedError

    def key(self):
        """A string that identifies this item's inputs, for shard fingerprints."""
        return '%s|%s|%s' % (self.name, self.image_path, self.label_file)

    def check(self):
        """Raises DatasetError for problems known before reading any file (default: none)."""

    def load_label(self, height, width):
        """The uint8 HxW class-id label (255 = ignore); raises DatasetError naming the file."""
        raise NotImplementedError

    def labelled_on_raw_pixels(self, size, raw_size):
        """For an image turned upright from an EXIF orientation: True when its annotations are on
        the raw (stored) pixels, so that the label is read at raw_size and turned with the image.

        Default False: annotation tools (CVAT, Label Studio, labelme) draw on the upright view,
        so mask files are upright. size and raw_size are (height, width)."""
        return False

    def reject_reason(self, counts, num_classes):
        """A reason to leave out a valid example (e.g. too little labelled area), or None."""
        return None


class BadItem(Item):
    """An entry found bad while listing (e.g. a list entry outside the data folder).

    It fails when processed, like any other bad item, so --skip_bad treats it the same way.
    """

    def __init__(self, name, file, reason):
        super().__init__(name, file)
        self.reason = reason

    @property
    def label_file(self):
        return self.image_path

    def check(self):
        raise DatasetError(self.reason, self.image_path)

    def load_label(self, height, width):
        self.check()


class DatasetSpec:
    """What to build: dataset name, classes, palette, and {split: [Item, ...]}.

    `options` holds the settings that change label content (label map, thresholds,
    generator parameters): they are part of every shard's fingerprint.
    """

    def __init__(self, name, class_names, palette, splits, options=None):
        self.name = name
        self.class_names = list(class_names)
        self.palette = [[int(c) for c in rgb] for rgb in palette][:len(self.class_names)]
        self.splits = splits
        self.options = dict(options or {})
        if len(self.palette) != len(self.class_names):
            raise DatasetError('palette has %d colours for %d classes' % (len(self.palette), len(self.class_names)))
        if not 1 <= len(self.class_names) <= IGNORE_LABEL:
            raise DatasetError('need 1 to 255 classes, got %d' % len(self.class_names))

    @property
    def num_classes(self):
        return len(self.class_names)


# ----------------------------------------------------------------------------- lists and paths

def read_list(path):
    """The non-empty, non-comment lines of a list file (first whitespace-separated field)."""
    if not os.path.isfile(path):
        raise DatasetError('list file not found', path)
    entries = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                entries.append(line.split()[0])
    return entries


def read_lines(path):
    """The non-empty, non-comment lines of a text file, stripped."""
    if not os.path.isfile(path):
        raise DatasetError('file not found', path)
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def read_class_names(path):
    """Class names, one a line (line i = class id i); DatasetError if empty or duplicated."""
    names = read_lines(path)
    if not names:
        raise DatasetError('no class names in this file', path)
    if len(set(names)) != len(names):
        raise DatasetError('duplicate class names', path)
    return names


def parse_splits(text, default):
    """'train,val' -> ['train', 'val']; `default` when text is empty."""
    return [s for s in text.split(',') if s] if text else list(default)


def safe_join(root, entry):
    """root/entry, or DatasetError if the entry is absolute or escapes root (e.g. '../x')."""
    if os.path.isabs(entry):
        raise DatasetError('list entry %r is an absolute path; entries must be relative to %s' % (entry, root), entry)
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, entry))
    if os.path.commonpath([root_real, path]) != root_real:
        raise DatasetError('list entry %r escapes the data folder %s' % (entry, root), entry)
    return os.path.join(root, entry)
