"""convert_weights.py: read a source's VGG-16 file, lay it out as vgg_16.ckpt, fold its input
convention into conv1_1, write the checkpoint."""
import os

from fcn.convert import checkpoint, fold, keras, torchvision, vgg16
from fcn.convert.vgg16 import ConvertError

SOURCES = {'torchvision': torchvision, 'keras': keras}


def read_source(source, path, torch_python=None):
    """{vgg_16 name: array} of `path`, conv1_1 still taking the source's input."""
    if not os.path.isfile(path):
        raise ConvertError('%s not found: expected a %s file' % (path, '.pth' if source == 'torchvision' else '.h5'))
    module = SOURCES[source]
    arrays = module.read(path, torch_python) if source == 'torchvision' else module.read(path)
    return module.to_slim(arrays, path)


def fold_input(tensors, convention, log=print):
    """Folds `convention` into conv1_1 of `tensors` (in place); logs the border difference."""
    name = vgg16.LAYERS[0].scope
    weights, biases = tensors[name + '/weights'], tensors[name + '/biases']
    border = fold.border_error(weights, convention)
    tensors[name + '/weights'], tensors[name + '/biases'] = fold.fold_first_conv(weights, biases, convention)
    log("folded %s's input convention into conv1_1: the checkpoint takes RGB 0-255 minus the VGG mean, as "
        "vgg_16.ckpt; conv1_1 outputs at image borders differ by at most %.2g, as %s's zero padding is the "
        "pixel (%s) and vgg_16's the VGG mean" % (convention.name, border, convention.name,
                                                  ', '.join('%.3f' % v for v in convention.padding_pixel())))
    return border


def convert(source, path, out, overwrite=False, torch_python=None, log=print):
    """Writes the checkpoint at prefix `out`; returns {vgg_16 name: array} written."""
    checkpoint.check_out(out, overwrite)  # before minutes of reading
    tensors = read_source(source, path, torch_python)
    log('read %s: %s, %d tensors' % (path, SOURCES[source].WHAT, len(tensors)))
    fold_input(tensors, SOURCES[source].CONVENTION, log)
    checkpoint.write(tensors, out, overwrite)
    log('wrote %s (%s.index, %s%s): vgg_16 names, ready for init.checkpoint and predict.py --imagenet'
        % (out, os.path.basename(out), os.path.basename(out), checkpoint.SHARD))
    return tensors
