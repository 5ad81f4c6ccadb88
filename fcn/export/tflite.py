"""TFLite export of the frozen inference graph at a fixed input size; its runner is
fcn.export.tflite_runner.

TFLite needs static shapes: the model takes uint8 [1, H, W, 3] for the `input_size` it was
exported with and returns int32 class ids [1, H, W]. Weights are float32, or with `quantize`
float16 (half the size) or dynamic-range int8 (a quarter; activations stay float).
"""
import os
import tempfile

import numpy as np

from fcn.compat import tf, tf1
from fcn.export import common, frozen
from fcn.export.common import INPUT_NAME, OUTPUT_NAME, QUANTIZATIONS


def from_frozen(frozen, out_path, labels=None, input_size=None, quantize='none'):
    """Converts a frozen GraphDef (or a .pb written by export.py) for inputs of `input_size`
    (height, width) to `out_path`, writes the label sidecar; returns the model's size in bytes.

    `labels` default to the .pb's own sidecar."""
    height, width = check_input_size(input_size)
    check_quantize(quantize)
    if isinstance(frozen, (str, os.PathLike)):
        common.check_model_file(frozen, 'export.py')
        labels = common.read_sidecar(frozen) if labels is None else labels
        data = _convert(str(frozen), height, width, quantize)
    else:
        if labels is None:
            raise ValueError('tflite.from_frozen of a GraphDef needs its labels (num_classes, class_names, palette, ignore_label)')
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'frozen.pb')
            with open(path, 'wb') as f:
                f.write(frozen.SerializeToString())
            data = _convert(path, height, width, quantize)
    common.write_model(out_path, data, dict(labels, format='tflite', input=INPUT_NAME + ':0',
                                            output=OUTPUT_NAME + ':0', input_size=[height, width], quantize=quantize))
    return len(data)


def export(source, out_path, input_size, quantize='none'):
    """`from_frozen` of the frozen inference graph of an ExportSource's checkpoint (eval.scales
    and eval.flip in it)."""
    height, width = check_input_size(input_size)  # before the slow part
    check_quantize(quantize)
    graph_def, info = frozen.freeze_with_info(source, tiling=False)
    return from_frozen(graph_def, out_path, info, (height, width), quantize)


def check_input_size(input_size):
    if (input_size is None or len(input_size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in input_size)):
        raise ValueError('TFLite export needs --input_size HEIGHT WIDTH (two positive integers), got %r'
                         % (input_size,))
    return int(input_size[0]), int(input_size[1])


def check_quantize(quantize):
    if quantize not in QUANTIZATIONS:
        raise ValueError('quantize must be one of %s, got %r' % (', '.join(QUANTIZATIONS), quantize))


def _convert(pb_path, height, width, quantize):
    converter = tf1.lite.TFLiteConverter.from_frozen_graph(
        pb_path, [INPUT_NAME], [OUTPUT_NAME], input_shapes={INPUT_NAME: [1, height, width, 3]})
    if quantize != 'none':
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
    if quantize == 'float16':
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()

