"""ONNX export of the frozen inference graph (tf2onnx); its runner is fcn.export.onnx_runner.

The model takes `ImageTensor:0`, uint8 [1, height, width, 3] with any height and width, and
returns `SemanticPredictions:0`, int32 class ids [1, height, width], as the frozen graph does.
Needs the `onnx` extra: pip install -e ".[onnx]" (tf2onnx, onnxruntime).
"""
import logging
import os

from fcn.compat import tf, tf1, tf2onnx_fresh_node_protos
from fcn.export import common
from fcn.export import frozen as frozen_module
from fcn.export.onnx_runner import EXTRA, INPUT, OUTPUT

OPSET = 17  # ONNX Runtime >= 1.14 runs it; tf2onnx 1.17 converts every op of the graph at 17


def from_frozen(frozen, out_path, labels=None, opset=OPSET):
    """Converts a frozen GraphDef (or a .pb written by export.py) to `out_path` and writes the
    label sidecar next to it; returns the model's size in bytes.

    `labels` (num_classes, class_names, palette, ignore_label, and any export metadata) default
    to the .pb's own sidecar."""
    if isinstance(frozen, (str, os.PathLike)):
        labels = common.read_sidecar(frozen) if labels is None else labels
        frozen = frozen_module.read_graph_def(frozen)
    if labels is None:
        raise ValueError('onnx.from_frozen of a GraphDef needs its labels (num_classes, class_names, palette, ignore_label)')
    data = convert(frozen, opset).SerializeToString()
    common.write_model(out_path, data, dict(labels, format='onnx', input=INPUT, output=OUTPUT, opset=opset))
    return len(data)


def export(source, out_path, opset=OPSET):
    """`from_frozen` of the frozen inference graph of an ExportSource's checkpoint (eval.scales
    and eval.flip in it)."""
    graph_def, info = frozen_module.freeze_with_info(source, tiling=False)
    return from_frozen(graph_def, out_path, info, opset)


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

