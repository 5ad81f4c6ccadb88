"""A synthetic shapes dataset in VOC layout, small and learnable, for demos and smoke tests.

Each image has a textured, low-saturation gradient background and 2-4 shapes (disc, square,
triangle, cross), each class drawn in its own hue range with noise, so that a small CNN can
learn both colour and shape. Labels have a thin void (255) border around every shape, as VOC
does. Everything is determined by the seed (image i uses the generator seeded with (seed, i)).
"""
import json
import os
import shutil
import tempfile

import cv2
import numpy as np

from fcn.data import voc
from fcn.data.spec import IGNORE_LABEL, DatasetError
from fcn.data.palette import voc_palette, write_palette_png

CLASS_NAMES = ('background', 'disc', 'square', 'triangle', 'cross')
HUE_DEGREES = {1: 0, 2: 120, 3: 240, 4: 60}  # centre hue of each shape class
HUE_SPREAD = 12
PARAMS_FILE = 'params.json'
JPEG_QUALITY = 90


def _background(rng, size):
    """Low-saturation linear gradient between two colours, plus a sinusoidal texture, RGB float."""
    hsv = np.stack([rng.uniform(0, 180, 2), rng.uniform(0, 60, 2), rng.uniform(60, 220, 2)], axis=1)
    colours = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip((np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5, 0, 1)[..., None]
    image = colours[0] * (1 - t) + colours[1] * t
    freq, phase = rng.uniform(2, 8, 2), rng.uniform(0, 2 * np.pi, 2)
    texture = np.sin(2 * np.pi * freq[0] * xx + phase[0]) * np.sin(2 * np.pi * freq[1] * yy + phase[1])
    return image + rng.uniform(5, 20) * texture[..., None]


def _shape_mask(rng, cls, size):
    """A uint8 mask of one randomly placed, sized and rotated shape of class `cls`."""
    mask = np.zeros((size, size), np.uint8)
    r = rng.uniform(size / 10, size / 5)
    cx, cy = rng.uniform(r, size - r, 2)
    angle = rng.uniform(0, 360)
    if cls == 1:
        cv2.circle(mask, (int(cx), int(cy)), int(r), 1, -1)
    elif cls == 2:
        box = cv2.boxPoints(((cx, cy), (1.6 * r, 1.6 * r), angle))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif cls == 3:
        a = np.deg2rad(angle) + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:
        for extra in (0, 90):
            bar = cv2.boxPoints(((cx, cy), (2 * r, 0.6 * r), angle + extra))
            cv2.fillPoly(mask, [np.round(bar).astype(np.int32)], 1)
    return mask.astype(bool)


def _shape_colour(rng, cls):
    hue = (HUE_DEGREES[cls] + rng.uniform(-HUE_SPREAD, HUE_SPREAD)) % 360
    hsv = np.array([[[hue / 2, rng.uniform(150, 255), rng.uniform(130, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def make_example(seed, index, size):
    """One (RGB uint8 image, uint8 label) pair, a pure function of (seed, index, size)."""
    rng = np.random.default_rng([seed, index])
    image = _background(rng, size)
    label = np.zeros((size, size), np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    for _ in range(rng.integers(2, 5)):
        cls = int(rng.integers(1, len(CLASS_NAMES)))
        mask = _shape_mask(rng, cls, size)
        image[mask] = _shape_colour(rng, cls) + rng.normal(0, 6, (int(mask.sum()), 3))
        label[mask] = cls
        m = mask.astype(np.uint8)
        label[(cv2.dilate(m, kernel) > 0) & (cv2.erode(m, kernel) == 0)] = IGNORE_LABEL
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_voc_layout(root, num_train, num_val, size, seed):
    """Writes the generated set as a VOC folder: JPEGImages/, SegmentationClass/, ImageSets/."""
    for sub in (voc.IMAGE_DIR, voc.LABEL_DIR, voc.LIST_DIR):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    palette = voc_palette(256)
    names = ['%06d' % i for i in range(num_train + num_val)]
    for i, name in enumerate(names):
        image, label = make_example(seed, i, size)
        cv2.imwrite(voc.image_path(root, name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        write_palette_png(os.path.join(root, voc.LABEL_DIR, name + '.png'), label, palette)
    lists = {'train': names[:num_train], 'val': names[num_train:], 'trainval': names}
    for split, stems in lists.items():
        with open(voc.list_path(root, split), 'w') as f:
            f.write(''.join(s + '\n' for s in stems))


def ensure_source(root, num_train, num_val, size, seed):
    """Generates the VOC folder at root unless one with the same parameters is there.

    A new set is written to a temporary folder and swapped in only when complete.
    """
    params = {'num_train': num_train, 'num_val': num_val, 'size': size, 'seed': seed}
    params_path = os.path.join(root, PARAMS_FILE)
    if os.path.isfile(params_path):
        with open(params_path) as f:
            if json.load(f) == params:
                return params
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.source-', dir=parent)
    try:
        write_voc_layout(tmp, num_train, num_val, size, seed)
        with open(os.path.join(tmp, PARAMS_FILE), 'w') as f:
            json.dump(params, f)
        if os.path.isdir(root):
            shutil.rmtree(root)
        os.rename(tmp, root)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return params


def synthetic_spec(source_dir, num_train, num_val, size, seed):
    """The DatasetSpec of the generated set, written (once per parameters) as a VOC folder at source_dir."""
    if num_train < 1 or num_val < 1 or size < 32:
        raise DatasetError('synthetic needs --num_train >= 1, --num_val >= 1 and --size >= 32')
    params = ensure_source(source_dir, num_train, num_val, size, seed)
    return voc.voc_spec(source_dir, ['train', 'val'], class_names=CLASS_NAMES, name='synthetic', options=params)
