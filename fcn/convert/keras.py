"""Keras's `applications.VGG16` weights (`model.save_weights`) -> vgg_16 tensors, read with h5py.

Two HDF5 layouts:
- Keras 2 (`.h5`, TensorFlow <= 2.15, and Keras's own downloadable vgg16_weights_tf_dim_ordering
  files): the root's `layer_names` attribute lists the layers; each layer's group lists its
  `weight_names` (`block1_conv1/kernel:0`, `.../bias:0`), datasets of that path. A whole-model
  `.h5` (`model.save`) holds the same under `model_weights`.
- Keras 3 (`.weights.h5`): `layers/<object path>/vars/0, 1, ...`, the `vars` group's `name`
  attribute the layer's name (`layers/conv2d/vars` named `block1_conv1`).
Kernels are [kh, kw, in, out] and [in, out] (channels_last); conv1_1's input is BGR; fc1's
inputs are pool5 flattened H, W, C.
"""
import h5py
import numpy as np

from fcn.convert import fold, vgg16
from fcn.convert.vgg16 import ConvertError

CONVENTION = fold.KERAS_CAFFE
WHAT = "Keras's VGG16 weights (keras.applications.VGG16, include_top=True)"
FC_NAMES = {'fc6': 'fc1', 'fc7': 'fc2', 'fc8': 'predictions'}
WEIGHT_ROLES = ('kernel', 'bias')


def layer_name(layer):
    """Keras's name of a vgg16 layer: block1_conv1 ... block5_conv3, fc1, fc2, predictions."""
    short = layer.scope.split('/')[-1]
    if layer.kind == 'conv':
        block, index = short.split('_')
        return 'block%s_conv%s' % (block[len('conv'):], index)
    return FC_NAMES[short]


def expected():
    pairs = []
    for layer in vgg16.LAYERS:
        kh, kw, channels, out = vgg16.slim_shape(layer)
        kernel = (kh, kw, channels, out) if layer.kind == 'conv' else (kh * kw * channels, out)
        pairs += [(layer_name(layer) + '/kernel', kernel), (layer_name(layer) + '/bias', (out,))]
    return pairs


def _keys(layer, values):
    return {'%s/%s' % (layer, WEIGHT_ROLES[i] if i < len(WEIGHT_ROLES) else i): value
            for i, value in enumerate(values)}


def _keras2(root):
    arrays = {}
    for name in root.attrs['layer_names']:
        name = name.decode() if isinstance(name, bytes) else str(name)
        group = root[name]
        paths = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get('weight_names', [])]
        arrays.update(_keys(name, [group[path][()] for path in paths]))
    return arrays


def _keras3(layers):
    """{name/role: array} of every layer under a Keras 3 `layers` group (nested models too)."""
    arrays = {}
    for key in layers:
        group = layers[key]
        if not isinstance(group, h5py.Group):
            continue
        variables = group.get('vars')
        if isinstance(variables, h5py.Group) and len(variables):
            name = variables.attrs.get('name', key)
            name = name.decode() if isinstance(name, bytes) else str(name)
            arrays.update(_keys(name, [variables[str(i)][()] for i in range(len(variables))]))
        if isinstance(group.get('layers'), h5py.Group):
            arrays.update(_keras3(group['layers']))
    return arrays


def read(path):
    """{layer/kernel, layer/bias: array} of a Keras 2 `.h5` or Keras 3 `.weights.h5` file."""
    try:
        with h5py.File(path, 'r') as f:
            root = f['model_weights'] if 'model_weights' in f else f
            if 'layer_names' in root.attrs:
                return _keras2(root)
            if isinstance(root.get('layers'), h5py.Group):
                return _keras3(root['layers'])
    except OSError as e:
        raise ConvertError('%s is not an HDF5 file Keras wrote: %s' % (path, str(e).splitlines()[0])) from None
    raise ConvertError('%s is not a Keras weights file: it has neither a layer_names attribute (Keras 2 .h5) '
                       'nor a layers group (Keras 3 .weights.h5)' % path)


def to_slim(arrays, path):
    """{keras key: array} -> {vgg_16 name: array}; conv1_1 still takes Keras's (BGR) input."""
    if 'fc1/kernel' not in arrays and 'block5_conv3/kernel' in arrays:
        raise ConvertError('%s is not %s: fc1/kernel is missing (an include_top=False file has no fully '
                           'connected layers; FCN needs fc6 and fc7)' % (path, WHAT))
    values = iter(vgg16.take(arrays, expected(), path, WHAT))
    tensors = {}
    for layer in vgg16.LAYERS:
        weights, biases = next(values), next(values)
        if layer.kind != 'conv':
            weights = vgg16.fc_as_conv(weights, layer, flattened='hwc')
        tensors[layer.scope + '/weights'], tensors[layer.scope + '/biases'] = np.asarray(weights), biases
    return tensors
