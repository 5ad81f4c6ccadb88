"""SBD (Hariharan et al.) labels and the `train_aug` split.

SBD's `dataset/` folder holds cls/<stem>.mat (a 1x1 MATLAB struct GTcls with fields
Boundaries, Segmentation, CategoriesPresent; Segmentation is the HxW uint8 class map, same
class ids as VOC), img/<stem>.jpg, and train.txt / val.txt (8498 / 2857 stems).

train_aug = VOC train + SBD train + SBD val - VOC val (10,582 images on the real data). VOC
train images keep their VOC label (VOC wins where both exist); the others use SBD's.
"""
import os

import numpy as np
import scipy.io

from fcn.data import voc
from fcn.data.build import BadItem, DatasetError, Item, read_list, safe_join

CLS_DIR = 'cls'
IMAGE_DIR = 'img'
SPLIT_LISTS = ('train.txt', 'val.txt')


def read_sbd_label(path):
    """GTcls.Segmentation of an SBD cls/*.mat file as a uint8 label; DatasetError naming the file."""
    if not os.path.isfile(path):
        raise DatasetError('label not found', path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... for bad files
        raise DatasetError('unreadable .mat file (%s)' % e, path) from None
    try:
        segmentation = np.asarray(mat['GTcls']['Segmentation'][0, 0])
    except (KeyError, ValueError, IndexError, TypeError):
        raise DatasetError('no GTcls.Segmentation in this .mat file (not an SBD cls/ file?)', path) from None
    if segmentation.ndim != 2 or segmentation.size == 0:
        raise DatasetError('GTcls.Segmentation is not a 2-D map (shape %s)' % (segmentation.shape,), path)
    if segmentation.dtype != np.uint8:
        if segmentation.min() < 0 or segmentation.max() > 255 or np.any(segmentation != np.round(segmentation)):
            raise DatasetError('GTcls.Segmentation values must be integers in 0..255', path)
        segmentation = segmentation.astype(np.uint8)
    return segmentation


class SbdItem(Item):
    """An image whose label is SBD's cls/<stem>.mat."""

    def __init__(self, name, image_path, mat_path):
        super().__init__(name, image_path)
        self.mat_path = mat_path

    @property
    def label_file(self):
        return self.mat_path

    def load_label(self, height, width):
        return read_sbd_label(self.mat_path)


def _sbd_item(voc_dir, sbd_dir, stem, source):
    """VOC's JPEG when VOC has the image (SBD's images are VOC 2011 ones), else SBD's img/."""
    try:
        image = safe_join(os.path.join(voc_dir, voc.IMAGE_DIR), stem + '.jpg')
        if not os.path.isfile(image):
            image = safe_join(os.path.join(sbd_dir, IMAGE_DIR), stem + '.jpg')
        mat = safe_join(os.path.join(sbd_dir, CLS_DIR), stem + '.mat')
    except DatasetError as e:
        return BadItem(stem, source, e.reason)
    return SbdItem(stem, image, mat)


def train_aug_items(voc_dir, sbd_dir):
    """The items of train_aug, sorted by stem."""
    if not os.path.isdir(os.path.join(sbd_dir, CLS_DIR)):
        raise DatasetError('not an SBD dataset folder: cls/ is missing', sbd_dir)
    voc_train = voc.read_split(voc_dir, 'train')
    voc_val = set(voc.read_split(voc_dir, 'val'))
    sbd_stems = {}
    for name in SPLIT_LISTS:
        path = os.path.join(sbd_dir, name)
        for stem in read_list(path):
            sbd_stems.setdefault(stem, path)
    items = {stem: voc.make_item(voc_dir, stem, voc.list_path(voc_dir, 'train')) for stem in voc_train}
    for stem, source in sbd_stems.items():
        if stem not in items and stem not in voc_val:
            items[stem] = _sbd_item(voc_dir, sbd_dir, stem, source)
    return [items[stem] for stem in sorted(items)]
