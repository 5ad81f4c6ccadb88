"""fcn.options: the config turned into the option values the layers below take."""
import dataclasses
import os

import pytest

from fcn import losses, optim, options
from fcn.config import load_config
from fcn.data.info import DatasetInfo, SplitInfo
from fcn.input.preprocess import AugmentOptions
from fcn.input.provider import InputOptions
from fcn.nets.fcn import ModelOptions
from pipeline_fixtures import REPO_ROOT

INFO = DatasetInfo(source='synthetic', num_classes=3, class_names=('a', 'b', 'c'),
                   palette=((0, 0, 0), (1, 1, 1), (2, 2, 2)), ignore_label=255,
                   splits={'train': SplitInfo(4, class_pixel_counts=(10, 30, 60),
                                              class_present_pixel_counts=(100, 100, 100))})


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'empty.yaml'
    path.write_text('{}\n')
    return load_config(str(path))


def test_the_value_types_defaults_are_base_yaml_s(base):
    """The frozen values carry defaults for tests and library callers: they are base.yaml's."""
    train = options.training(base, INFO)
    assert train.model == ModelOptions()
    assert train.augment == AugmentOptions(crop_size=(320, 320))
    assert train.input == InputOptions()
    assert train.loss == losses.LossOptions()
    assert train.optimizer == optim.OptimizerOptions('momentum')
    assert train.gradients == optim.GradientOptions()
    assert train.schedule == optim.Schedule('poly', 0.0001, 20000)


def test_every_key_of_the_converted_sections_reaches_a_value(base):
    cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'demo.yaml'), [
        'model.name=fcn8s', 'model.upsample=fixed', 'model.skip_scaling=true', 'train.crop_size=[64, 96]',
        'augment.hue=0.1', 'data.num_readers=3', 'train.deterministic=true', 'train.seed=7',
        'train.lr_multipliers=[[vgg_16/fc8, 10]]', 'train.clip_gradient_norm=5', 'train.optimizer=adam',
        'loss.class_weights=median_frequency', 'loss.top_k_percent=0.5', 'loss.hard_mining_anneal_steps=9',
        'loss.terms=[{name: focal, weight: 2, gamma: 1}, {name: dice}]'])
    train = options.training(cfg, INFO)
    assert (train.model.name, train.model.upsample, train.model.skip_scaling) == ('fcn8s', 'fixed', True)
    assert train.augment.crop_size == (64, 96) and train.augment.hue == 0.1
    assert (train.input.num_readers, train.input.deterministic, train.input.seed) == (3, True, 7)
    assert train.gradients == optim.GradientOptions(5.0, (('vgg_16/fc8', 10.0),), 1.0)
    assert train.optimizer.name == 'adam'
    assert train.loss == losses.LossOptions(
        terms=(losses.LossTerm('focal', 2.0, gamma=1.0), losses.LossTerm('dice', 1.0)),
        class_weights=pytest.approx((3.0, 1.0, 0.5)), top_k_percent=0.5, hard_mining_anneal_steps=9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.model.width = 2.0
