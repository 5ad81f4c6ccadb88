"""fcn.config value checks: declared once (CHECKS, CROSS_CHECKS), every error names the key,
what is valid and the value; the choices agree with what the library implements."""
import glob
import os

import pytest

from fcn import config
from fcn.config import CHECKS, ConfigError, load_config

BASE = 'configs/base.yaml'


@pytest.mark.parametrize('override, message', [
    ('model.name=fcn4s', r'--set: model.name must be one of fcn32s, fcn16s, fcn8s, got .fcn4s.'),
    ('model.upsample=nearest', r'model.upsample must be one of learnable, per_class, fixed, got .nearest.'),
    ('train.lr_schedule=linear', r'train.lr_schedule must be one of fixed, poly, step, exponential, cosine, got .linear.'),
    ('train.optimizer=adagrad', r'train.optimizer must be one of momentum, sgd, adam, rmsprop, got .adagrad.'),
    ('train.steps=0', r'train.steps must be an integer >= 1, got 0'),
    ('train.crop_size=100', r'train.crop_size must be a positive multiple of 32, or \[height, width\] of such .*got 100'),
    ('train.crop_size=[512, 1000]', r'train.crop_size must be .*got \[512, 1000\]'),
    ('train.crop_size=[512]', r'train.crop_size must be .*got \[512\]'),
    ('train.crop_size=big', r"train.crop_size must be .*got 'big'"),
    ('train.accumulate_steps=0', r'train.accumulate_steps must be an integer >= 1, got 0'),
    ('model.width=0', r'model.width must be a number > 0, got 0'),
    ('model.dropout_keep_prob=1.5', r'model.dropout_keep_prob must be a number in \(0, 1\], got 1.5'),
    ('train.momentum=1.0', r'train.momentum must be a number in \[0, 1\), got 1.0'),
    ('loss.top_k_percent=0', r'loss.top_k_percent must be a number in \(0, 1\], got 0'),
    ('eval.scales=[0.5, 0]', r'eval.scales must be a non-empty list of positive numbers.*got \[0.5, 0\]'),
    ('eval.scales=[]', r'eval.scales must be a non-empty list.*got \[\]'),
    ('data.num_classes=0', r'data.num_classes must be null or an integer >= 1, got 0'),
    ('data.num_classes=many', r"data.num_classes must be null or an integer >= 1, got 'many'"),
    ('eval.max_images=2.5', r'eval.max_images must be null or an integer >= 1, got 2.5'),
    ('deploy.replicas_to_aggregate=0', r'deploy.replicas_to_aggregate must be null or an integer >= 1, got 0'),
    ('loss.class_weights=median', r"loss.class_weights must be null, a list of numbers >= 0, or one of "
                                  r"median_frequency, inverse_frequency, none, got 'median'"),
    ('loss.class_weights=[1, -1]', r'loss.class_weights must be .*got \[1, -1\]'),
    ('train.lr_multipliers=[[vgg_16/fc8]]', r"train.lr_multipliers must be a list of \[scope, factor\] pairs"),
    ('train.seed=-1', r'train.seed must be null or an integer >= 0, got -1'),
    ('augment.hue=0.7', r'augment.hue must be a number in \[0, 0.5\], got 0.7'),
])
def test_a_bad_value_names_the_key_what_is_valid_and_the_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(BASE, [override])


@pytest.mark.parametrize('overrides, message', [
    (['train.batch_size=6', 'deploy.num_clones=4'], 'train.batch_size 6 must be divisible by deploy.num_clones 4'),
    (['augment.min_scale=2.0', 'augment.max_scale=0.5'], 'augment.min_scale 2.0 must be <= augment.max_scale 0.5'),
    (['train.deterministic=true'], 'train.deterministic needs train.seed'),
])
def test_cross_checks_name_both_keys(overrides, message):
    with pytest.raises(ConfigError, match='--set: ' + message):
        load_config(BASE, overrides)


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('base: %s\ntrain:\n  crop_size: [320, 330]\n' % os.path.abspath(BASE))
    with pytest.raises(ConfigError, match=r'bad.yaml: train.crop_size must be .*got \[320, 330\]'):
        load_config(str(path))


def test_good_values_pass_and_keep_their_types():
    cfg = load_config(BASE, ['train.crop_size=[256, 512]', 'train.accumulate_steps=4', 'data.num_classes=21',
                             'loss.class_weights=median_frequency', 'train.deterministic=true', 'train.seed=3'])
    assert cfg.train.crop_size == [256, 512] and config.crop_size(cfg.train.crop_size) == (256, 512)
    assert config.crop_size(load_config(BASE, ['train.crop_size=512']).train.crop_size) == (512, 512)
    assert cfg.train.accumulate_steps == 4 and cfg.data.num_classes == 21


def test_every_shipped_config_passes_the_checks():
    paths = sorted(glob.glob('configs/*.yaml'))
    assert len(paths) >= 5
    for path in paths:
        load_config(path)


def test_every_check_is_of_a_schema_key():
    schema = config._flatten(config._load_chain(config.BASE_CONFIG))
    assert sorted(set(CHECKS) - set(schema)) == []


def _choices(key):
    return [c for c in ('fcn32s', 'fcn16s', 'fcn8s', 'learnable', 'fixed', 'poly', 'step', 'exponential',
                        'cosine', 'momentum', 'sgd', 'adam', 'rmsprop') if CHECKS[key](c)]


def test_declared_choices_are_what_the_library_implements():
    from fcn import losses, optim
    from fcn.nets import fcn
    assert _choices('model.name') == list(fcn.NUM_SKIPS)
    assert sorted(_choices('train.lr_schedule')) == sorted(optim.SCHEDULES) == sorted(optim._SCHEDULE_FNS)
    assert sorted(_choices('train.optimizer')) == sorted(optim.OPTIMIZERS) == sorted(optim._OPTIMIZER_FNS)
    assert sorted(config.CLASS_WEIGHT_METHODS) == sorted(losses.WEIGHT_METHODS)
    # one owner: the modules use fcn.config's tuples themselves
    assert optim.SCHEDULES is config.LR_SCHEDULES and optim.OPTIMIZERS is config.OPTIMIZERS
    assert losses.WEIGHT_METHODS is config.CLASS_WEIGHT_METHODS and tuple(fcn.NUM_SKIPS) == config.MODEL_NAMES


def test_require_names_the_use_the_key_and_the_value():
    cfg = load_config(BASE, ['data.num_classes=21'])
    check = config.nullable(config.one_of(1000))
    with pytest.raises(ConfigError, match=r'ImageNet needs data.num_classes to be null or one of 1000, got 21'):
        config.require(cfg, 'data.num_classes', check, 'ImageNet')
    config.require(load_config(BASE), 'data.num_classes', check, 'ImageNet')
