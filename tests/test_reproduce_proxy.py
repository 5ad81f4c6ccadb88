"""bench/reproduce_proxy.py scales each recipe family as the issue asks: the shipped recipe with
its optimizer, momentum, loss normalisation, batch and learning rates relative to its FCN-32s
stage; only width, crop, data and step counts scaled. A control stage is the previous net on
the next stage's solver. (The runs themselves are a benchmark: BENCHMARKS.md.)"""
import importlib.util
import os
from types import SimpleNamespace

import pytest

from fcn.config import load_config
from pipeline_fixtures import REPO_ROOT

spec = importlib.util.spec_from_file_location('reproduce_proxy', os.path.join(REPO_ROOT, 'bench', 'reproduce_proxy.py'))
proxy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proxy)

SOLVER_KEYS = ('optimizer', 'momentum', 'loss_normalization', 'batch_size', 'lr_schedule', 'weight_decay')


def _args(**kwargs):
    defaults = dict(lr32=1e-7, steps32=4000, width=0.125, size=96, seed=0, lr_factor=[], set=[])
    return SimpleNamespace(**dict(defaults, **kwargs))


def _solver(cfg):
    return dict(optimizer=cfg.train.optimizer, momentum=cfg.train.momentum, batch_size=cfg.train.batch_size,
                loss_normalization=cfg.loss.normalization, lr_schedule=cfg.train.lr_schedule,
                weight_decay=cfg.model.weight_decay, bias_lr=cfg.train.bias_lr_multiplier,
                upsample=cfg.model.upsample, skip_scaling=cfg.model.skip_scaling)


@pytest.mark.parametrize('family', sorted(proxy.FAMILIES))
def test_each_stage_is_its_recipe_scaled(family, tmp_path):
    stages = proxy.FAMILIES[family]
    args = _args()
    base32 = load_config(os.path.join(REPO_ROOT, 'configs', stages[0][1]))
    for stage, recipe, previous, net in stages:
        shipped = load_config(os.path.join(REPO_ROOT, 'configs', recipe))
        cfg = proxy.stage_config(recipe, args, str(tmp_path), str(tmp_path / stage), str(tmp_path / 'init'), net,
                                 stages)
        assert _solver(cfg) == _solver(shipped)
        assert cfg.model.name == (net or shipped.model.name)
        ratio = cfg.train.learning_rate / args.lr32
        assert ratio == pytest.approx(shipped.train.learning_rate / base32.train.learning_rate, rel=1e-6), stage
        assert cfg.train.steps == round(args.steps32 * shipped.train.steps / base32.train.steps)
        assert (cfg.train.crop_size, cfg.model.width, cfg.init.checkpoint) == (96, 0.125, str(tmp_path / 'init'))
    named = {stage: (recipe, previous, net) for stage, recipe, previous, net in stages}
    # a control runs the previous stage's net on the next stage's recipe, from the same start
    for stage, control in proxy.CONTROL_OF.items():
        recipe, previous, _ = named[stage]
        assert named[control] == (recipe, previous, previous)


def test_caffe_family_keeps_caffes_relative_rates():
    """1, 1/100, 1/10,000 (1e-10, 1e-12, 1e-14), at-once 1 for 3x the steps."""
    stages = proxy.FAMILIES['caffe']
    lrs = {stage: proxy.stage_config(recipe, _args(), '/d', '/r', '/i', net, stages).train.learning_rate
           for stage, recipe, _, net in stages}
    assert lrs['fcn16s'] / lrs['fcn32s'] == pytest.approx(1e-2)
    assert lrs['fcn8s'] / lrs['fcn32s'] == pytest.approx(1e-4)
    assert lrs['fcn8s-atonce'] == lrs['fcn32s']


def test_gains_are_over_the_start_and_over_the_control():
    results = [dict(stage=stage, miou=miou) for stage, miou in (
        ('fcn32s', 0.40), ('fcn32s-continued', 0.42), ('fcn16s', 0.47), ('fcn16s-continued', 0.48),
        ('fcn8s', 0.50), ('fcn8s-atonce', 0.49))]
    gains = proxy.gains(results, proxy.FAMILIES['caffe'])
    assert gains['fcn16s'] == pytest.approx((7.0, 5.0))
    assert gains['fcn8s'] == pytest.approx((3.0, 2.0))
    assert gains['fcn32s-continued'][0] == pytest.approx(2.0) and gains['fcn32s-continued'][1] is None
    assert 'fcn8s-atonce' not in gains  # it starts from the seed, not from a stage


def test_an_experiment_changes_only_its_stage():
    stages = proxy.FAMILIES['deeplab']
    args = _args(set=[('fcn8s-atonce', 'model.skip_scaling=false')])
    configs = {stage: proxy.stage_config(recipe, args, '/d', '/r', '/i', net, stages)
               for stage, recipe, _, net in stages}
    assert configs['fcn8s-atonce'].model.skip_scaling is False
    shipped = load_config(os.path.join(REPO_ROOT, 'configs', 'voc-fcn8s-atonce.yaml'))
    assert shipped.model.skip_scaling is True
    assert not any(cfg.model.skip_scaling for cfg in configs.values())


def test_a_learning_rate_experiment_leaves_the_control_alone():
    stages = proxy.FAMILIES['caffe']
    args = _args(lr_factor=[('fcn8s', 100.0)])
    lrs = {stage: proxy.stage_config(recipe, args, '/d', '/r', '/i', net, stages).train.learning_rate
           for stage, recipe, _, net in stages}
    assert lrs['fcn8s'] == pytest.approx(1e-7 * 1e-4 * 100)
    assert lrs['fcn16s-continued'] == pytest.approx(1e-7 * 1e-4)  # the control runs the recipe as shipped
    assert proxy.experiments('fcn8s', None, args) == ['learning rate x 100']
    assert proxy.experiments('fcn16s-continued', 'fcn16s', args) == []


def test_a_misspelt_stage_is_refused_naming_it():
    """A typo in --set / --lr_factor / --stages would otherwise run the recipes unchanged."""
    args = _args(family='deeplab', stages='fcn32s,fcn8s-atonce', set=[('fcn8-atonce', 'model.skip_scaling=false')],
                 lr_factor=[('fcn16s-continued', 10.0)])
    errors = proxy.unknown_stages(args)
    assert len(errors) == 2
    assert errors[0].startswith("--set: 'fcn8-atonce' is not a recipe stage of --family deeplab")
    assert errors[1].startswith("--lr_factor: 'fcn16s-continued' is not a recipe stage")  # a control takes none
    assert proxy.unknown_stages(_args(family='caffe', stages='fcn32s,fcn16s', set=[], lr_factor=[])) == []
    assert proxy.unknown_stages(_args(family='caffe', stages='fcn32', set=[], lr_factor=[])) == [
        "--stages: 'fcn32' is not a stage of --family caffe (one of fcn32s, fcn32s-continued, fcn16s, "
        "fcn16s-continued, fcn8s, fcn8s-atonce)"]


def test_the_command_line_refuses_a_misspelt_stage_before_any_work(tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'bench', 'reproduce_proxy.py'), '--family', 'caffe',
                          '--set', 'fcn8-atonce:model.skip_scaling=false', '--workdir', str(tmp_path / 'work')],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "--set: 'fcn8-atonce' is not a recipe stage of --family caffe" in run.stderr
    assert 'Traceback' not in run.stderr
    assert not (tmp_path / 'work').exists()  # nothing built or trained
