"""PASCAL VOC 2012 segmentation: JPEGImages/, SegmentationClass/ (palette PNGs), ImageSets/Segmentation/.

The palette index of a SegmentationClass PNG is the class id; 255 marks the void border.
With an SBD folder, the `train_aug` split is added (see fcn.data.sbd).

Two protocols, never to be mixed (see the datasets docs):
  DeepLab-style: train_aug (10,582) -> val (1,449).
  FCN paper / fcn.berkeleyvision.org: sbd_train (SBD's train.txt, 8,498 images, SBD's labels
  even where VOC has one, as its SBD data layer reads them) -> seg11valid (the 736 VOC2011
  segval images not in SBD train, fcn/data/seg11valid.txt, VOC's labels). Their published
  FCN-32s 63.6, FCN-16s 65.0, FCN-8s 65.5, at-once 65.4 mIoU are on seg11valid.
A listed image of a protocol split that is missing is an error naming it and its list, before
anything is built: a partial split is not the protocol.
"""
import os

import numpy as np

from fcn.data import sbd
from fcn.data.spec import BadItem, DatasetError, DatasetSpec, Item, parse_splits, read_list, safe_join
from fcn.data.palette import VOC_CLASSES, index_array, open_image, voc_palette

DEFAULT_SPLITS = ('train', 'val')
IMAGE_DIR = 'JPEGImages'
LABEL_DIR = 'SegmentationClass'
LIST_DIR = os.path.join('ImageSets', 'Segmentation')
SEG11VALID_LIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seg11valid.txt')
SHOWN_MISSING = 5


def open_label_image(path, what='label'):
    """Opens a label / mask image with Pillow; DatasetError naming the file if missing or broken."""
    if not os.path.isfile(path):
        raise DatasetError('%s not found' % what, path)
    try:
        return open_image(path)
    except OSError as e:
        raise DatasetError('unreadable or truncated %s image (%s)' % (what, e), path) from None


def read_index_label(path, what='label', hint=''):
    """A palette or grayscale PNG's indices as a uint8 label; DatasetError naming the file."""
    image = open_label_image(path, what)
    if image.mode not in ('P', 'L'):
        raise DatasetError('%s must be a palette or grayscale PNG of class ids, got image mode %s%s' % (
            what, image.mode, hint), path)
    return index_array(image)


class IndexPngItem(Item):
    """An image whose label is a palette / grayscale PNG of class ids."""

    def __init__(self, name, image_path, label_path):
        super().__init__(name, image_path)
        self.label_path = label_path

    @property
    def label_file(self):
        return self.label_path

    def load_label(self, height, width):
        return read_index_label(self.label_path)


class MappedIndexItem(IndexPngItem):
    """An index PNG whose values pass through a 256-entry table (e.g. Cityscapes' labelIds -> train ids).

    table[value] is the class id (or 255) a label value becomes, -1 where the value is not
    allowed: those values are an error saying `unknown` (what the allowed values are).
    """

    def __init__(self, name, image_path, label_path, table, unknown):
        super().__init__(name, image_path, label_path)
        self.table, self.unknown = tuple(table), unknown

    def load_label(self, height, width):
        values = read_index_label(self.label_path)
        mapped = np.asarray(self.table, np.int16)[values]
        if (mapped < 0).any():
            bad = np.unique(values[mapped < 0]).tolist()
            raise DatasetError('label value%s %s %s' % ('s' if len(bad) > 1 else '', ', '.join(map(str, bad[:8])),
                                                          self.unknown), self.label_path)
        return mapped.astype(np.uint8)


def image_path(voc_dir, stem):
    return os.path.join(voc_dir, IMAGE_DIR, stem + '.jpg')


def list_path(voc_dir, split):
    return os.path.join(voc_dir, LIST_DIR, split + '.txt')


def read_split(voc_dir, split):
    """The stems listed in ImageSets/Segmentation/<split>.txt."""
    path = list_path(voc_dir, split)
    stems = read_list(path)
    if not stems:
        raise DatasetError('split %r is empty' % split, path)
    return stems


def make_item(voc_dir, stem, source):
    """The VOC item for `stem`; a BadItem when the entry escapes the VOC folder."""
    try:
        image = safe_join(os.path.join(voc_dir, IMAGE_DIR), stem + '.jpg')
        label = safe_join(os.path.join(voc_dir, LABEL_DIR), stem + '.png')
    except DatasetError as e:
        return BadItem(stem, source, e.reason)
    return IndexPngItem(stem, image, label)


