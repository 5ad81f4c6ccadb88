"""Segmenting image files with any exported model: palette PNGs of class ids and overlays.

The model is a frozen graph (.pb), a SavedModel folder, an ONNX (.onnx) or TFLite (.tflite)
file; each runner has `.predict(rgb uint8 [H, W, 3]) -> int32 [H, W]`, `.labels`, `.close()`.
Images are decoded as the records are (fcn.image_decoder: TensorFlow's decoder, or without
TensorFlow the same pixels from libjpeg-turbo), so a JPEG gets the class ids eval.py measured;
a JPEG with an EXIF orientation is turned upright first, as the record builders turn it, and its
outputs are written in that upright frame (upright=False: the raw pixels, for a model trained
on records built with --ignore_exif_orientation).
Existing files are never written over unless `overwrite`, and an input never is.
"""
import os
import sys
from collections import defaultdict

import cv2
import numpy as np
from tqdm import tqdm

from fcn import image_decoder, visualize
from fcn.data.palette import write_palette_png
from fcn.export import load_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
def read_rgb(path):
    """An image file as RGB uint8 with OpenCV (ImageNet mode), with an error naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError('image not found: %s' % path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError('%s is not a readable image (JPEG, PNG, BMP...)' % path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_files(image_paths):
    """Fails before the slow part (loading a model) when an image path is wrong."""
    for path in image_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError('image not found: %s' % path)


def list_images(inputs):
    """Image files from files (taken as given) and folders (their images, sorted by name)."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, name)))
            if not found:
                raise FileNotFoundError('folder %s holds no images (%s)' % (item, ', '.join(IMAGE_EXTENSIONS)))
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError('image not found: %s' % item)
    unique = []
    for path in paths:  # the same file named twice (a file and its folder) is predicted once
        if os.path.realpath(path) not in {os.path.realpath(p) for p in unique}:
            unique.append(path)
    return unique


def output_stems(paths):
    """A distinct output name for each input: its stem; stem_ext when inputs with one stem
    have different extensions (a.jpg, a.png -> a_jpg, a_png); then _2, _3... (the same name
    in two folders). Names are also kept apart from each other's _overlay files."""
    split = [os.path.splitext(os.path.basename(p)) for p in paths]
    extensions = defaultdict(set)
    for stem, ext in split:
        extensions[stem].add(ext.lower())
    taken, out = set(), []
    for stem, ext in split:
        if len(extensions[stem]) > 1:
            stem = '%s_%s' % (stem, ext.lstrip('.').lower() or 'noext')
        name, n = stem, 1
        while name in taken or name + '_overlay' in taken:
            n += 1
            name = '%s_%d' % (stem, n)
        taken.update((name, name + '_overlay'))
        out.append(name)
    return out


def plan_outputs(image_paths, out_dir, overwrite=False):
    """[(label PNG, overlay PNG)] per image; raises before anything is written when one would
    replace an input, or an existing file without `overwrite`."""
    inputs = {os.path.realpath(p) for p in image_paths}
    plan = []
    for stem in output_stems(image_paths):
        pair = (os.path.join(out_dir, stem + '.png'), os.path.join(out_dir, stem + '_overlay.png'))
        for path in pair:
            if os.path.realpath(path) in inputs:
                raise ValueError('%s is one of the input images: predict.py never writes over an input; '
                                 'choose another --out' % path)
            if os.path.exists(path) and not overwrite:
                raise ValueError('%s exists: pass --overwrite to replace it, or choose another --out' % path)
        plan.append(pair)
    return plan


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


def _temporary(path):
    return os.path.join(os.path.dirname(path), '.tmp-' + os.path.basename(path))


def write_outputs(label_path, overlay_path, image, prediction, labels_info):
    """The palette PNG of class ids and the overlay, each written under a temporary name and renamed."""
    palette, panel = render(image, prediction, labels_info)
    write_palette_png(_temporary(label_path), prediction, palette)
    os.replace(_temporary(label_path), label_path)
    if not cv2.imwrite(_temporary(overlay_path), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR)):
        raise OSError('cannot write %s' % overlay_path)
    os.replace(_temporary(overlay_path), overlay_path)


def predict_files(model_path, inputs, out_dir, overwrite=False, upright=True):
    """Segments each image of `inputs` (files and folders); yields the paths written."""
    image_paths = list_images(inputs)
    plan = plan_outputs(image_paths, out_dir, overwrite)
    model = load_model(model_path)
    decoder = image_decoder.make_decoder(upright)
    os.makedirs(out_dir, exist_ok=True)
    try:
        # A bar on a terminal only: in a log or a pipe its redraws would share lines with the paths.
        for path, (label_path, overlay_path) in tqdm(list(zip(image_paths, plan)), desc='predict', unit='img',
                                                     disable=len(image_paths) < 2 or not sys.stderr.isatty()):
            image = decoder.read(path)
            prediction = np.asarray(model.predict(image))
            if prediction.max(initial=0) > 255:
                raise ValueError('%s: class id %d does not fit a palette PNG' % (model_path, prediction.max()))
            write_outputs(label_path, overlay_path, image, prediction.astype(np.uint8), model.labels)
            yield label_path
            yield overlay_path
    finally:
        decoder.close()
        model.close()
