"""Checkpoint -> frozen GraphDef: ImageTensor:0 (uint8 [1,H,W,3]) -> SemanticPredictions:0 ([1,H,W])."""
import json
import os

from fcn.compat import tf, tf1
from fcn import rundir
from fcn.data import info as dataset_info
from fcn.eval_lib import ModelRestorer, predict_classes

INPUT_NAME = 'ImageTensor'
OUTPUT_NAME = 'SemanticPredictions'


def build_inference_graph(cfg, num_classes):
    """Placeholder -> the eval graph's predictions (eval.scales, eval.flip), named as DeepLab's
    exported graphs are."""
    images = tf1.placeholder(tf.uint8, [1, None, None, 3], name=INPUT_NAME)
    predictions = predict_classes(tf.cast(images, tf.float32), cfg, num_classes)
    return images, tf.identity(predictions, name=OUTPUT_NAME)


def label_info(cfg):
    """num_classes, class names, palette and ignore label of the dataset the model was trained
    on: the run's own description (RUN_DIR/dataset.json), else the records' summary.json."""
    info = dataset_info.for_config(cfg)
    return {'num_classes': info.num_classes, 'class_names': list(info.class_names),
            'palette': [list(c) for c in info.palette], 'ignore_label': info.ignore_label}


def sidecar_path(model_path):
    """model.pb -> model.json: class names + palette travel next to the frozen graph."""
    return os.path.splitext(model_path)[0] + '.json'


def freeze(cfg, checkpoint):
    """(frozen GraphDef, label info + export metadata) of the inference graph restored from
    `checkpoint`: the source of every export format (frozen graph, ONNX, TFLite).

    The weights are the checkpoint's EMA shadows when train.ema_decay > 0, as in eval."""
    rundir.check_model_keys(cfg)
    info = label_info(cfg)
    graph = tf.Graph()
    with graph.as_default():
        build_inference_graph(cfg, info['num_classes'])
        restorer = ModelRestorer(cfg)
        with tf1.Session(graph=graph) as sess:
            restorer.restore(sess, checkpoint)
            frozen = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), [OUTPUT_NAME])
    info.update({'input': INPUT_NAME + ':0', 'output': OUTPUT_NAME + ':0', 'checkpoint': checkpoint,
                 'model': cfg.model.to_dict(), 'ema': bool(cfg.train.ema_decay),
                 'scales': cfg.eval.scales, 'flip': cfg.eval.flip})
    return frozen, info


def export(cfg, checkpoint, out_path):
    """Writes the frozen graph (atomically) and its label sidecar; returns the graph's size."""
    frozen, info = freeze(cfg, checkpoint)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    data = frozen.SerializeToString()
    _write_atomic(out_path, data, 'wb')
    _write_atomic(sidecar_path(out_path), json.dumps(info, indent=2), 'w')
    return len(data)


def _write_atomic(path, data, mode):
    with open(path + '.tmp', mode) as f:
        f.write(data)
    os.replace(path + '.tmp', path)