def split_items(voc_dir, split):
    return [make_item(voc_dir, stem, list_path(voc_dir, split)) for stem in read_split(voc_dir, split)]


def check_voc_dir(voc_dir):
    for sub in (IMAGE_DIR, LABEL_DIR, LIST_DIR):
        if not os.path.isdir(os.path.join(voc_dir, sub)):
            raise DatasetError('not a VOC folder: %s/ is missing' % sub, voc_dir)


def train_aug_items(voc_dir, sbd_dir):
    """The items of train_aug = VOC train + SBD train + SBD val - VOC val, sorted by stem.

    VOC train images keep their VOC label (VOC wins where both exist); the others use SBD's."""
    stems = sbd.listed_stems(sbd_dir)
    voc_train = read_split(voc_dir, 'train')
    voc_val = set(read_split(voc_dir, 'val'))
    items = {stem: make_item(voc_dir, stem, list_path(voc_dir, 'train')) for stem in voc_train}
    for stem, source in stems.items():
        if stem not in items and stem not in voc_val:
            items[stem] = sbd.make_item(os.path.join(voc_dir, IMAGE_DIR), sbd_dir, stem, source)
    return [items[stem] for stem in sorted(items)]


def seg11valid_items(voc_dir):
    """The 736 seg11valid images with VOC's labels (the list ships in fcn/data)."""
    items = [make_item(voc_dir, stem, SEG11VALID_LIST) for stem in read_list(SEG11VALID_LIST)]
    _check_listed(items, 'seg11valid', SEG11VALID_LIST)
    return items


def sbd_train_items(voc_dir, sbd_dir):
    """SBD's train.txt with SBD's labels for every image (also where VOC has a label); the image
    from SBD's img/ (as fcn.berkeleyvision.org's SBD layer reads it), else VOC's JPEGImages/."""
    path = os.path.join(sbd_dir, 'train.txt')
    if not os.path.isdir(os.path.join(sbd_dir, sbd.CLS_DIR)):
        raise DatasetError('not an SBD dataset folder: cls/ is missing', sbd_dir)
    stems = read_list(path)
    overlap = sorted(set(stems) & set(read_list(SEG11VALID_LIST)))
    if overlap:
        raise DatasetError('%d of its images are in seg11valid (%s): this is not SBD\'s train list, which '
                           'seg11valid was made disjoint from' % (len(overlap), _shortlist(overlap)), path)
    items = [sbd.make_item(os.path.join(sbd_dir, sbd.IMAGE_DIR), sbd_dir, stem, path,
                           fallback_image_dir=os.path.join(voc_dir, IMAGE_DIR)) for stem in stems]
    _check_listed(items, 'sbd_train', path)
    return items


def _check_listed(items, split, list_file):
    """DatasetError naming the list and the listed images whose image or label file is missing."""
    if not items:
        raise DatasetError('split %r is empty' % split, list_file)
    missing = []
    for item in items:
        item.check()  # an entry escaping the folder
        absent = [p for p in (item.image_path, item.label_file) if not os.path.isfile(p)]
        if absent:
            missing.append('%s (%s)' % (item.name, ', '.join(absent)))
    if missing:
        raise DatasetError('%s: %d of the %d images listed here are missing (image or label file not found): %s'
                           % (split, len(missing), len(items), _shortlist(missing)), list_file)


def _shortlist(names):
    return ', '.join(names[:SHOWN_MISSING]) + (', ...' if len(names) > SHOWN_MISSING else '')


def _needs_sbd(split, sbd_dir):
    if not sbd_dir:
        raise DatasetError('split %s needs --sbd_dir (the SBD "dataset" folder)' % split)


def voc_spec(voc_dir, splits, class_names=VOC_CLASSES, palette=None, name='voc', sbd_dir=None, options=None):
    """The DatasetSpec of a VOC-layout folder; 'train_aug' and 'sbd_train' need sbd_dir."""
    check_voc_dir(voc_dir)
    items = {}
    for split in splits:
        if split == 'train_aug':
            _needs_sbd(split, sbd_dir)
            items[split] = train_aug_items(voc_dir, sbd_dir)
        elif split == 'sbd_train':
            _needs_sbd(split, sbd_dir)
            items[split] = sbd_train_items(voc_dir, sbd_dir)
        elif split == 'seg11valid':
            items[split] = seg11valid_items(voc_dir)
        else:
            items[split] = split_items(voc_dir, split)
    if palette is None:
        palette = voc_palette(len(class_names))
    return DatasetSpec(name, class_names, palette, items, options)
