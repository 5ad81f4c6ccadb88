"""Runs a TFLite model written by export.py: on LiteRT (the `ai_edge_litert` package, the `lite`
extra) where it is installed, which needs no TensorFlow; else on TensorFlow's own tf.lite.

`TFLiteModel.predict` on an image of another size: with fit='letterbox' (the default) the
image is resized, keeping its aspect ratio, to fit the input (longer side touching it), padded
at the bottom/right with the ImageNet mean (what the network's own padding to a multiple of 32
adds), predicted, and the class ids are cropped and resized back (nearest); near the padding
and after resizing the ids are then not those of the frozen graph on the original image. With
fit='exact' another size is refused with an error naming both sizes.
"""
import cv2
import numpy as np

from fcn.export import common
from fcn.nets import MEAN_RGB

FITS = ('letterbox', 'exact')


def interpreter(model_path, num_threads=None):
    """A TFLite interpreter of `model_path`: LiteRT's, else tf.lite's (deprecated in its favour)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from fcn.compat import tflite_interpreter
        return tflite_interpreter(model_path, num_threads=num_threads)
    return Interpreter(model_path=model_path, num_threads=num_threads)


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
            self.interpreter = interpreter(path, num_threads=num_threads)
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
        self.labels = common.read_sidecar(path)

    def predict(self, image_rgb):
        image = common.check_image(image_rgb)
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
