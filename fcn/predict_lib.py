"""Segmenting image files with a frozen model: palette PNGs of class ids and overlays."""
import os

import cv2
import numpy as np
from tqdm import tqdm

from fcn import visualize
from fcn.data.palette import write_palette_png
from fcn.export.frozen import FrozenModel


def read_rgb(path):
    """An image file as RGB uint8, with an error naming the file when it cannot be read."""
    if not os.path.isfile(path):
        raise FileNotFoundError('image not found: %s' % path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError('%s is not a readable image (JPEG, PNG, BMP...)' % path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def class_names(labels_info, num_classes):
    names = labels_info.get('class_names') or []
    return list(names) + ['class_%d' % i for i in range(len(names), num_classes)]


def render(image, prediction, labels_info):
    """(palette used, overlay with legend) for one prediction."""
    palette = visualize.full_palette(labels_info.get('palette'), labels_info.get('ignore_label', 255))
    present = [int(c) for c in np.unique(prediction)]
    names = class_names(labels_info, max(present) + 1)
    blended = visualize.overlay(image, prediction, palette)
    return palette, visualize.add_legend(blended, present, names, palette)


def check_files(image_paths):
    """Fails before the slow part (loading a model) when an image path is wrong."""
    for path in image_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError('image not found: %s' % path)


def predict_files(model_path, image_paths, out_dir):
    """Segments each image; yields the paths written."""
    check_files(image_paths)
    model = FrozenModel(model_path)
    os.makedirs(out_dir, exist_ok=True)
    try:
        for path in tqdm(image_paths, desc='predict', unit='img', disable=len(image_paths) < 2):
            image = read_rgb(path)
            prediction = model.predict(image).astype(np.uint8)
            palette, panel = render(image, prediction, model.labels)
            stem = os.path.splitext(os.path.basename(path))[0]
            label_path = os.path.join(out_dir, stem + '.png')
            overlay_path = os.path.join(out_dir, stem + '_overlay.png')
            write_palette_png(label_path, prediction, palette)
            cv2.imwrite(overlay_path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
            yield label_path
            yield overlay_path
    finally:
        model.close()
