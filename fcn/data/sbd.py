"""SBD (Hariharan et al.): its labels and its lists; the `train_aug` split that combines SBD
with VOC is composed in fcn.data.voc (this module does not import voc: no cycle).

SBD's `dataset/` folder holds cls/<stem>.mat (a 1x1 MATLAB struct GTcls with fields
Boundaries, Segmentation, CategoriesPresent; Segmentation is the HxW uint8 class map, same
class ids as VOC), img/<stem>.jpg, and train.txt / val.txt (8498 / 2857 stems).

train_aug = VOC train + SBD train + SBD val - VOC val (10,582 images on the real data). VOC
train images keep their VOC label (VOC wins where both exist); the others use SBD's.
"""
import os

import numpy as np
import scipy.io

from fcn.data.spec import BadItem, DatasetError, Item, read_list, safe_join

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


def make_item(image_dir, sbd_dir, stem, source, fallback_image_dir=None):
    """The JPEG from image_dir when it has the image, else from fallback_image_dir (default SBD's
    img/); the label from SBD's cls/. train_aug passes VOC's JPEGImages/ first (SBD's images are
    VOC 2011 ones), sbd_train SBD's img/ first (as fcn.berkeleyvision.org's SBD layer reads them)."""
    fallback_image_dir = fallback_image_dir or os.path.join(sbd_dir, IMAGE_DIR)
    try:
        image = safe_join(image_dir, stem + '.jpg')
        if not os.path.isfile(image):
            image = safe_join(fallback_image_dir, stem + '.jpg')
        mat = safe_join(os.path.join(sbd_dir, CLS_DIR), stem + '.mat')
    except DatasetError as e:
        return BadItem(stem, source, e.reason)
    return SbdItem(stem, image, mat)


def listed_stems(sbd_dir):
    """{stem: list file} of SBD's train.txt and val.txt (first listing wins)."""
    if not os.path.isdir(os.path.join(sbd_dir, CLS_DIR)):
        raise DatasetError('not an SBD dataset folder: cls/ is missing', sbd_dir)
    stems = {}
    for name in SPLIT_LISTS:
        path = os.path.join(sbd_dir, name)
        for stem in read_list(path):
            stems.setdefault(stem, path)
    return stems
