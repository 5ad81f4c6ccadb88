"""What every export format shares: tensor names, the label sidecar, atomic writes, the
runner's input check, optional imports. No TensorFlow: the ONNX and TFLite runners use it.

The sidecar is the JSON next to an exported model (model.pb / model.onnx / model.tflite ->
model.json): the dataset's num_classes, class names, palette and ignore label, plus how the
model was exported. A runner's `.labels` is that JSON.
"""
import contextlib
import importlib
import json
import os

import numpy as np

from fcn import storage
from fcn.data.palette import voc_palette

INPUT_NAME = 'ImageTensor'
OUTPUT_NAME = 'SemanticPredictions'
LABEL_KEYS = ('num_classes', 'class_names', 'palette', 'ignore_label')
QUANTIZATIONS = ('none', 'float16', 'dynamic')  # tflite weights: float32, float16, dynamic-range int8


def _write_all_then_rename(files):
    """Writes every (path, data) to path + '.tmp', then renames them in order: a failed write
    leaves every file there before as it was (its error names the path being written)."""
    path = files[0][0]
    try:
        for path, data in files:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path + '.tmp', 'wb' if isinstance(data, bytes) else 'w') as f:
                f.write(data)
        for path, _ in files:
            os.replace(path + '.tmp', path)
    except OSError as e:
        for written, _ in files:
            with contextlib.suppress(OSError):
                os.remove(written + '.tmp')
        error = storage.error_for(e, path, 'the export')
        if error is None:
            raise
        raise error from None


def export_info(source):
    """The labels plus what was exported: checkpoint, model, EMA, inference options (of the
    ExportSource `source`)."""
    options = source.inference
    info = dict(source.labels)
    info.update({'input': INPUT_NAME + ':0', 'output': OUTPUT_NAME + ':0', 'checkpoint': source.checkpoint,
                 'model': source.model, 'ema': source.uses_moving_averages,
                 'scales': list(options['scales']), 'flip': options['flip'],
                 'tile_size': list(options['tile_size']) if options['tile_size'] else None,
                 'tile_overlap': options['tile_overlap']})
    return info


def sidecar_path(model_path):
    """model.pb -> model.json: class names + palette travel next to the model file."""
    return os.path.splitext(model_path)[0] + '.json'


def write_model(model_path, data, info):
    """Writes an exported model file and its sidecar (`info`) as a pair: both to temporary
    names first, then the sidecar renamed into place and the model last. A failed write (a
    full disk) leaves the previous model and sidecar as they were, and a model file on disk
    always has its sidecar."""
    for key in LABEL_KEYS:
        if key not in info:
            raise ValueError('label info for %s lacks %r (has %s)' % (model_path, key, ', '.join(sorted(info))))
    _write_all_then_rename([(sidecar_path(model_path), json.dumps(info, indent=2)), (model_path, data)])


def read_sidecar(model_path):
    """The whole sidecar of `model_path`; without one, VOC colours and no names."""
    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        return {'num_classes': None, 'class_names': None, 'palette': voc_palette(256).tolist(),
                'ignore_label': 255}
    with open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ValueError('%s is not valid JSON: %s' % (path, e)) from None


def check_image(image):
    """`image` as a contiguous RGB uint8 [H, W, 3] array, or a ValueError saying what it is."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('expected an RGB uint8 image [H, W, 3], got %s %s' % (image.dtype, image.shape))
    return np.ascontiguousarray(image)


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
