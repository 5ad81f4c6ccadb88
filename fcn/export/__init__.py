"""Exporting a trained model, and running what was exported: one table of formats.

Each format is one row of FORMATS: its writer, `export(cfg, checkpoint, out_path, **options)`
(returns the bytes written; the same entry point for every format), its runner class
(`Runner(path)`: `.predict(rgb uint8 [H, W, 3]) -> int32 class ids [H, W]`, `.labels`,
`.close()`), the options its writer takes and how predict.py recognises its models. Writers
and runners are named as 'module:attribute' and imported when used, so this table (export.py's
--format choices, predict.py's model lookup) imports no TensorFlow, and the ONNX and TFLite
runners (fcn.export.onnx_runner, fcn.export.tflite_runner) run without it. Every writer builds
on fcn.inference, so every format predicts what eval measured. Shared helpers (the label
sidecar, atomic writes, the input check): fcn.export.common.
"""
import collections
import importlib
import os

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


def export(name, cfg, checkpoint, out_path, **options):
    """Writes `checkpoint` in format `name` (a FORMATS key); returns the bytes written.

    `options` (input_size, quantize) go to the formats that take them and must be None for
    the others; None leaves an option to the format's default."""
    given = check_options(name, **options)
    return _resolve(get_format(name).writer)(cfg, checkpoint, out_path, **given)


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
