"""Frozen GraphDef: ImageTensor:0 (uint8 [1, H, W, 3]) -> SemanticPredictions:0 (int32 [1, H, W]),
named as DeepLab's exported graphs are, with class names and palette in a sidecar (model.json).

`freeze` is also the starting point of the ONNX and TFLite converters (tiling off, a fixed
input size)."""

from fcn import inference
from fcn.deploy import shared_gpu_config
from fcn.compat import tf, tf1
from fcn.export.common import (INPUT_NAME, OUTPUT_NAME, check_image, check_model_file, export_info, read_sidecar,
                               write_model)


def build_inference_graph(num_classes, inference_options, input_size=None):
    """uint8 placeholder ImageTensor [1, H, W, 3] (H, W = input_size, or any) -> int32 class
    ids SemanticPredictions [1, H, W], in the default graph. Returns (input, output) tensors."""
    height, width = input_size if input_size else (None, None)
    images = tf1.placeholder(tf.uint8, [1, height, width, 3], name=INPUT_NAME)
    predictions = inference.predict_classes(tf.cast(images, tf.float32), num_classes, **inference_options)
    return images, tf.identity(predictions, name=OUTPUT_NAME)


def freeze(source, tiling=True, input_size=None):
    """The frozen inference GraphDef of an ExportSource's checkpoint (EMA shadows when its
    ema_decay > 0, as in eval): eval.scales, eval.flip and, if `tiling`, eval.tile_size in the
    graph; input [1, H, W, 3] of any H, W or the fixed `input_size` (H, W)."""
    source = source if tiling else source.without_tiling()
    graph = tf.Graph()
    with graph.as_default():
        build_inference_graph(source.labels['num_classes'], source.inference, input_size)
        restorer = source.restorer()
        with tf1.Session(graph=graph, config=shared_gpu_config()) as sess:
            restorer.restore(sess, source.checkpoint)
            return tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), [OUTPUT_NAME])


def freeze_with_info(source, tiling=True, input_size=None):
    """(`freeze(...)`, label info + export metadata): what a converter (ONNX, TFLite) needs."""
    graph_def = freeze(source, tiling, input_size)
    return graph_def, export_info(source if tiling else source.without_tiling())


def export(source, out_path):
    """Writes the frozen graph of an ExportSource (atomically) and its label sidecar; returns
    the graph's size."""
    data = freeze(source).SerializeToString()
    info = export_info(source)
    write_model(out_path, data, info)
    return len(data)


def read_graph_def(model_path):
    check_model_file(model_path, 'export.py')
    graph_def = tf1.GraphDef()
    with open(model_path, 'rb') as f:
        try:
            graph_def.ParseFromString(f.read())
        except Exception:
            raise ValueError('%s is not a frozen GraphDef written by export.py' % model_path) from None
    return graph_def


# Constants larger than this become variables instead of staying in the graph (see FrozenModel).
FED_CONSTANT_BYTES = 1 << 20


def weights_as_placeholders(graph_def, min_bytes=FED_CONSTANT_BYTES):
    """Turns each large input-less Const of `graph_def` (in place) into a Placeholder of the same
    name, dtype and shape; returns {tensor name: numpy value} to feed.

    A frozen graph holds its weights as constants, and TensorFlow copies a graph's constants
    several times while it imports, optimises and runs it: a full-width FCN-32s (0.55 GB of
    weights) peaked at 8.85 GB before its first image. Taken out, the weights exist once
    (FrozenModel loads them into variables) and the graph the session copies is small.
    Constants with inputs (inside a loop frame) are left alone."""
    weights = {}
    for node in graph_def.node:
        tensor = node.attr['value'].tensor if node.op == 'Const' else None
        if tensor is None or node.input or len(tensor.tensor_content) < min_bytes:
            continue
        value = tf.make_ndarray(tensor)
        dtype = node.attr['dtype']
        node.op = 'Placeholder'
        node.attr.clear()
        node.attr['dtype'].CopyFrom(dtype)
        node.attr['shape'].shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
        weights[node.name + ':0'] = value
    return weights


class FrozenModel:
    """Loads model.pb (+ model.json) once; `predict(rgb_uint8)` -> class ids [H, W].

    The large weight constants become variables, loaded once (weights_as_placeholders, then
    import_graph_def's input_map): the same values, one copy of them in memory."""

    def __init__(self, model_path):
        graph_def = read_graph_def(model_path)
        weights = weights_as_placeholders(graph_def)
        self.graph = tf.Graph()
        with self.graph.as_default():
            variables, feeds = _weight_variables(weights)
            tf1.import_graph_def(graph_def, name='', input_map={name: var.value() for name, var in variables.items()})
        del graph_def
        names = {op.name for op in self.graph.get_operations()}
        for tensor in (INPUT_NAME, OUTPUT_NAME):
            if tensor not in names:
                raise ValueError('%s has no tensor %s:0; was it written by export.py?' % (model_path, tensor))
        self.session = tf1.Session(graph=self.graph, config=shared_gpu_config())
        self.session.run([var.initializer for var in variables.values()], feeds)
        self.weight_names = sorted(weights)
        self.labels = read_sidecar(model_path)

    def predict(self, image_rgb):
        out = self.session.run(OUTPUT_NAME + ':0', {INPUT_NAME + ':0': check_image(image_rgb)[None]})
        return out[0]

    def close(self):
        self.session.close()


def _weight_variables(weights):
    """({tensor name: variable}, {initial value placeholder: numpy value}) in the current graph."""
    variables, feeds = {}, {}
    with tf1.name_scope('fed_weights'):
        for i, (name, value) in enumerate(sorted(weights.items())):
            initial = tf1.placeholder(tf.as_dtype(value.dtype), value.shape, name='initial_%d' % i)
            variables[name] = tf1.Variable(initial, trainable=False, name='weight_%d' % i, use_resource=True,
                                           collections=[])
            feeds[initial] = value
    return variables, feeds

