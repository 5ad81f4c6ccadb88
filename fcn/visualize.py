"""Colour label maps with a palette, blend overlays, draw legends (numpy/OpenCV; no TensorFlow:
predict.py runs without it). The TensorBoard version of `colorize` is fcn.summaries.colorize_tensor."""
import cv2
import numpy as np

from fcn.data.palette import voc_palette

IGNORE_COLOUR = (224, 224, 192)  # VOC's void colour


def full_palette(palette, ignore_label=255):
    """A 256-entry RGB table: the given class colours, VOC colours beyond, void colour at ignore."""
    table = voc_palette(256)
    if palette is not None:
        given = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
        table[:len(given)] = given
    if 0 <= ignore_label < 256:
        table[ignore_label] = IGNORE_COLOUR
    return table


def colorize(labels, palette, ignore_label=255):
    """uint8/int class-id array [..., H, W] -> RGB uint8 [..., H, W, 3]."""
    return full_palette(palette, ignore_label)[np.clip(np.asarray(labels), 0, 255)]


def overlay(image_rgb, labels, palette, alpha=0.5, ignore_label=255):
    """Blends the colourised labels over the image (background pixels stay as they were)."""
    colours = colorize(labels, palette, ignore_label).astype(np.float32)
    blended = image_rgb.astype(np.float32) * (1 - alpha) + colours * alpha
    keep = (np.asarray(labels) == 0)[..., None]
    return np.where(keep, image_rgb, blended).astype(np.uint8)


def add_legend(image_rgb, class_ids, class_names, palette, ignore_label=255):
    """Appends a legend panel naming each class in `class_ids` with its colour swatch."""
    table = full_palette(palette, ignore_label)
    row_height, width = 22, 200
    rows = max(1, len(class_ids))
    panel = np.full((max(image_rgb.shape[0], rows * row_height + 8), width, 3), 255, np.uint8)
    for row, class_id in enumerate(class_ids):
        top = 4 + row * row_height
        colour = tuple(int(c) for c in table[class_id])
        cv2.rectangle(panel, (6, top), (24, top + 16), colour, thickness=-1)
        cv2.rectangle(panel, (6, top), (24, top + 16), (0, 0, 0), thickness=1)
        name = class_names[class_id] if class_id < len(class_names) else 'class_%d' % class_id
        cv2.putText(panel, name, (30, top + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    canvas = np.full((panel.shape[0], image_rgb.shape[1], 3), 255, np.uint8)
    canvas[:image_rgb.shape[0]] = image_rgb
    return np.concatenate([canvas, panel], axis=1)
