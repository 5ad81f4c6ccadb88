"""Running a frozen graph written by export.py on numpy images."""
import json
import os

import numpy as np

from fcn.compat import tf, tf1
from fcn.export_lib import INPUT_NAME, OUTPUT_NAME, sidecar_path
from fcn.data.palette import voc_palette


class FrozenModel:
    """Loads model.pb (+ model.json) once; `predict(rgb_uint8)` -> class ids [H, W]."""

    def __init__(self, model_path):
        if not os.path.isfile(model_path):
            raise FileNotFoundError('model file not found: %s (write one with export.py)' % model_path)
        graph_def = tf1.GraphDef()
        with open(model_path, 'rb') as f:
            try:
                graph_def.ParseFromString(f.read())
            except Exception:
                raise ValueError('%s is not a frozen GraphDef written by export.py' % model_path) from None
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.import_graph_def(graph_def, name='')
        names = {op.name for op in self.graph.get_operations()}
        for tensor in (INPUT_NAME, OUTPUT_NAME):
            if tensor not in names:
                raise ValueError('%s has no tensor %s:0; was it written by export.py?' % (model_path, tensor))
        self.session = tf1.Session(graph=self.graph)
        self.labels = _read_sidecar(model_path)

    def predict(self, image_rgb):
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError('expected an RGB uint8 image [H, W, 3], got %s %s' % (image.dtype, image.shape))
        out = self.session.run(OUTPUT_NAME + ':0', {INPUT_NAME + ':0': image[None]})
        return out[0]

    def close(self):
        self.session.close()


def _read_sidecar(model_path):
    path = sidecar_path(model_path)
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {'class_names': None, 'palette': voc_palette(256).tolist(), 'ignore_label': 255}
