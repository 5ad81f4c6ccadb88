"""torchvision's `vgg16` state dict (`torch.save(model.state_dict(), path)`) -> vgg_16 tensors.

torchvision names a layer by its index in `features` (conv, ReLU per conv, a max pool after each
block) or `classifier` (Linear, ReLU, Dropout twice, Linear). Convs are [out, in, kh, kw], Linear
layers [out, in], and fc6's inputs are pool5 flattened channels first (C, H, W).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

from fcn.convert import fold, vgg16
from fcn.convert.vgg16 import ConvertError

CONVENTION = fold.TORCHVISION
WHAT = "torchvision's VGG-16 state dict (torchvision.models.vgg16)"
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'pth_child.py')
CLASSIFIER_INDEX = {'fc6': 0, 'fc7': 3, 'fc8': 6}


def source_names():
    """[(torchvision key prefix, vgg16 layer)] for vgg16.LAYERS, in order."""
    names, index = [], 0
    convs = iter(layer for layer in vgg16.LAYERS if layer.kind == 'conv')
    for _, repeats, _ in vgg16.BLOCKS:
        for _ in range(repeats):
            names.append(('features.%d' % index, next(convs)))
            index += 2  # conv, ReLU
        index += 1      # max pool
    for layer in vgg16.LAYERS[-3:]:
        names.append(('classifier.%d' % CLASSIFIER_INDEX[layer.scope.split('/')[-1]], layer))
    return names


def source_shape(layer):
    kh, kw, channels, out = vgg16.slim_shape(layer)
    if layer.kind == 'conv':
        return (out, channels, kh, kw)
    return (out, kh * kw * channels)


def expected():
    pairs = []
    for prefix, layer in source_names():
        pairs += [(prefix + '.weight', source_shape(layer)), (prefix + '.bias', (layer.out_channels,))]
    return pairs


def to_slim(arrays, path):
    """{torchvision key: array} -> {vgg_16 name: array}; conv1_1 still takes torchvision's input."""
    values = iter(vgg16.take(arrays, expected(), path, WHAT))
    tensors = {}
    for _, layer in source_names():
        weights, biases = next(values), next(values)
        if layer.kind == 'conv':
            weights = weights.transpose(2, 3, 1, 0)
        else:
            weights = vgg16.fc_as_conv(weights.T, layer, flattened='chw')
        tensors[layer.scope + '/weights'], tensors[layer.scope + '/biases'] = weights, biases
    return tensors


def read(path, python=None):
    """{key: float32 array} of a `.pth` state dict, read by pth_child.py under `python` (default:
    this interpreter) in a process without TensorFlow, through an `.npz` in a temporary folder."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix='fcn-convert-') as folder:
        npz = os.path.join(folder, 'state_dict.npz')
        try:
            child = subprocess.run([python, CHILD, path, npz], capture_output=True, text=True)
        except OSError as e:
            raise ConvertError('cannot run %s to read %s: %s' % (python, path, e)) from None
        if child.returncode != 0:
            raise ConvertError(_child_error(child, path, python))
        with np.load(npz) as archive:
            return {name: archive[name] for name in archive.files}


def _child_error(child, path, python):
    lines = child.stderr.strip().splitlines()
    last = lines[-1] if lines else 'exit code %d' % child.returncode
    kind, _, message = last.partition(':')
    message = message.strip()
    if kind == 'no-torch':
        return ('reading %s needs PyTorch, which %s cannot import (%s): pip install -e ".[convert]", '
                'or name a Python that has it with --torch-python' % (path, python, message))
    if kind == 'unsafe':
        return ('%s is refused: torch.load(weights_only=True) does not load it (%s). A .pth is a pickle '
                'and a pickle can run code, so nothing more is loaded; if you trust the file, save the '
                'weights alone: torch.save(model.state_dict(), "vgg16.pth")' % (path, message))
    if kind == 'unreadable':
        return '%s cannot be read as a PyTorch file: %s' % (path, message)
    if kind == 'not-a-state-dict':
        return '%s is not %s: %s; save it with torch.save(model.state_dict(), path)' % (path, WHAT, message)
    return 'reading %s with %s failed: %s' % (path, python, last)
