"""SavedModel for TF Serving (`export.py --format saved_model --out export/voc/1`).

Two signatures over one set of weights, both from fcn.inference (scales, flip, tiling in the graph):
  serving_default  images: uint8 [1, H, W, 3] (any H, W)  -> class_ids: int32 [1, H, W]
  encoded_image    image_bytes: string [1], a JPEG or PNG  -> class_ids: int32 [1, H, W]
The bytes are decoded as the records are (tf.io.decode_image, 3 channels: fcn.compat.DecodedImage),
so a JPEG gets the class ids eval measured on it. TF Serving's REST API sends bytes as
{"signature_name": "encoded_image", "instances": [{"b64": "..."}]}. Class names, palette
and the export settings are in assets/labels.json.
"""
import json
import os
import shutil
import tempfile

from fcn import inference
from fcn.deploy import shared_gpu_config
from fcn.compat import DecodedImage, tf, tf1
from fcn.export.common import OUTPUT_NAME, check_image, export_info
from fcn.export.frozen import build_inference_graph

IMAGES_SIGNATURE = tf1.saved_model.signature_constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # serving_default
ENCODED_SIGNATURE = 'encoded_image'
IMAGES_INPUT = 'images'
ENCODED_INPUT = 'image_bytes'
OUTPUT_KEY = 'class_ids'
ENCODED_NAME = 'EncodedImage'
LABELS_ASSET = 'labels.json'
TAGS = [tf1.saved_model.tag_constants.SERVING]


def _encoded_inference_graph(num_classes, options):
    """string placeholder EncodedImage [1] -> decoded as the records are -> class ids [1, H, W]."""
    encoded = tf1.placeholder(tf.string, [1], name=ENCODED_NAME)
    image = DecodedImage('encoded').tensors_to_item({'encoded': encoded[0]})
    predictions = inference.predict_classes(tf.cast(image, tf.float32)[None], num_classes, **options)
    return encoded, tf.identity(predictions, name='Encoded' + OUTPUT_NAME)


def _signature(inputs_key, inputs, outputs):
    return tf1.saved_model.signature_def_utils.predict_signature_def({inputs_key: inputs}, {OUTPUT_KEY: outputs})


def export(source, out_dir):
    """Writes the SavedModel of an ExportSource to the folder `out_dir` (which must not exist
    yet; it appears complete, renamed from a temporary folder beside it); returns its size in bytes."""
    if os.path.exists(out_dir):
        raise ValueError('%s exists: a SavedModel is written into a new folder (TF Serving reads '
                              'numbered versions, e.g. export/voc/2)' % out_dir)
    info = export_info(source)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.saved_model-', dir=parent)
    try:
        _build(source, info, os.path.join(staging, 'model'), staging)
        os.rename(os.path.join(staging, 'model'), out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(out_dir) for name in names)


def _build(source, info, model_dir, staging):
    options = source.inference
    labels_path = os.path.join(staging, LABELS_ASSET)
    with open(labels_path, 'w') as f:
        json.dump(info, f, indent=2)
    graph = tf.Graph()
    with graph.as_default():
        images, predictions = build_inference_graph(info['num_classes'], options)
        encoded, encoded_predictions = _encoded_inference_graph(info['num_classes'], options)
        asset = tf.constant(labels_path, name='labels_path')
        tf1.add_to_collection(tf1.GraphKeys.ASSET_FILEPATHS, asset)
        restorer = source.restorer()
        with tf1.Session(graph=graph, config=shared_gpu_config()) as sess:
            restorer.restore(sess, source.checkpoint)
            builder = tf1.saved_model.Builder(model_dir)
            builder.add_meta_graph_and_variables(
                sess, TAGS, signature_def_map={
                    IMAGES_SIGNATURE: _signature(IMAGES_INPUT, images, predictions),
                    ENCODED_SIGNATURE: _signature(ENCODED_INPUT, encoded, encoded_predictions)},
                assets_collection=tf1.get_collection(tf1.GraphKeys.ASSET_FILEPATHS), strip_default_attrs=True)
            builder.save()


def labels_path(model_dir):
    return os.path.join(model_dir, 'assets', LABELS_ASSET)


class SavedModelRunner:
    """Loads a SavedModel folder written by export.py; `predict(rgb_uint8)` -> class ids [H, W]
    through serving_default, `predict_encoded(jpeg_or_png_bytes)` through encoded_image."""

    def __init__(self, model_dir):
        if not tf1.saved_model.contains_saved_model(model_dir):
            raise ValueError('%s is not a SavedModel folder (no saved_model.pb); write one with '
                             'export.py --format saved_model' % model_dir)
        self.graph = tf.Graph()
        self.session = tf1.Session(graph=self.graph, config=shared_gpu_config())
        with self.graph.as_default():
            meta_graph = tf1.saved_model.loader.load(self.session, TAGS, model_dir)
        signatures = meta_graph.signature_def
        for key, inputs_key in ((IMAGES_SIGNATURE, IMAGES_INPUT), (ENCODED_SIGNATURE, ENCODED_INPUT)):
            if key not in signatures or inputs_key not in signatures[key].inputs:
                raise ValueError('%s has no signature %s with input %s; was it written by export.py?'
                                 % (model_dir, key, inputs_key))
        self._images = signatures[IMAGES_SIGNATURE].inputs[IMAGES_INPUT].name
        self._classes = signatures[IMAGES_SIGNATURE].outputs[OUTPUT_KEY].name
        self._encoded = signatures[ENCODED_SIGNATURE].inputs[ENCODED_INPUT].name
        self._encoded_classes = signatures[ENCODED_SIGNATURE].outputs[OUTPUT_KEY].name
        with open(labels_path(model_dir)) as f:
            self.labels = json.load(f)

    def predict(self, image_rgb):
        return self.session.run(self._classes, {self._images: check_image(image_rgb)[None]})[0]

    def predict_encoded(self, data):
        return self.session.run(self._encoded_classes, {self._encoded: [data]})[0]

    def close(self):
        self.session.close()
