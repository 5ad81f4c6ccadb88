"""TFLite export of the frozen inference graph at a fixed input size, and a runner.

TFLite needs static shapes: the model takes uint8 [1, H, W, 3] for the `input_size` it was
exported with and returns int32 class ids [1, H, W]. Weights are float32, or with `quantize`
float16 (half the size) or dynamic-range int8 (a quarter; activations stay float).

`TFLiteModel.predict` on an image of another size: with fit='letterbox' (the default) the
image is resized, keeping its aspect ratio, to fit the input (longer side touching it), padded
at the bottom/right with the ImageNet mean (what the network's own padding to a multiple of 32
adds), predicted, and the class ids are cropped and resized back (nearest); near the padding
and after resizing the ids are then not those of the frozen graph on the original image. With
fit='exact' another size is refused with an error naming both sizes.
"""
import os
import tempfile

import cv2
import numpy as np

from fcn.compat import tf, tf1, tflite_interpreter
from fcn.export import INPUT_NAME, OUTPUT_NAME, common, frozen
from fcn.nets.vgg import MEAN_RGB

QUANTIZATIONS = ('none', 'float16', 'dynamic')
FITS = ('letterbox', 'exact')


def export(frozen, out_path, labels=None, input_size=None, quantize='none'):
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
            raise ValueError('tflite.export of a GraphDef needs its labels (num_classes, class_names, palette, ignore_label)')
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'frozen.pb')
            with open(path, 'wb') as f:
                f.write(frozen.SerializeToString())
            data = _convert(path, height, width, quantize)
    common.write_atomic(out_path, data)
    common.write_sidecar(out_path, dict(labels, format='tflite', input=INPUT_NAME + ':0', output=OUTPUT_NAME + ':0',
                                        input_size=[height, width], quantize=quantize))
    return len(data)


def from_checkpoint(source, out_path, input_size, quantize='none'):
    """`export` of the frozen inference graph of an ExportSource's checkpoint (eval.scales and
    eval.flip in it)."""
    height, width = check_input_size(input_size)  # before the slow part
    check_quantize(quantize)
    graph_def, info = frozen.freeze_with_info(source, tiling=False)
    return export(graph_def, out_path, info, (height, width), quantize)


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


def letterbox(image, size):
    """(image resized to fit `size` keeping its aspect ratio and padded at the bottom/right
    with the mean colour, (height, width) of the resized part)."""
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    inner = (max(1, min(height, round(image.shape[0] * scale))), max(1, min(width, round(image.shape[1] * scale))))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (inner[1], inner[0]), interpolation=interpolation)
    padded = np.empty((height, width, 3), np.uint8)
    padded[:] = np.round(MEAN_RGB).astype(np.uint8)
    padded[:inner[0], :inner[1]] = resized
    return padded, inner


class TFLiteModel:
    """Loads model.tflite (+ model.json) once; `predict(rgb_uint8 [H, W, 3])` -> int32 class ids
    [H, W]. `input_size` is the (height, width) it was exported for; see the module doc for `fit`."""

    def __init__(self, path, fit='letterbox', num_threads=None):
        if fit not in FITS:
            raise ValueError('fit must be one of %s, got %r' % (', '.join(FITS), fit))
        common.check_model_file(path, 'export.py --format tflite --input_size H W')
        try:
            self.interpreter = tflite_interpreter(path, num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except ValueError as e:
            raise ValueError('%s is not a TFLite model: %s' % (path, e)) from None
        (image,), (ids,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if image['dtype'] != np.uint8 or len(image['shape']) != 4 or image['shape'][3] != 3:
            raise ValueError('%s takes %s %s, not uint8 [1, H, W, 3]: was it written by export.py?'
                             % (path, np.dtype(image['dtype']).name, list(image['shape'])))
        self.path = path
        self.fit = fit
        self.input_size = (int(image['shape'][1]), int(image['shape'][2]))
        self._input, self._output = image['index'], ids['index']
        self.labels = common.labels(path)

    def predict(self, image_rgb):
        image = common.check_rgb(image_rgb)
        if image.shape[:2] == self.input_size:
            return self._run(image)
        if self.fit == 'exact':
            raise ValueError('%s takes %dx%d images (exported with --input_size %d %d); this one is %dx%d'
                             % ((self.path,) + self.input_size + self.input_size + image.shape[:2]))
        padded, inner = letterbox(image, self.input_size)
        ids = self._run(padded)[:inner[0], :inner[1]]
        return cv2.resize(ids, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)

    def _run(self, image):
        self.interpreter.set_tensor(self._input, image[None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)[0].astype(np.int32)

    def close(self):
        self.interpreter = None
