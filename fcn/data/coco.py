"""COCO instance annotations -> semantic labels, through pycocotools.

Layout: <data_dir>/annotations/instances_<split>2017.json and <data_dir>/<split>2017/*.jpg
(a split already ending in digits, e.g. train2014, is used as is). Segmentations may be
polygons, uncompressed RLE (counts as a list, as crowd annotations use) or compressed RLE.

Label maps:
  voc20: the 20 VOC classes (usual COCO -> VOC mapping); other categories are background.
  coco:  background + the 80 categories in category-id order, contiguous ids 1..80.
Pixels covered by instances of different (mapped) classes, and crowd regions of mapped
classes, are 255 (ignore).

Training splits (names starting with "train") drop images with fewer than min_labeled_pixels
(default 1,000, as torchvision's reference drops images whose annotations cover 1,000 pixels or
less) labelled pixels other than background and ignore, and, with min_labeled_fraction, those
whose labelled share of the image is below it; both are listed as skipped and counted as
dropped. Validation splits keep every image.

EXIF orientation: an image turned upright (fcn.data.build) gets its label in the frame its
JSON width and height describe: the upright one when they are the turned size (an export from a
tool that shows photos upright), else the raw pixels' (COCO's own annotations were drawn in
browsers that ignored the tag, and its sizes are the stored pixels'), then turned with it.
"""
import contextlib
import io
import json
import os

import numpy as np

from fcn.data.spec import IGNORE_LABEL, BadItem, DatasetError, DatasetSpec, Item, parse_splits, safe_join
from fcn.data.palette import VOC_CLASSES, voc_palette
from fcn.data.sanity import is_training_split

# COCO category id of each VOC class, in VOC order (0 = background).
VOC_COCO_IDS = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)
LABEL_MAPS = ('voc20', 'coco')
DEFAULT_SPLITS = ('train', 'val')
DEFAULT_MIN_LABELED_PIXELS = 1000


def split_folder(split):
    return split if split[-1:].isdigit() else split + '2017'


def annotation_path(data_dir, split):
    return os.path.join(data_dir, 'annotations', 'instances_%s.json' % split_folder(split))


