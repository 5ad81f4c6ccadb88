"""ADE20K as the scene-parsing benchmark ships it (ADEChallengeData2016, also MMSegmentation's layout):
images/{training,validation}/ADE_*.jpg with annotations/{training,validation}/ADE_*.png.

Annotations are 8-bit single-channel PNGs of 0..150: 0 is "other objects", which the benchmark
does not evaluate, and 1..150 the classes of its objectInfo150 table. Here 0 becomes the ignore
label 255 and k becomes k - 1 (MMSegmentation's reduce_zero_label), so class ids are 0..149.
"""
import os

from fcn.data.spec import IGNORE_LABEL, BadItem, DatasetError, DatasetSpec
from fcn.data.voc import MappedIndexItem

SPLIT_FOLDERS = {'train': 'training', 'val': 'validation'}
DEFAULT_SPLITS = ('train', 'val')
NUM_CLASSES = 150
UNKNOWN_VALUE = 'above %d: ADE20K annotations hold 0 (other, ignored) and the classes 1..%d' % (NUM_CLASSES,
                                                                                               NUM_CLASSES)

# The first name of each row of the benchmark's objectInfo150 table, in its order (class k + 1
# of the annotations is class id k here); MMSegmentation's ADE20KDataset has the same names except
# 'bed ' (a trailing space) and 'television receiver' (objectInfo150: "television, television receiver, ...").
CLASS_NAMES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
    'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television', 'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister', 'escalator',
    'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt',
    'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall',
    'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name',
    'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture',
    'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen',
    'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag',
)
# MMSegmentation's ADE20KDataset palette (RGB), one colour a class.
PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)


def annotation_table():
    """256 entries: 0 -> 255 (other), k -> k - 1 for the classes 1..150, -1 (an error) above 150."""
    return [IGNORE_LABEL] + list(range(NUM_CLASSES)) + [-1] * (255 - NUM_CLASSES)


def check_ade20k_dir(data_dir):
    for sub in ('images', 'annotations'):
        if not os.path.isdir(os.path.join(data_dir, sub)):
            raise DatasetError('not an ADEChallengeData2016 folder: %s/ is missing (expected images/training/ADE_*.jpg '
                               'and annotations/training/ADE_*.png)' % sub, data_dir)


def split_items(data_dir, split):
    if split not in SPLIT_FOLDERS:
        raise DatasetError('unknown ADE20K split %r (choose from %s)' % (split, ', '.join(SPLIT_FOLDERS)))
    folder = SPLIT_FOLDERS[split]
    image_dir = os.path.join(data_dir, 'images', folder)
    if not os.path.isdir(image_dir):
        raise DatasetError('split %r not found: no images/%s/ folder' % (split, folder), data_dir)
    stems = sorted(name[:-4] for name in os.listdir(image_dir) if name.startswith('ADE_') and name.endswith('.jpg'))
    if not stems:
        raise DatasetError('split %r is empty: no ADE_*.jpg images in this folder' % split, image_dir)
    table, items = annotation_table(), []
    for stem in stems:
        image = os.path.join(image_dir, stem + '.jpg')
        label = os.path.join(data_dir, 'annotations', folder, stem + '.png')
        if os.path.isfile(label):
            items.append(MappedIndexItem(stem, image, label, table, UNKNOWN_VALUE))
        else:
            items.append(BadItem(stem, label, 'annotation not found for image %s' % image))
    return items


def ade20k_spec(data_dir, splits=DEFAULT_SPLITS):
    """The DatasetSpec of an ADEChallengeData2016 folder."""
    check_ade20k_dir(data_dir)
    items = {split: split_items(data_dir, split) for split in splits}
    return DatasetSpec('ade20k', CLASS_NAMES, PALETTE, items)
