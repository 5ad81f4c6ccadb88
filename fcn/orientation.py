"""EXIF orientation: the one place that reads the tag and turns pixels upright.

Phones and cameras store a portrait photo as landscape pixels plus an EXIF Orientation tag
(0x0112) that says how to turn them for display; annotation tools (CVAT, Label Studio,
labelme) draw on the turned view, while OpenCV's IMREAD_UNCHANGED and TensorFlow's decoders
ignore the tag. The record builders (fcn.data.build) and predict.py (fcn.image_decoder) both
call `jpeg_orientation` on a JPEG's bytes and `upright` on its decoded pixels, so a record and a
prediction see the same upright image. Only JPEGs are looked at for images (reading a PNG's
tag can mean decoding it); label files of any format are checked with `file_orientation`.

Imports only NumPy and Pillow (both in deploy-requirements.txt): it runs without TensorFlow.
"""
import io

import numpy as np

TAG = 0x0112  # EXIF Orientation
UPRIGHT = 1
SWAPS_AXES = (5, 6, 7, 8)  # the orientations that turn by 90 degrees: height and width swap
NAMES = {1: 'upright', 2: 'mirrored', 3: 'rotated 180', 4: 'flipped', 5: 'transposed',
         6: 'rotated 90 (turn clockwise to view)', 7: 'transversed', 8: 'rotated 270 (turn counter-clockwise to view)'}


def is_jpeg(data):
    return data[:3] == b'\xff\xd8\xff'


def _tag(image):
    """The orientation in a Pillow image's EXIF, 1 when absent, unreadable or not 1..8."""
    try:
        value = image.getexif().get(TAG, UPRIGHT)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation (Pillow raises many kinds)
        return UPRIGHT
    try:
        value = int(value)
    except (TypeError, ValueError):
        return UPRIGHT
    return value if value in NAMES else UPRIGHT


def jpeg_orientation(data):
    """The EXIF orientation (1..8) of encoded image bytes: 1 for non-JPEGs and JPEGs without one.

    Reads the header only (Pillow parses APP1 without decoding the pixels)."""
    if not is_jpeg(data):
        return UPRIGHT
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _tag(image)
    except Exception:  # noqa: BLE001 - the pixels are validated by the caller's decoder, not here
        return UPRIGHT


def file_orientation(path):
    """The EXIF orientation (1..8) a label file carries (PNG eXIf, TIFF, JPEG), 1 if none."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return _tag(image)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the label reader
        return UPRIGHT


def upright(array, orientation):
    """`array` (HxW or HxWxC) turned as the tag says, so that it shows as a viewer shows it.

    The same pixels as Pillow's ImageOps.exif_transpose (tests/test_orientation.py checks all 8)."""
    if orientation == 2:
        out = array[:, ::-1]
    elif orientation == 3:
        out = array[::-1, ::-1]
    elif orientation == 4:
        out = array[::-1]
    elif orientation == 5:
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:
        out = np.swapaxes(array[::-1], 0, 1)
    elif orientation == 7:
        out = np.swapaxes(array[::-1, ::-1], 0, 1)
    elif orientation == 8:
        out = np.swapaxes(array[:, ::-1], 0, 1)
    else:
        return array
    return np.ascontiguousarray(out)


def upright_size(height, width, orientation):
    """(height, width) after `upright`."""
    return (width, height) if orientation in SWAPS_AXES else (height, width)


def describe(orientation):
    return 'EXIF orientation %d (%s)' % (orientation, NAMES.get(orientation, 'unknown'))
