"""Image files -> RGB uint8 [H, W, 3] with the pixels the records' decoder gives (predict.py).

With TensorFlow installed: its own decoder (fcn.compat.DecodedImage), exactly as training and
eval decode the records. Without it (a deploy with LiteRT or ONNX Runtime only): JPEGs through
libjpeg-turbo with the fast integer DCT and fancy upsampling (the `simplejpeg` package, in the
`lite` extra), which is what tf.io.decode_jpeg does by default: the same pixels (checked on
4:2:0, 4:2:2, 4:4:4 and greyscale JPEGs and a camera photo). Pillow and OpenCV use libjpeg's
accurate DCT and differ from it by a few levels in most pixels, so they are not used for JPEG.
PNG, BMP and GIF (first frame) are lossless and go through Pillow, as RGB.

A JPEG with an EXIF orientation other than 1 is turned upright after decoding (fcn.orientation,
as the record builders turn it), so predict.py segments, and writes its outputs in, the frame a
viewer shows; `upright=False` keeps the raw pixels (a model trained on records built with
--ignore_exif_orientation). Both decoders turn it the same way, with NumPy.
"""
import importlib.util
import io

import numpy as np

from fcn import orientation

FORMATS = 'JPEG, PNG, BMP or GIF'


def tensorflow_installed():
    return importlib.util.find_spec('tensorflow') is not None


def make_decoder(upright=True):
    """The decoder of this environment: TensorFlow's where it is installed, else LiteDecoder."""
    decoder = TFDecoder() if tensorflow_installed() else LiteDecoder()
    decoder.upright = upright
    return decoder


class _Decoder:
    upright = True

    def read(self, path):
        """The file's RGB pixels, turned upright from an EXIF orientation unless `upright` is off."""
        with open(path, 'rb') as f:
            data = f.read()
        image = self.decode(data, path)
        return orientation.upright(image, orientation.jpeg_orientation(data)) if self.upright else image

    def close(self):
        pass


class TFDecoder(_Decoder):
    """Decodes with TensorFlow, as the records are decoded."""

    def __init__(self):
        from fcn.compat import DecodedImage, tf, tf1
        from fcn.deploy import shared_gpu_config
        self._errors = (tf.errors.InvalidArgumentError,)
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._encoded = tf1.placeholder(tf.string, [])
            self._image = DecodedImage('encoded').tensors_to_item({'encoded': self._encoded})
        self._session = tf1.Session(graph=self._graph, config=shared_gpu_config())

    def decode(self, data, name='image'):
        try:
            return self._session.run(self._image, {self._encoded: data})
        except self._errors:
            raise ValueError('%s is not a readable image (%s)' % (name, FORMATS)) from None

    def close(self):
        self._session.close()


class LiteDecoder(_Decoder):
    """Decodes without TensorFlow: simplejpeg (TensorFlow's JPEG settings) and Pillow."""

    def __init__(self):
        from fcn.export.common import require
        self._simplejpeg = require('simplejpeg', 'lite')

    def decode(self, data, name='image'):
        if data[:3] == b'\xff\xd8\xff':
            try:
                return self._simplejpeg.decode_jpeg(data, colorspace='RGB', fastdct=True, fastupsample=False)
            except ValueError:
                raise ValueError('%s is not a readable image (%s)' % (name, FORMATS)) from None
        from PIL import Image
        try:
            with Image.open(io.BytesIO(data)) as image:
                return np.ascontiguousarray(np.asarray(image.convert('RGB')))
        except (OSError, ValueError):
            raise ValueError('%s is not a readable image (%s)' % (name, FORMATS)) from None
