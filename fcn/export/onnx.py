"""ONNX export of the frozen inference graph (tf2onnx) and a runner on ONNX Runtime.

The model takes `ImageTensor:0`, uint8 [1, height, width, 3] with any height and width, and
returns `SemanticPredictions:0`, int32 class ids [1, height, width], as the frozen graph does.
Needs the `onnx` extra: pip install -e ".[onnx]" (tf2onnx, onnxruntime).
"""
import logging
import os

from fcn.compat import tf, tf1, tf2onnx_fresh_node_protos
from fcn.export import INPUT_NAME, OUTPUT_NAME, common
from fcn.export import frozen as frozen_module

OPSET = 17  # ONNX Runtime >= 1.14 runs it; tf2onnx 1.17 converts every op of the graph at 17
EXTRA = 'onnx'
INPUT = INPUT_NAME + ':0'
OUTPUT = OUTPUT_NAME + ':0'


def export(frozen, out_path, labels=None, opset=OPSET):
    """Converts a frozen GraphDef (or a .pb written by export.py) to `out_path` and writes the
    label sidecar next to it; returns the model's size in bytes.

    `labels` (num_classes, class_names, palette, ignore_label, and any export metadata) default
    to the .pb's own sidecar."""
    if isinstance(frozen, (str, os.PathLike)):
        labels = common.read_sidecar(frozen) if labels is None else labels
        frozen = frozen_module.read_graph_def(frozen)
    if labels is None:
        raise ValueError('onnx.export of a GraphDef needs its labels (num_classes, class_names, palette, ignore_label)')
    data = convert(frozen, opset).SerializeToString()
    common.write_atomic(out_path, data)
    common.write_sidecar(out_path, dict(labels, format='onnx', input=INPUT, output=OUTPUT, opset=opset))
    return len(data)


def from_checkpoint(source, out_path, opset=OPSET):
    """`export` of the frozen inference graph of an ExportSource's checkpoint (eval.scales and
    eval.flip in it)."""
    graph_def, info = frozen_module.freeze_with_info(source, tiling=False)
    return export(graph_def, out_path, info, opset)


def convert(graph_def, opset=OPSET):
    """The ONNX ModelProto of a frozen inference GraphDef, height and width left dynamic.

    tf2onnx's steps without its TensorFlow-side grappler pass and without its per-optimizer
    deep copies (`from_graph_def` does both): at width 1.0 those took several copies of the
    545 MB of weights; the result is the same graph here (tests check the ids)."""
    common.require('tf2onnx', EXTRA)
    from tf2onnx import optimizer
    from tf2onnx.tfonnx import process_tf_graph
    logging.getLogger('tf2onnx').setLevel(logging.ERROR)
    with tf.Graph().as_default() as tf_graph, tf2onnx_fresh_node_protos():
        tf1.import_graph_def(graph_def, name='')
        onnx_graph = process_tf_graph(tf_graph, opset=opset, input_names=[INPUT], output_names=[OUTPUT])
        onnx_graph = optimizer.optimize_graph(onnx_graph, catch_errors=False)
        model = onnx_graph.make_model('FCN semantic segmentation, converted by tf2onnx')
    _name_dims(model)
    return model


def _name_dims(model):
    """tf2onnx names unknown dims unk__N: call them height and width (shared by input and
    output, so a runtime knows the output has the input's size) and fix the output batch to 1."""
    image = model.graph.input[0].type.tensor_type.shape.dim
    ids = model.graph.output[0].type.tensor_type.shape.dim
    image[1].dim_param, image[2].dim_param = 'height', 'width'
    ids[0].dim_value = 1
    ids[1].dim_param, ids[2].dim_param = 'height', 'width'


class OnnxModel:
    """Loads model.onnx (+ model.json) once; `predict(rgb_uint8 [H, W, 3])` -> int32 class ids [H, W]."""

    def __init__(self, path, num_threads=None):
        ort = common.require('onnxruntime', EXTRA)
        common.check_model_file(path, 'export.py --format onnx')
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        except Exception as e:
            raise ValueError('%s is not an ONNX model ONNX Runtime can load: %s' % (path, e)) from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT] or outputs != [OUTPUT]:
            raise ValueError('%s takes %s and returns %s, not %s -> %s: was it written by export.py?'
                             % (path, inputs, outputs, INPUT, OUTPUT))
        self.labels = common.labels(path)

    def predict(self, image_rgb):
        image = common.check_rgb(image_rgb)
        return self.session.run([OUTPUT], {INPUT: image[None]})[0][0]

    def close(self):
        self.session = None
