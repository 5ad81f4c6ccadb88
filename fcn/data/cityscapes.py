"""Cityscapes as it ships: leftImg8bit/SPLIT/CITY/*_leftImg8bit.png with
gtFine/SPLIT/CITY/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png).

labelIds hold the ids of cityscapesScripts' `helpers/labels.py` table (0..33; license plate's
-1 is never drawn, and 255, its uint8 form, is read as it); they become the 19 training ids of
that table, every other id 255. labelTrainIds (written by cityscapesScripts'
`createTrainIdLabelImgs.py`) already hold 0..18 and 255 and are taken as they are.
"""
import os

from fcn.data.spec import IGNORE_LABEL, BadItem, DatasetError, DatasetSpec
from fcn.data.voc import IndexPngItem, MappedIndexItem

IMAGE_DIR = 'leftImg8bit'
LABEL_DIR = 'gtFine'
IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_TYPES = ('labelIds', 'labelTrainIds')
DEFAULT_SPLITS = ('train', 'val')

# cityscapesScripts helpers/labels.py: (name, id, trainId, color) of every label; trainId 255 = ignored.
LABELS = (
    ('unlabeled', 0, 255, (0, 0, 0)), ('ego vehicle', 1, 255, (0, 0, 0)),
    ('rectification border', 2, 255, (0, 0, 0)), ('out of roi', 3, 255, (0, 0, 0)),
    ('static', 4, 255, (0, 0, 0)), ('dynamic', 5, 255, (111, 74, 0)), ('ground', 6, 255, (81, 0, 81)),
    ('road', 7, 0, (128, 64, 128)), ('sidewalk', 8, 1, (244, 35, 232)), ('parking', 9, 255, (250, 170, 160)),
    ('rail track', 10, 255, (230, 150, 140)), ('building', 11, 2, (70, 70, 70)), ('wall', 12, 3, (102, 102, 156)),
    ('fence', 13, 4, (190, 153, 153)), ('guard rail', 14, 255, (180, 165, 180)), ('bridge', 15, 255, (150, 100, 100)),
    ('tunnel', 16, 255, (150, 120, 90)), ('pole', 17, 5, (153, 153, 153)), ('polegroup', 18, 255, (153, 153, 153)),
    ('traffic light', 19, 6, (250, 170, 30)), ('traffic sign', 20, 7, (220, 220, 0)),
    ('vegetation', 21, 8, (107, 142, 35)), ('terrain', 22, 9, (152, 251, 152)), ('sky', 23, 10, (70, 130, 180)),
    ('person', 24, 11, (220, 20, 60)), ('rider', 25, 12, (255, 0, 0)), ('car', 26, 13, (0, 0, 142)),
    ('truck', 27, 14, (0, 0, 70)), ('bus', 28, 15, (0, 60, 100)), ('caravan', 29, 255, (0, 0, 90)),
    ('trailer', 30, 255, (0, 0, 110)), ('train', 31, 16, (0, 80, 100)), ('motorcycle', 32, 17, (0, 0, 230)),
    ('bicycle', 33, 18, (119, 11, 32)), ('license plate', -1, -1, (0, 0, 142)),
)
TRAIN_LABELS = sorted((label for label in LABELS if 0 <= label[2] < IGNORE_LABEL), key=lambda label: label[2])
CLASS_NAMES = tuple(name for name, _, _, _ in TRAIN_LABELS)
PALETTE = tuple(color for _, _, _, color in TRAIN_LABELS)
UNKNOWN_ID = "not in Cityscapes' labelIds table (ids 0..33, and 255 for license plate's -1)"


def label_id_table():
    """256 entries: the training id (or 255) of each labelIds value; -1 for values not in the table."""
    table = [-1] * 256
    for _, label_id, train_id, _ in LABELS:
        table[label_id % 256] = IGNORE_LABEL if train_id < 0 else train_id  # -1 is 255 as uint8
    return table


def check_cityscapes_dir(data_dir):
    for sub in (IMAGE_DIR, LABEL_DIR):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise DatasetError('not a Cityscapes folder: %s/ is missing (expected %s/SPLIT/CITY/*%s and %s/SPLIT/CITY/'
                               '*_gtFine_labelIds.png)' % (sub, IMAGE_DIR, IMAGE_SUFFIX, LABEL_DIR), data_dir)


def list_images(data_dir, split):
    """[(stem, city, image path)] of leftImg8bit/<split>/*/*_leftImg8bit.png, sorted."""
    split_dir = os.path.join(data_dir, IMAGE_DIR, split)
    if not os.path.isdir(split_dir):
        raise DatasetError('split %r not found: no %s/%s/ folder' % (split, IMAGE_DIR, split), data_dir)
    found = []
    for city in sorted(os.listdir(split_dir)):
        city_dir = os.path.join(split_dir, city)
        if os.path.isdir(city_dir):
            found += [(name[:-len(IMAGE_SUFFIX)], city, os.path.join(city_dir, name))
                      for name in sorted(os.listdir(city_dir)) if name.endswith(IMAGE_SUFFIX)]
    if not found:
        raise DatasetError('split %r is empty: no CITY/*%s images in this folder' % (split, IMAGE_SUFFIX), split_dir)
    return found


def split_items(data_dir, split, label_type):
    table = label_id_table()
    items = []
    for stem, city, image in list_images(data_dir, split):
        label = os.path.join(data_dir, LABEL_DIR, split, city, '%s_gtFine_%s.png' % (stem, label_type))
        if not os.path.isfile(label):
            items.append(BadItem(stem, label, 'label not found for image %s' % image))
        elif label_type == 'labelIds':
            items.append(MappedIndexItem(stem, image, label, table, UNKNOWN_ID))
        else:
            items.append(IndexPngItem(stem, image, label))
    return items


def cityscapes_spec(data_dir, splits=DEFAULT_SPLITS, label_type='labelIds'):
    """The DatasetSpec of a Cityscapes folder (the one holding leftImg8bit/ and gtFine/)."""
    if label_type not in LABEL_TYPES:
        raise DatasetError('unknown Cityscapes label type %r (choose from %s)' % (label_type, ', '.join(LABEL_TYPES)))
    check_cityscapes_dir(data_dir)
    items = {split: split_items(data_dir, split, label_type) for split in splits}
    return DatasetSpec('cityscapes', CLASS_NAMES, PALETTE, items, {'label_type': label_type})