def load_coco(path):
    """A pycocotools COCO index of one instances JSON (its progress prints silenced)."""
    from pycocotools.coco import COCO
    if not os.path.isfile(path):
        raise DatasetError('annotation file not found', path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(path)
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError('not a COCO instances file (%s: %s)' % (type(e).__name__, e), path) from None


def label_map(name, categories, source):
    """(class_names, {coco category id: class id}) for the label map `name`."""
    ids = {c['id'] for c in categories}
    if name == 'voc20':
        missing = sorted(set(VOC_COCO_IDS[1:]) - ids)
        if missing:
            raise DatasetError('categories %s of the voc20 map are not in this file' % missing, source)
        return list(VOC_CLASSES), {cat: cls for cls, cat in enumerate(VOC_COCO_IDS) if cls > 0}
    if name == 'coco':
        ordered = sorted(categories, key=lambda c: c['id'])
        return ['background'] + [c['name'] for c in ordered], {c['id']: i + 1 for i, c in enumerate(ordered)}
    raise DatasetError('unknown label map %r (choose from %s)' % (name, ', '.join(LABEL_MAPS)))


def annotation_mask(segmentation, height, width):
    """The HxW bool mask of a polygon list, uncompressed RLE or compressed RLE segmentation."""
    from pycocotools import mask as mask_utils
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get('counts'), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def rasterize(annotations, height, width, class_map):
    """Semantic label of one image: instances painted by class, conflicts and crowds -> 255.

    annotations: [(category_id, iscrowd, segmentation)]; the result does not depend on order.
    """
    label = np.zeros((height, width), np.uint8)
    painted = np.zeros((height, width), bool)
    crowd = np.zeros((height, width), bool)
    for category, iscrowd, segmentation in annotations:
        cls = class_map.get(category)
        if cls is None:
            continue
        mask = annotation_mask(segmentation, height, width)
        if iscrowd:
            crowd |= mask
            continue
        label[mask & ~painted] = cls
        label[mask & painted & (label != cls)] = IGNORE_LABEL
        painted |= mask
    label[crowd] = IGNORE_LABEL
    return label


class CocoItem(Item):
    """One COCO image; its label is rasterized from the annotations it carries."""

    def __init__(self, name, image_path, image_id, height, width, annotations, class_map, json_path,
                 min_labeled_fraction=0.0, min_labeled_pixels=0):
        super().__init__(name, image_path)
        self.image_id = image_id
        self.height, self.width = height, width
        self.annotations = annotations
        self.class_map = class_map
        self.json_path = json_path
        self.min_labeled_fraction = min_labeled_fraction
        self.min_labeled_pixels = min_labeled_pixels

    @property
    def label_file(self):
        return self.json_path

    def key(self):
        return '%s|%d|%d' % (super().key(), self.image_id, len(self.annotations))

    def load_label(self, height, width):
        if (height, width) != (self.height, self.width):
            raise DatasetError('image id %d is %dx%d here but %s is %dx%d' % (
                self.image_id, self.height, self.width, self.image_path, height, width), self.json_path)
        try:
            return rasterize(self.annotations, self.height, self.width, self.class_map)
        except Exception as e:  # pycocotools raises bare Exceptions / TypeErrors on malformed input
            raise DatasetError('bad segmentation in the annotations of image id %d (%s)' % (self.image_id, e),
                               self.json_path) from None

    def labelled_on_raw_pixels(self, size, raw_size):
        """Upright only when the JSON's size is the turned one and not the raw one (module doc)."""
        return (self.height, self.width) != tuple(size) or tuple(size) == tuple(raw_size)

    def reject_reason(self, counts, num_classes):
        labelled = int(counts[1:num_classes].sum())
        if labelled < self.min_labeled_pixels:
            return '%d labelled pixels below --min_labeled_pixels %d' % (labelled, self.min_labeled_pixels)
        if self.min_labeled_fraction <= 0:
            return None
        fraction = labelled / float(counts.sum())
        if fraction < self.min_labeled_fraction:
            return 'labelled area %.4f below --min_labeled_fraction %g' % (fraction, self.min_labeled_fraction)
        return None


def split_items(coco, data_dir, split, class_map, json_path, min_labeled_fraction=0.0, min_labeled_pixels=0):
    """One CocoItem per image of the split (images without annotations are all background)."""
    image_dir = os.path.join(data_dir, split_folder(split))
    items = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        annotations = [(a['category_id'], int(a.get('iscrowd', 0)), a['segmentation'])
                       for a in coco.imgToAnns.get(image_id, []) if a['category_id'] in class_map]
        name = os.path.splitext(os.path.basename(info['file_name']))[0]
        try:
            path = safe_join(image_dir, info['file_name'])
        except DatasetError as e:
            items.append(BadItem(name, json_path, e.reason))
            continue
        items.append(CocoItem(name, path, image_id, int(info['height']), int(info['width']), annotations,
                              class_map, json_path, min_labeled_fraction, min_labeled_pixels))
    return items


def coco_spec(data_dir, splits, labels='voc20', min_labeled_fraction=0.0,
              min_labeled_pixels=DEFAULT_MIN_LABELED_PIXELS):
    """The DatasetSpec of a COCO tree; the thresholds apply to training splits only (module doc)."""
    if not 0.0 <= min_labeled_fraction < 1.0:
        raise DatasetError('--min_labeled_fraction must be in [0, 1), got %g' % min_labeled_fraction)
    if isinstance(min_labeled_pixels, bool) or not isinstance(min_labeled_pixels, int) or min_labeled_pixels < 0:
        raise DatasetError('--min_labeled_pixels must be an integer >= 0 (0 keeps every image), got %r'
                           % (min_labeled_pixels,))
    class_names, class_map, categories, items = None, None, None, {}
    for split in splits:
        json_path = annotation_path(data_dir, split)
        coco = load_coco(json_path)
        cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c['id'])
        if categories is None:
            categories = cats
            class_names, class_map = label_map(labels, cats, json_path)
        elif [(c['id'], c['name']) for c in cats] != [(c['id'], c['name']) for c in categories]:
            raise DatasetError('categories differ from those of the first split', json_path)
        training = is_training_split(split)
        items[split] = split_items(coco, data_dir, split, class_map, json_path,
                                   min_labeled_fraction if training else 0.0, min_labeled_pixels if training else 0)
        if not items[split]:
            raise DatasetError("split %r is empty: no images in this file" % split, json_path)
    options = {'labels': labels, 'min_labeled_fraction': min_labeled_fraction, 'min_labeled_pixels': min_labeled_pixels,
               'categories': json.dumps(categories, sort_keys=True)}
    return DatasetSpec('coco', class_names, voc_palette(len(class_names)), items, options)
