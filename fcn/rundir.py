"""A run dir describes itself: the resolved config (`config.yaml`) and the dataset's
description (`dataset.json`) sit next to the checkpoints, so eval, export and predict of a
run need nothing else, and an override that no longer fits the run's checkpoints is caught
before TensorFlow sees it.
"""
import os

import yaml

from fcn.config import ConfigError, save_config
from fcn.data import info as dataset_info

CONFIG_NAME = 'config.yaml'
# Keys that shape the model's variables: a run's checkpoints only fit the values it was trained with.
MODEL_KEYS = ('model.name', 'model.width')


def config_path(run_dir):
    return os.path.join(run_dir, CONFIG_NAME)


def write(cfg, info):
    """Writes the resolved config and the dataset description (without per-split statistics
    of other splits changing anything: the whole description is kept) into train.run_dir."""
    run_dir = cfg.train.run_dir
    os.makedirs(run_dir, exist_ok=True)
    info.write(dataset_info.run_info_path(run_dir))
    save_config(cfg, config_path(run_dir))
    return run_dir


def saved_config(run_dir):
    """The run's config.yaml as a nested dict, or None when the run has none."""
    path = config_path(run_dir)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError('%s is not valid YAML: %s' % (path, e)) from None


def _lookup(tree, dotted):
    for part in dotted.split('.'):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def check_model_keys(cfg, run_dir=None):
    """Raises ConfigError when a model-shaping key differs from what the run was trained with,
    or when the records' classes differ from the run's. Naming both values."""
    run_dir = run_dir or cfg.train.run_dir
    saved = saved_config(run_dir)
    if saved is not None:
        for key in MODEL_KEYS:
            ours, theirs = _lookup(cfg, key), _lookup(saved, key)
            if theirs is not None and ours != theirs:
                raise ConfigError('%s is %r but the run in %s was trained with %s: %r (%s); drop the override, '
                                  'or use another train.run_dir' % (key, ours, run_dir, key, theirs, config_path(run_dir)))
    _check_classes(cfg, run_dir)


def _check_classes(cfg, run_dir):
    run_info = dataset_info.read_run(run_dir)
    if run_info is None or not os.path.isfile(dataset_info.summary_path(cfg.data.dir)):
        return
    records_info = dataset_info.DatasetInfo.read(cfg.data.dir)
    if records_info.num_classes != run_info.num_classes:
        raise ConfigError('data.dir %s has %d classes (%s) but the run in %s was trained on %d (%s); '
                          'evaluate it on its own records or use another train.run_dir'
                          % (cfg.data.dir, records_info.num_classes, records_info.source, run_dir,
                             run_info.num_classes, run_info.source))


def dataset_for_training(cfg, resuming):
    """The dataset description a training run uses: a resumed run keeps the classes it was
    started with (its dataset.json, checked against the records); a new run takes the records'."""
    if resuming:
        check_model_keys(cfg)
        return dataset_info.for_config(cfg)
    info = dataset_info.DatasetInfo.read(cfg.data.dir)
    expected = cfg.data.num_classes
    if expected is not None and int(expected) != info.num_classes:
        raise ConfigError('data.num_classes is %d but %s says %d classes; drop the key or fix it'
                          % (expected, info.source, info.num_classes))
    return info
