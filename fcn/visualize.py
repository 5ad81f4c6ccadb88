"""Colour label maps with a palette, blend overlays, draw legends (numpy/OpenCV; no TensorFlow:
predict.py runs without it). The TensorBoard version of `colorize` is fcn.summaries.colorize_tensor."""
import cv2
import numpy as np

from fcn import metrics
from fcn.data.palette import voc_palette

IGNORE_COLOUR = (224, 224, 192)  # VOC's void colour
CONFUSION_PIXELS = 640  # the heatmap's side, about: cells of 640 / num_classes pixels (2 to 32)


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


def add_legend(image_rgb, class_ids, class_names, palette, ignore_label=255, ignore_name=None):
    """Appends a legend panel naming each class in `class_ids` with its colour swatch (the
    ignore label, if listed, as `ignore_name`)."""
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
        if ignore_name is not None and class_id == ignore_label:
            name = ignore_name
        cv2.putText(panel, name, (30, top + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    canvas = np.full((panel.shape[0], image_rgb.shape[1], 3), 255, np.uint8)
    canvas[:image_rgb.shape[0]] = image_rgb
    return np.concatenate([canvas, panel], axis=1)


def confusion_image(confusion, class_names=None):
    """The row-normalised confusion matrix as an RGB viridis heatmap (rows: ground truth,
    columns: prediction) with the class names on both axes (rows on the left; columns above,
    reading upwards) and percentages in the cells when they are large enough (up to about
    20 classes). Cells are 12 to 32 pixels, so the names stay legible for any class count."""
    normalized = metrics.normalized_confusion(confusion)
    size = len(normalized)
    names = list(class_names or [])[:size]
    names += ['class_%d' % i for i in range(len(names), size)]
    cell = int(np.clip(CONFUSION_PIXELS // size, 12, 32))
    heat = cv2.applyColorMap(np.round(normalized * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1]
    cells = np.ascontiguousarray(np.repeat(np.repeat(heat, cell, axis=0), cell, axis=1))
    if cell >= 28:
        for (i, j), value in np.ndenumerate(normalized):
            colour = (0, 0, 0) if value > 0.5 else (255, 255, 255)
            cv2.putText(cells, '%d' % round(100 * value), (j * cell + 3, i * cell + cell // 2 + 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    rows = _name_band(names, cell)
    columns = np.ascontiguousarray(np.rot90(rows))  # row band i -> column band i, text reading upwards
    corner = np.full((columns.shape[0], rows.shape[1], 3), 255, np.uint8)
    for k, text in enumerate(('rows: truth', 'columns: prediction')):
        cv2.putText(corner, text, (3, 12 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([np.concatenate([corner, columns], axis=1), np.concatenate([rows, cells], axis=1)])


def _name_band(names, cell):
    """A white band of len(names) rows of `cell` pixels, each holding its name."""
    scale = min(0.4, cell / 32.0)
    width = max([cv2.getTextSize(name[:24], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for name in names] + [104])
    band = np.full((len(names) * cell, width + 8, 3), 255, np.uint8)
    for i, name in enumerate(names):
        cv2.putText(band, name[:24], (4, i * cell + (cell + int(22 * scale)) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
    return band


TITLE_HEIGHT = 24  # the band above sample_sheet's panels


def sample_sheet(image_rgb, labels, class_names, palette, ignore_label=255, title=''):
    """A training sample, side by side under a title band: the image, its labels in the
    palette's colours (void in the void colour) and their overlay with a legend of the
    classes present. Each panel is the image's size, at x = 0, W, 2W from TITLE_HEIGHT down."""
    labels = np.asarray(labels)
    present = [int(c) for c in np.unique(labels)]
    blended = add_legend(overlay(image_rgb, labels, palette, ignore_label=ignore_label), present, class_names,
                         palette, ignore_label, ignore_name='ignore (%d)' % ignore_label)
    height = blended.shape[0]
    panels = [_pad_rows(image_rgb, height), _pad_rows(colorize(labels, palette, ignore_label), height), blended]
    sheet = np.concatenate(panels, axis=1)
    band = np.full((TITLE_HEIGHT, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, sheet], axis=0)


def _pad_rows(image_rgb, height):
    """`image_rgb` on a white canvas `height` rows high."""
    canvas = np.full((height,) + image_rgb.shape[1:], 255, np.uint8)
    canvas[:image_rgb.shape[0]] = image_rgb
    return canvas
