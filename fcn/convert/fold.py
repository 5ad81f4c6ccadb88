"""A source library's input convention folded into conv1_1 (numpy only).

vgg_16.ckpt takes x_slim = x - MEAN_RGB (x: RGB in 0-255). A source takes, in its channel j,

    x_src[j] = (x[channel[j]] * scale - mean[j]) / std[j] = a[j] * x_slim[channel[j]] + b[j]
    a[j] = scale / std[j],   b[j] = (scale * MEAN_RGB[channel[j]] - mean[j]) / std[j]

so conv1_1 over x_src equals conv1_1 with weights W[:, :, j, :] * a[j] (moved to input channel
channel[j]) and biases + sum over taps and j of W[:, :, j, :] * b[j], over x_slim.

That is exact wherever the 3x3 window lies inside the image. At the border both convolutions
pad with zeros, but in different spaces: the source's zero is x_src = 0, the pixel value
mean / scale; vgg_16's is x_slim = 0, the pixel value MEAN_RGB. For a padded tap the folded
conv adds W * b that the source does not: `border_error` is the largest such difference of a
conv1_1 output (before ReLU). torchvision's zero is the pixel (123.675, 116.28, 103.53) against
(123.68, 116.78, 103.94), under half a grey level; Keras's Caffe means differ from MEAN_RGB by
0.001. A conv cannot carry a position-dependent bias, so the converter reports the number.
"""
import collections

import numpy as np

from fcn.nets.vgg import MEAN_RGB


class InputConvention(collections.namedtuple('InputConvention', 'name channels scale mean std')):
    """x_src[j] = (x[channels[j]] * scale - mean[j]) / std[j], x the RGB pixel in 0-255."""

    def affine(self):
        """(a, b) per source channel: x_src[j] = a[j] * x_slim[channels[j]] + b[j] (float64)."""
        std = np.asarray(self.std, np.float64)
        slim_mean = np.asarray(MEAN_RGB, np.float64)[list(self.channels)]
        return self.scale / std, (self.scale * slim_mean - np.asarray(self.mean, np.float64)) / std

    def padding_pixel(self):
        """The RGB pixel value that the source's zero padding stands for."""
        pixel = np.zeros(3)
        pixel[list(self.channels)] = np.asarray(self.mean, np.float64) / self.scale
        return pixel


# torchvision: RGB / 255, normalised by ImageNet's mean and std (transforms.Normalize)
TORCHVISION = InputConvention('torchvision', (0, 1, 2), 1 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Keras applications.vgg16.preprocess_input ('caffe' mode): BGR minus the Caffe means
KERAS_CAFFE = InputConvention('keras', (2, 1, 0), 1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def fold_first_conv(weights, biases, convention):
    """conv1_1 over the source's input -> conv1_1 over vgg_16's (slim layout [3, 3, 3, out],
    input channels in the source's order) -> (weights, biases) as float32, RGB input channels."""
    a, b = convention.affine()
    source = np.asarray(weights, np.float64)
    folded = np.zeros_like(source)
    folded[:, :, list(convention.channels), :] = source * a[None, None, :, None]
    offset = np.einsum('hwjo,j->o', source, b)
    return folded.astype(np.float32), (np.asarray(biases, np.float64) + offset).astype(np.float32)


def border_error(weights, convention):
    """Largest |folded - source| of a conv1_1 output at an image border ('SAME' zero padding).

    `weights` in slim layout, source channel order. A border output misses the taps of one
    outside row and/or column: the error there is the sum of W * b over those taps.
    """
    _, b = convention.affine()
    per_tap = np.einsum('hwjo,j->hwo', np.asarray(weights, np.float64), b)  # [3, 3, out]
    last = per_tap.shape[0] - 1
    rows = {'top': [0], 'bottom': [last], 'none': []}
    cols = {'left': [0], 'right': [last], 'none': []}
    worst = 0.0
    for row in rows.values():
        for col in cols.values():
            padded = np.zeros(per_tap.shape[:2], bool)
            padded[row, :] = True
            padded[:, col] = True
            worst = max(worst, float(np.abs(per_tap[padded].sum(axis=0)).max()) if padded.any() else 0.0)
    return worst
