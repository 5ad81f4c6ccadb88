"""Checkpoints: initialising a model from a pre-trained one (TF-Slim's vgg_16.ckpt) with clear
errors, and checking a checkpoint's shapes against the model. A run's own checkpoints (the
latest, new ones, the global step, best/) are fcn.run.Run's."""
import os

from fcn.compat import checkpoint_exists, tf, tf1
from fcn.nets import fcn as fcn_net

MODEL_SCOPES = ('vgg_16', 'fcn')


class CheckpointError(ValueError):
    """init.checkpoint is missing, unreadable, or does not fit the model."""


def _strip(name):
    return name.split(':')[0]


def model_variables():
    """Global variables under the model scopes, less the ones named after another variable:
    optimizer slots (`<variable>/Momentum`, `/Adam`...) and moving averages
    (`<variable>/ExponentialMovingAverage`) belong to a run, not to the model."""
    variables = [v for v in tf1.global_variables() if _strip(v.name).split('/')[0] in MODEL_SCOPES]
    names = {v.op.name for v in variables}

    def nested(name):
        parts = name.split('/')
        return any('/'.join(parts[:i]) in names for i in range(1, len(parts)))
    return [v for v in variables if not nested(v.op.name)]


def resolve(path, what='init.checkpoint'):
    """A checkpoint TensorFlow can read: a V2 prefix (`model.ckpt-100`), a V1 single file
    (TF-Slim's `vgg_16.ckpt`) or a run folder (its latest checkpoint)."""
    path = os.path.expanduser(str(path))
    if os.path.isdir(path):
        latest = tf1.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError('%s %r is a folder without a checkpoint: train that run first, '
                                  'or name a checkpoint such as path/to/vgg_16.ckpt' % (what, path))
        return latest
    if not checkpoint_exists(path):
        raise CheckpointError('%s %r not found: expected a checkpoint prefix (model.ckpt-1000, with its '
                              '.index file), a V1 checkpoint file such as vgg_16.ckpt (TF-Slim '
                              'vgg_16_2016_08_28.tar.gz, unpacked) or a run folder' % (what, path))
    return path


def _excluded(name, exclude_scopes):
    return any(name == scope or name.startswith(scope.rstrip('/') + '/') for scope in exclude_scopes)


def shape_map(path):
    """{variable name: shape list} of a checkpoint, with a clear error for unreadable files."""
    try:
        return {name: list(shape) for name, shape in tf.train.load_checkpoint(path).get_variable_to_shape_map().items()}
    except Exception as e:  # the reader raises a bare DataLossError on corrupt or foreign files
        raise CheckpointError('checkpoint %r cannot be read: %s' % (path, str(e).splitlines()[0])) from None


def likely_key(name, checkpoint_shape, model_shape):
    """The config key that most likely makes a variable's shapes differ: the number of classes
    when only class dimensions differ in a head layer (fc8 and score layers: the last;
    transposed convolutions: the last two), the upsampling mode when an upsampling kernel's rank
    differs (learnable [k, k, C, C], per_class [k, k, C]), the network when other ranks differ,
    else the width."""
    if len(checkpoint_shape) != len(model_shape):
        return 'model.upsample' if 'upscore' in name else 'model.name'
    differing = {i for i, (a, b) in enumerate(zip(checkpoint_shape, model_shape)) if a != b}
    class_dims = {len(model_shape) - 1}
    if 'upscore' in name:
        class_dims.add(len(model_shape) - 2)
    if any(part in name for part in ('fc8', 'score')) and differing <= class_dims:
        return 'data.num_classes'
    return 'model.width'


def check_shapes(path, variables, shapes=None):
    """Raises CheckpointError unless every {checkpoint name: variable} has the checkpoint's shape.

    TensorFlow 2.21's Saver.restore does not check shapes of resource variables in graph
    mode (a [3,3,3,16] variable silently takes a [3,3,3,8] value), so every restore calls
    this first. Names the variable, both shapes and the config key that most likely differs.
    """
    shapes = shape_map(path) if shapes is None else shapes
    for name, var in variables.items():
        model_shape = var.shape.as_list()
        if name in shapes and shapes[name] != model_shape:
            key = likely_key(name, shapes[name], model_shape)
            raise CheckpointError('%s in %s has shape %s but the model expects %s: check %s (the checkpoint '
                                  'was written by a model with another %s)'
                                  % (name, path, shapes[name], model_shape, key, key))


def variables_to_restore(path, exclude_scopes=(), ignore_missing_vars=False, variables=None, new_scopes=()):
    """{checkpoint name: variable} for model variables not in `exclude_scopes`.

    A model variable the checkpoint lacks is an error unless it lies under `new_scopes` (what
    the model adds over the checkpoint's net: it starts as initialised) or `ignore_missing_vars`;
    a shape mismatch is always an error (it names both shapes).
    """
    shapes = shape_map(path)
    if variables is None:
        variables = model_variables()
    restore_map, missing = {}, []
    for var in variables:
        name = _strip(var.op.name if hasattr(var, 'op') else var.name)
        if _excluded(name, exclude_scopes):
            continue
        if name not in shapes:
            if not _excluded(name, new_scopes):
                missing.append(name)
            continue
        restore_map[name] = var
    check_shapes(path, restore_map, shapes)
    if missing and not ignore_missing_vars:
        raise CheckpointError('%d model variables are not in %s, e.g. %s; check model.name, exclude their '
                              'scopes with init.exclude_scopes or set init.ignore_missing_vars: true'
                              % (len(missing), path, ', '.join(missing[:3])))
    if not restore_map:
        raise CheckpointError('nothing to restore from %s: no model variable matches its names' % path)
    return restore_map


def make_init_fn(path, exclude_scopes=(), ignore_missing_vars=False, model_name=None):
    """A Scaffold init_fn restoring pre-trained weights (run only when the run dir has no checkpoint).

    `path` is a checkpoint prefix (vgg_16.ckpt) or a run folder (FCN-16s from the FCN-32s run).
    With `model_name` (model.name), every variable the model shares with the checkpoint's net is
    restored and only what the model adds over that net (fcn.nets.fcn.STAGES) may be missing: it
    starts as Caffe's surgery starts it (score layers at zero, upsampling bilinear). The init_fn
    carries `checkpoint`, `restored` (names) and `fresh` (model variables left as initialised).
    """
    if path is None:
        return None
    path = resolve(path)
    added = fcn_net.new_scopes(model_name, list(shape_map(path))) if model_name else ()
    restore_map = variables_to_restore(path, exclude_scopes, ignore_missing_vars, new_scopes=added)
    saver = tf1.train.Saver(restore_map)

    def init_fn(scaffold, session):
        del scaffold
        saver.restore(session, path)
    init_fn.checkpoint = path
    init_fn.restored = sorted(restore_map)
    init_fn.fresh = sorted(set(_strip(v.op.name) for v in model_variables()) - set(restore_map))
    return init_fn
