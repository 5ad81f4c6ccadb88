"""PASCAL VOC class names, the VOC colour map, and palette-PNG read/write.

VOC (and most segmentation datasets) store labels as palette ("P" mode) PNGs: each pixel
holds a class index and the palette only says how to show it. OpenCV expands a palette to
colours on read, so index PNGs are read and written with Pillow, which keeps the indices.
"""
import numpy as np
from PIL import Image

VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)


def voc_palette(n=256):
    """The VOC colour map: the bits of index i are interleaved into the top bits of r, g, b.

    Returns an (n, 3) uint8 array; entry 255 (void) is (224, 224, 192) as in VOC.
    """
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def write_palette_png(path, indices, palette=None):
    """Writes a uint8 HxW index array as a palette PNG (VOC's SegmentationClass format)."""
    indices = np.asarray(indices)
    if indices.ndim != 2 or indices.dtype != np.uint8:
        raise ValueError('indices must be a 2-D uint8 array, got %s %s' % (indices.dtype, indices.shape))
    if palette is None:
        palette = voc_palette(256)
    flat = np.zeros((256, 3), np.uint8)
    palette = np.asarray(palette, np.uint8)[:256]
    flat[:len(palette)] = palette
    image = Image.fromarray(indices)  # mode L; putpalette turns it into P, keeping the values
    image.putpalette(flat.reshape(-1).tolist())
    image.save(path, format='PNG')


def open_image(path):
    """Opens and fully decodes an image with Pillow (OSError if missing, unreadable or truncated)."""
    image = Image.open(path)
    image.load()
    return image


def index_array(image):
    """The uint8 HxW indices of an opened palette ('P') or grayscale ('L') image, not its colours."""
    if image.mode not in ('P', 'L'):
        raise ValueError('expected a palette or grayscale index image, got mode %s' % image.mode)
    return np.array(image, dtype=np.uint8)


def read_index_png(path):
    """Reads a palette or grayscale PNG as its uint8 HxW indices."""
    return index_array(open_image(path))
