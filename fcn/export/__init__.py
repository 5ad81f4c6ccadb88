"""Exporting a trained model, and running what was exported: one table of formats.

Each format is one row of FORMATS: its writer, `export(source, out_path, **options)` (the same
entry point for every format: an ExportSource, what is exported, as values, read from the config
once by `export_source`; returns the bytes written), its runner class
(`Runner(path)`: `.predict(rgb uint8 [H, W, 3]) -> int32 class ids [H, W]`, `.labels`,
`.close()`), the options its writer takes and how predict.py recognises its models. Writers
and runners are named as 'module:attribute' and imported when used, so this table (export.py's
--format choices, predict.py's model lookup) imports no TensorFlow, and the ONNX and TFLite
runners (fcn.export.onnx_runner, fcn.export.tflite_runner) run without it. Every writer builds
on fcn.inference, so every format predicts what eval measured. Shared helpers (the label
sidecar, atomic writes, the input check): fcn.export.common.
"""
import collections
import dataclasses
import importlib
import os

from fcn.data import info as dataset_info

# options: {option name: True if the format needs it}; suffix: the model file's extension
# (None: a folder).
Format = collections.namedtuple('Format', 'name writer runner options suffix')
FORMATS = collections.OrderedDict((f.name, f) for f in (
    Format('frozen', 'fcn.export.frozen:export', 'fcn.export.frozen:FrozenModel', {}, '.pb'),
    Format('saved_model', 'fcn.export.saved_model:export', 'fcn.export.saved_model:SavedModelRunner', {}, None),
    Format('onnx', 'fcn.export.onnx:export', 'fcn.export.onnx_runner:OnnxModel', {}, '.onnx'),
    Format('tflite', 'fcn.export.tflite:export', 'fcn.export.tflite_runner:TFLiteModel',
           {'input_size': True, 'quantize': False}, '.tflite'),
))


def _resolve(reference):
    module, attribute = reference.split(':')
    return getattr(importlib.import_module(module), attribute)


def get_format(name):
    if name not in FORMATS:
        raise ValueError('unknown export format %r (valid: %s)' % (name, ', '.join(FORMATS)))
    return FORMATS[name]


def check_options(name, **options):
    """The options given (not None) for format `name`, or a ValueError naming the one that does
    not apply or is missing (before anything slow runs)."""
    fmt = get_format(name)
    given = {key: value for key, value in options.items() if value is not None}
    for key in sorted(given):
        if key not in fmt.options:
            raise ValueError('--%s does not apply to --format %s' % (key, name))
    for key, needed in fmt.options.items():
        if needed and key not in given:
            raise ValueError('--format %s needs --%s' % (name, key))
    return given


def export(name, cfg, checkpoint, out_path, log=print, **options):
    """Writes a checkpoint in format `name` (a FORMATS key); returns the bytes written.

    `checkpoint` (a prefix or folder; None: eval.checkpoint, else train.run_dir's latest) is
    exported as the run that owns it was trained (fcn.run.open_run: its config.yaml decides
    every run-bound key); the first line logged says which weights. `options` (input_size,
    quantize) go to the formats that take them and must be None for the others; None leaves
    an option to the format's default."""
    from fcn import inference
    from fcn import run as runs
    given = check_options(name, **options)
    lines = []
    _, cfg, source = runs.open_run(cfg, checkpoint, lines.append)
    checkpoint = runs.find_checkpoint(source)
    log(inference.weights_line(float(cfg.train.ema_decay), cfg.eval.moving_averages, checkpoint))
    for line in lines:
        log(line)
    return _resolve(get_format(name).writer)(export_source(cfg, checkpoint), out_path, **given)


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """What a format writes, as values: the checkpoint, its dataset's labels (`label_info`),
    the keyword arguments of fcn.inference.predict_classes, the `model` section (for the
    sidecar), train.ema_decay and eval.moving_averages (EMA shadows restored when the run was
    trained with them and moving_averages, as in eval)."""
    checkpoint: str
    labels: dict
    inference: dict
    model: dict
    ema_decay: float = 0.0
    moving_averages: bool = True

    @property
    def uses_moving_averages(self):
        from fcn.inference import uses_moving_averages
        return uses_moving_averages(self.ema_decay, self.moving_averages)

    def restorer(self):
        """The fcn.inference.ModelRestorer of these weights (build it after the model)."""
        from fcn.inference import ModelRestorer
        return ModelRestorer(self.ema_decay, self.moving_averages)

    def without_tiling(self):
        """The same with eval.tile_size dropped (the ONNX and TFLite converters' fixed graphs)."""
        return dataclasses.replace(self, inference=dict(self.inference, tile_size=None))


def export_source(cfg, checkpoint):
    """The ExportSource of `checkpoint` with `cfg` as given (export() binds it to the run first)."""
    from fcn import options
    return ExportSource(checkpoint=checkpoint, labels=label_info(cfg), inference=options.inference(cfg),
                        model=cfg.model.to_dict(), ema_decay=float(cfg.train.ema_decay),
                        moving_averages=bool(cfg.eval.moving_averages))


def label_info(cfg):
    """num_classes, class names, palette and ignore label of the dataset the model was trained
    on: the run's own description (RUN_DIR/dataset.json), else the records' summary.json."""
    info = dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes)
    return {'num_classes': info.num_classes, 'class_names': list(info.class_names),
            'palette': [list(c) for c in info.palette], 'ignore_label': info.ignore_label}


def format_of(path):
    """The Format of an exported model at `path`: a folder is a SavedModel, a file goes by its
    extension."""
    if os.path.isdir(path):
        return FORMATS['saved_model']
    if not os.path.exists(path):
        raise FileNotFoundError('model not found: %s (write one with export.py)' % path)
    suffix = os.path.splitext(path)[1].lower()
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    known = ', '.join(f.suffix for f in FORMATS.values() if f.suffix)
    raise ValueError('%s: unknown model format %r (expected a SavedModel folder or %s, as written by export.py)'
                     % (path, suffix, known))


def load_model(path):
    """The runner of the exported model at `path`."""
    return _resolve(format_of(path).runner)(path)
