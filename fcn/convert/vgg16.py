"""The converters' target, vgg_16.ckpt's layers in order, and the checks of a source's tensors.

A source names its layers its own way (`features.0.weight`, `block1_conv1/kernel`); each source
module lists its names for `LAYERS` in order, and `take` checks them against what the file
holds, so an error names the first missing, mis-shaped or unexpected tensor.
"""
import collections

import numpy as np

from fcn.nets.vgg import BLOCKS, FC_CHANNELS, SCOPE

NUM_CLASSES = 1000  # ImageNet, as vgg_16.ckpt's fc8
POOL5_SIZE = 7      # pool5 of a 224 x 224 input: fc6 is a 7 x 7 convolution over it

Layer = collections.namedtuple('Layer', 'scope kind in_channels out_channels')


def _layers():
    layers, in_channels = [], 3
    for block, repeats, channels in BLOCKS:
        for i in range(1, repeats + 1):
            layers.append(Layer('%s/%s/%s_%d' % (SCOPE, block, block, i), 'conv', in_channels, channels))
            in_channels = channels
    layers.append(Layer(SCOPE + '/fc6', 'fc6', in_channels, FC_CHANNELS))
    layers.append(Layer(SCOPE + '/fc7', 'fc', FC_CHANNELS, FC_CHANNELS))
    layers.append(Layer(SCOPE + '/fc8', 'fc', FC_CHANNELS, NUM_CLASSES))
    return tuple(layers)


LAYERS = _layers()  # conv1_1 ... conv5_3, fc6, fc7, fc8


def slim_shape(layer):
    """The weights' shape in vgg_16.ckpt: [kh, kw, in, out]; fc6 is 7x7 over pool5, fc7/fc8 1x1."""
    size = {'conv': 3, 'fc6': POOL5_SIZE, 'fc': 1}[layer.kind]
    return (size, size, layer.in_channels, layer.out_channels)


class ConvertError(ValueError):
    """The input file is not what the converter takes (its message names the file and key)."""


def take(arrays, expected, path, what):
    """[array for each (name, shape) in `expected`] from {name: array}, in order.

    Raises ConvertError naming the first missing or mis-shaped name, or the first name of
    `arrays` that `expected` does not list (a file of another network).
    """
    taken = []
    for name, shape in expected:
        if name not in arrays:
            raise ConvertError('%s is not %s: %s is missing' % (path, what, name))
        value = arrays[name]
        if tuple(value.shape) != tuple(shape):
            raise ConvertError('%s is not %s: %s has shape %s, expected %s'
                               % (path, what, name, list(value.shape), list(shape)))
        taken.append(np.asarray(value, np.float32))
    known = {name for name, _ in expected}
    unexpected = [name for name in arrays if name not in known]
    if unexpected:
        raise ConvertError('%s is not %s: it also holds %s, which VGG-16 has not (%d such tensors)'
                           % (path, what, unexpected[0], len(unexpected)))
    return taken


def fc_as_conv(weights, layer, flattened):
    """A fully connected layer's [in, out] matrix -> slim's [kh, kw, in_channels, out] conv.

    `flattened` is the order in which the source flattened pool5 into fc6's inputs: 'chw'
    (torchvision: channels first) or 'hwc' (Keras, channels_last). fc7 and fc8 are 1x1.
    """
    kh, kw, channels, out = slim_shape(layer)
    if layer.kind != 'fc6':
        return weights.reshape(kh, kw, channels, out)
    if flattened == 'chw':
        return weights.reshape(channels, kh, kw, out).transpose(1, 2, 0, 3)
    return weights.reshape(kh, kw, channels, out)
