"""What every export format shares: the label sidecar, atomic writes, the runner's input check.

The sidecar is the JSON next to an exported model (model.pb / model.onnx / model.tflite ->
model.json, the frozen graph's naming rule): the dataset's num_classes, class names, palette
and ignore label, plus how the model was exported. A runner's `.labels` is its label part.
"""
import importlib
import json
import os

import numpy as np

from fcn.data.palette import voc_palette
from fcn.export.frozen import sidecar_path

LABEL_KEYS = ('num_classes', 'class_names', 'palette', 'ignore_label')


def write_atomic(path, data):
    """Writes bytes or text to `path` through a temporary file, creating its folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)
    os.replace(path + '.tmp', path)


def write_sidecar(model_path, info):
    for key in LABEL_KEYS:
        if key not in info:
            raise ValueError('label info for %s lacks %r (has %s)' % (model_path, key, ', '.join(sorted(info))))
    write_atomic(sidecar_path(model_path), json.dumps(info, indent=2))


def read_sidecar(model_path):
    """The whole sidecar of `model_path`; without one, VOC colours and no names (as the frozen
    graph's runner does)."""
    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        return {'num_classes': None, 'class_names': None, 'palette': voc_palette(256).tolist(),
                'ignore_label': 255}
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError('%s is not valid JSON: %s' % (path, e)) from None


def labels(model_path):
    """num_classes, class_names, palette, ignore_label of an exported model."""
    info = read_sidecar(model_path)
    return {key: info.get(key) for key in LABEL_KEYS}


def check_rgb(image):
    """`image` as a numpy array, or a ValueError unless it is RGB uint8 [H, W, 3]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('expected an RGB uint8 image [H, W, 3], got %s %s' % (image.dtype, image.shape))
    return image


def check_model_file(path, written_by):
    if not os.path.isfile(path):
        raise FileNotFoundError('model file not found: %s (write one with %s)' % (path, written_by))


def require(module, extra):
    """Imports an optional dependency, or a ValueError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError('%s is not installed (%s); install the %r extra: pip install -e ".[%s]"'
                         % (module, e, extra, extra)) from None
