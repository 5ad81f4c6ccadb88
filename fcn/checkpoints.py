"""Initialising a model from a pre-trained checkpoint (TF-Slim's vgg_16.ckpt) with clear errors."""
import os

from fcn.compat import checkpoint_exists, tf, tf1

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


def resolve(path):
    """A checkpoint prefix as given, or a run folder's latest checkpoint (init from a run dir)."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        return path
    latest = tf1.train.latest_checkpoint(path)
    if latest is None:
        raise CheckpointError('init.checkpoint %r is a folder without a checkpoint: train that run first, '
                              'or name a checkpoint prefix such as path/to/vgg_16.ckpt' % path)
    return latest


def _excluded(name, exclude_scopes):
    return any(name == scope or name.startswith(scope.rstrip('/') + '/') for scope in exclude_scopes)


def _reader(path):
    if path is None:
        return None
    if not checkpoint_exists(path):
        raise CheckpointError('init.checkpoint %r not found: expected a checkpoint prefix such as '
                              'path/to/vgg_16.ckpt (TF-Slim vgg_16_2016_08_28.tar.gz, unpacked)' % path)
    try:
        return tf.train.load_checkpoint(path)
    except Exception as e:  # the reader raises a bare DataLossError on corrupt files
        raise CheckpointError('init.checkpoint %r cannot be read: %s' % (path, e)) from None


def variables_to_restore(path, exclude_scopes=(), ignore_missing_vars=False, variables=None):
    """{checkpoint name: variable} for model variables not in `exclude_scopes`.

    A model variable the checkpoint lacks is an error unless `ignore_missing_vars`; a
    shape mismatch is always an error (it names both shapes).
    """
    reader = _reader(path)
    shapes = reader.get_variable_to_shape_map()
    if variables is None:
        variables = model_variables()
    restore, missing = {}, []
    for var in variables:
        name = _strip(var.op.name if hasattr(var, 'op') else var.name)
        if _excluded(name, exclude_scopes):
            continue
        if name not in shapes:
            missing.append(name)
            continue
        if list(shapes[name]) != var.shape.as_list():
            raise CheckpointError('%s in %s has shape %s but the model expects %s (check model.width, '
                                  'data.num_classes, or add the scope to init.exclude_scopes)'
                                  % (name, path, list(shapes[name]), var.shape.as_list()))
        restore[name] = var
    if missing and not ignore_missing_vars:
        raise CheckpointError('%d model variables are not in %s, e.g. %s; exclude their scopes with '
                              'init.exclude_scopes or set init.ignore_missing_vars: true'
                              % (len(missing), path, ', '.join(missing[:3])))
    if not restore:
        raise CheckpointError('nothing to restore from %s: no model variable matches its names' % path)
    return restore


def make_init_fn(path, exclude_scopes=(), ignore_missing_vars=False):
    """A Scaffold init_fn restoring pre-trained weights (run only when the run dir has no checkpoint).

    `path` is a checkpoint prefix (vgg_16.ckpt) or a run folder (FCN-16s from the FCN-32s run).
    """
    if path is None:
        return None
    path = resolve(path)
    saver = tf1.train.Saver(variables_to_restore(path, exclude_scopes, ignore_missing_vars))

    def init_fn(scaffold, session):
        del scaffold
        saver.restore(session, path)
    init_fn.checkpoint = path
    return init_fn
