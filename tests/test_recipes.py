"""The shipped configs: each loads; the recipes' headers agree with docs/recipes.md's table; the
staged recipes start from each other's runs and their total step is within 2x of Caffe's for the
same stage; the Caffe-protocol recipes are Caffe's solver literally."""
import glob
import os
import re

import pytest

from fcn import recipes
from fcn.config import load_config
from fcn.nets import fcn
from pipeline_fixtures import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.yaml')))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs')
RECIPES = recipes.recipes(CONFIG_DIR)
STAGED = [(name, facts) for name, facts in RECIPES if facts.get('caffe_stage', 'none') != 'none']
DOC = os.path.join(REPO_ROOT, 'docs', 'recipes.md')


def _load(name):
    return load_config(os.path.join(CONFIG_DIR, name))


def _between(text, what):
    match = re.search(r'<!-- BEGIN %s .*?-->\n(.*?)<!-- END %s -->' % (what, what), text, re.S)
    assert match, 'docs/recipes.md lacks the %s markers' % what
    return match.group(1)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.name in fcn.NUM_SKIPS


def test_docs_table_is_the_recipe_headers():
    """One place for a recipe's facts: docs/recipes.md holds `python -m fcn.recipes`'s output."""
    with open(DOC) as f:
        text = f.read()
    assert _between(text, 'recipes') == recipes.table(CONFIG_DIR)
    assert _between(text, 'upsampling') == recipes.upsampling_table()


def test_every_published_row_has_a_recipe():
    references = {facts['reference'].split(' (')[0] for _, facts in RECIPES}
    for row in ('FCN-32s 63.6 mIoU', 'FCN-16s 65.0 mIoU', 'FCN-8s 65.5 mIoU', 'FCN-8s at-once 65.4 mIoU',
                'FCN-32s 61.3 class IoU on test', 'FCN-16s 64.3 class IoU on test', 'FCN-8s 65.3 class IoU on test',
                'FCN-8s 29.39 mIoU, 71.32% pixel accuracy on val'):
        assert row in references, row
    protocols = {facts['protocol'] for _, facts in RECIPES}
    assert {'VOC, Caffe (sbd_train -> seg11valid)', 'VOC, DeepLab-style (train_aug -> val)'} <= protocols


def test_a_header_missing_a_fact_is_an_error(tmp_path):
    path = tmp_path / 'x.yaml'
    path.write_text('# protocol: p\n# reference: r\n# gpu_time: g\nbase: base.yaml\n')
    with pytest.raises(recipes.RecipeError, match='lacks # source:'):
        recipes.header(str(path))
    path.write_text('# protocol: p\n# reference: r\n# source: s\n# gpu_time: g\n# caffe_stage: fcn4s\n')
    with pytest.raises(recipes.RecipeError, match="caffe_stage must be one of .* got 'fcn4s'"):
        recipes.header(str(path))


def test_caffe_total_steps():
    assert recipes.caffe_total_step('fcn32s') == pytest.approx(187.5)
    assert recipes.caffe_total_step('fcn16s') == pytest.approx(1.875)
    assert recipes.caffe_total_step('fcn8s') == pytest.approx(0.01875)
    assert recipes.caffe_total_step('fcn8s-atonce') == pytest.approx(562.5)
    assert recipes.mean_schedule_factor('poly', 0.9) == pytest.approx(1 / 1.9)


@pytest.mark.parametrize('name, facts', STAGED, ids=[n for n, _ in STAGED])
def test_total_step_within_2x_of_caffe_and_written_in_the_header(name, facts):
    """Total step = lr on the mean loss x steps x mean schedule factor / (1 - momentum), from the
    resolved config; a staged recipe's (FCN-16s, FCN-8s) within 2x of Caffe's for its stage; the
    header's 'Total step: ... = X' states that number (to the 2-3 digits written)."""
    cfg = _load(name)
    ours, caffe = recipes.config_total_step(cfg), recipes.caffe_total_step(facts['caffe_stage'])
    with open(os.path.join(CONFIG_DIR, name)) as f:
        text = f.read()
    written = re.search(r'^# Total step: .*?= ([0-9.,]+)', text, re.M)
    assert written, '%s: no "# Total step: ... = X" line' % name
    assert float(written.group(1).replace(',', '').rstrip('.')) == pytest.approx(ours, rel=0.01)
    if facts['caffe_stage'] in recipes.BOUND_STAGES or cfg.loss.normalization == 'sum':
        assert 1 / recipes.TOTAL_STEP_BOUND <= ours / caffe <= recipes.TOTAL_STEP_BOUND, (name, ours, caffe)
    else:  # a DeepLab-style FCN-32s / at-once stage is not held to Caffe's: its header says how far short
        stated = re.search(r'^#.*?\(([0-9.]+)x\b', text[written.start():], re.M)
        assert stated and float(stated.group(1)) == pytest.approx(ours / caffe, rel=0.05), (name, ours / caffe)
        assert ours / caffe < 1 / recipes.TOTAL_STEP_BOUND, (name, ours / caffe)
    stage = facts['caffe_stage'].split('-')[0]
    assert cfg.model.name == stage and cfg.model.skip_scaling == facts['caffe_stage'].endswith('atonce')


