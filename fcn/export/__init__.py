"""Exporting a trained model, and running what was exported.

One module a format: `frozen` (GraphDef, TensorFlow 1 style), `saved_model` (TF Serving),
`onnx` (ONNX Runtime, TensorRT), `tflite` (phones). Each has a writer taking an
`ExportSource` (what is exported; `export()` reads it from the config once, with
`export_source`) and the output path (returns the bytes written), and a runner class
(`.predict(rgb uint8 [H, W, 3]) -> int32 class ids [H, W]`, `.labels`, `.close()`).
Every format is built from `fcn.inference`, so all of them predict what eval measured.
"""
import collections
import dataclasses
import importlib
import os

import numpy as np

from fcn.data import info as dataset_info

INPUT_NAME = 'ImageTensor'
OUTPUT_NAME = 'SemanticPredictions'

# --format name -> where its writer is: a function of fcn.export.<module> taking
# (ExportSource, out_path, **options), the options it takes and those it needs.
# onnx.py and tflite.py convert frozen.freeze_with_info(tiling=False).
Format = collections.namedtuple('Format', 'module function options required')
FORMATS = {
    'frozen': Format('frozen', 'export', (), ()),
    'saved_model': Format('saved_model', 'export', (), ()),
    'onnx': Format('onnx', 'from_checkpoint', (), ()),
    'tflite': Format('tflite', 'from_checkpoint', ('input_size', 'quantize'), ('input_size',)),
}


def export(fmt, cfg, checkpoint, out_path, **options):
    """Writes `checkpoint` in format `fmt` (a FORMATS key); returns the bytes written.

    `options` (input_size, quantize) go to the formats that take them and must be None for
    the others; None leaves an option to the format's default."""
    if fmt not in FORMATS:
        raise ValueError('unknown export format %r (valid: %s)' % (fmt, ', '.join(FORMATS)))
    spec = FORMATS[fmt]
    given = {key: value for key, value in options.items() if value is not None}
    for key in sorted(given):
        if key not in spec.options:
            raise ValueError('--%s does not apply to --format %s' % (key, fmt))
    for key in spec.required:
        if key not in given:
            raise ValueError('--format %s needs --%s' % (fmt, key))
    function = getattr(importlib.import_module('fcn.export.' + spec.module), spec.function)
    return function(export_source(cfg, checkpoint), out_path, **given)


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """What a format writes, as values: the checkpoint, its dataset's labels (`label_info`),
    the keyword arguments of fcn.inference.predict_classes, the `model` section (for the
    sidecar) and train.ema_decay (EMA shadows restored when > 0, as in eval)."""
    checkpoint: str
    labels: dict
    inference: dict
    model: dict
    ema_decay: float = 0.0

    def without_tiling(self):
        """The same with eval.tile_size dropped (the ONNX and TFLite converters' fixed graphs)."""
        return dataclasses.replace(self, inference=dict(self.inference, tile_size=None))


def export_source(cfg, checkpoint):
    """The ExportSource of `checkpoint` trained with `cfg`, once the run's model keys match cfg's."""
    from fcn import inference, rundir
    rundir.check_model_keys(cfg)
    return ExportSource(checkpoint=checkpoint, labels=label_info(cfg), inference=inference.options(cfg),
                        model=cfg.model.to_dict(), ema_decay=float(cfg.train.ema_decay))


def label_info(cfg):
    """num_classes, class names, palette and ignore label of the dataset the model was trained
    on: the run's own description (RUN_DIR/dataset.json), else the records' summary.json."""
    info = dataset_info.for_config(cfg)
    return {'num_classes': info.num_classes, 'class_names': list(info.class_names),
            'palette': [list(c) for c in info.palette], 'ignore_label': info.ignore_label}


def export_info(source):
    """label_info plus what was exported: checkpoint, model, EMA, inference options (of the
    ExportSource `source`)."""
    options = source.inference
    info = dict(source.labels)
    info.update({'input': INPUT_NAME + ':0', 'output': OUTPUT_NAME + ':0', 'checkpoint': source.checkpoint,
                 'model': source.model, 'ema': bool(source.ema_decay),
                 'scales': list(options['scales']), 'flip': options['flip'],
                 'tile_size': list(options['tile_size']) if options['tile_size'] else None,
                 'tile_overlap': options['tile_overlap']})
    return info


def check_image(image):
    """`image` as a contiguous RGB uint8 [H, W, 3] array, or a ValueError saying what it is."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('expected an RGB uint8 image [H, W, 3], got %s %s' % (image.dtype, image.shape))
    return np.ascontiguousarray(image)


def write_atomic(path, data, mode='wb'):
    """Writes `data` to path + '.tmp' and renames it over `path`: readers never see half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', mode) as f:
        f.write(data)
    os.replace(path + '.tmp', path)