CHAINS = [('voc-caffe-fcn32s.yaml', 'voc-caffe-fcn16s.yaml', 'voc-caffe-fcn8s.yaml'),
          ('voc.yaml', 'voc-fcn16s.yaml', 'voc-fcn8s.yaml'),
          ('cityscapes.yaml', 'cityscapes-fcn16s.yaml', 'cityscapes-fcn8s.yaml'),
          ('ade20k.yaml', 'ade20k-fcn16s.yaml', 'ade20k-fcn8s.yaml')]


@pytest.mark.parametrize('chain', CHAINS, ids=[c[0] for c in CHAINS])
def test_the_recipes_chain_32s_16s_8s(chain):
    """Each stage starts from the previous stage's run and restores every shared variable
    (init.exclude_scopes: []: make_init_fn lets only fcn.nets.fcn.STAGES' adds be missing)."""
    cfgs = [_load(name) for name in chain]
    assert [c.model.name for c in cfgs] == ['fcn32s', 'fcn16s', 'fcn8s']
    assert cfgs[0].init.checkpoint.endswith('vgg_16.ckpt') and cfgs[0].init.exclude_scopes == ['vgg_16/fc8', 'fcn']
    for previous, cfg in zip(cfgs, cfgs[1:]):
        assert cfg.init.checkpoint == previous.train.run_dir and cfg.init.exclude_scopes == []
        assert fcn.STAGES[cfg.model.name].starts_from == previous.model.name
        assert cfg.data == previous.data and cfg.model.upsample == previous.model.upsample
    assert len({c.train.run_dir for c in cfgs}) == 3


@pytest.mark.parametrize('name', ['voc-caffe-fcn32s.yaml', 'voc-caffe-fcn16s.yaml', 'voc-caffe-fcn8s.yaml',
                                  'voc-caffe-fcn8s-atonce.yaml'])
def test_caffe_protocol_recipes_are_caffes_solver(name):
    cfg = _load(name)
    solver = recipes.CAFFE_SOLVERS[recipes.header(os.path.join(CONFIG_DIR, name))['caffe_stage']]
    assert (cfg.data.train_split, cfg.data.eval_split) == ('sbd_train', 'seg11valid')
    assert cfg.loss.normalization == 'sum' and cfg.train.learning_rate == solver.base_lr
    assert cfg.train.steps == solver.iterations and cfg.train.lr_schedule == 'fixed'
    assert (cfg.train.optimizer, cfg.train.momentum, cfg.train.batch_size) == ('momentum', 0.99, 1)
    assert cfg.train.crop_size >= 500 and cfg.augment.min_scale == cfg.augment.max_scale == 1.0
    assert not cfg.augment.flip and cfg.train.warmup_steps == 0 and cfg.train.accumulate_steps == 1
    assert cfg.train.bias_lr_multiplier == 2.0 and cfg.model.weight_decay == 0.0005
    assert cfg.model.upsample == 'fixed' and cfg.model.dropout_keep_prob == 0.5
    assert cfg.model.skip_scaling == name.endswith('atonce.yaml')


@pytest.mark.parametrize('name', ['coco81-fcn32s.yaml', 'ade20k.yaml', 'ade20k-fcn16s.yaml', 'ade20k-fcn8s.yaml'])
def test_many_class_recipes_do_not_learn_classes_squared(name):
    cfg = _load(name)
    assert cfg.data.num_classes >= 81 and cfg.model.upsample in ('per_class', 'fixed')


def test_upsampling_cost_is_the_models_variables_and_the_issue_arithmetic():
    """Parameters counted from the built nets; FLOP of the learnable 32x layer at 150 classes
    and 512 x 512: 16 x 16 positions x 64 x 64 taps x 150 x 150 pairs x 2 = 47.2 GFLOP."""
    from fcn.compat import tf, tf1
    for name in ('fcn32s', 'fcn8s'):
        for mode in ('learnable', 'per_class', 'fixed'):
            with tf.Graph().as_default():
                fcn.fcn(tf1.placeholder(tf.float32, [1, 64, 64, 3]), 7, name, width=0.0625, upsample=mode)
                count = sum(v.shape.num_elements() for v in tf1.global_variables() if 'upscore' in v.op.name)
            assert recipes.upsampling_cost(name, mode, 7)[0] == count, (name, mode)
    assert recipes.upsampling_cost('fcn32s', 'learnable', 150) == (150 * 150 * 64 * 64, 16 * 16 * 64 * 64 * 150 * 150 * 2)
    assert recipes.upsampling_cost('fcn32s', 'per_class', 150)[1] == 16 * 16 * 64 * 64 * 150 * 2


def test_coco_recipe_reads_the_voc20_records():
    cfg = _load('coco-fcn32s.yaml')
    assert cfg.data.dir == 'data/coco-voc' and cfg.model.name == 'fcn32s'
    assert cfg.init.checkpoint.endswith('vgg_16.ckpt') and 'vgg_16/fc8' in cfg.init.exclude_scopes
