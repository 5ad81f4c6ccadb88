"""The shipped configs: each loads, and the FCN-32s -> 16s -> 8s recipes start from each other's runs."""
import glob
import os

import pytest

from fcn.config import load_config
from fcn.nets import fcn
from pipeline_fixtures import REPO_ROOT

CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.yaml')))


def _load(name):
    return load_config(os.path.join(REPO_ROOT, 'configs', name))


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_every_config_loads(path):
    cfg = load_config(path)
    assert cfg.model.name in fcn.NUM_SKIPS


def test_the_recipes_chain_32s_16s_8s():
    voc, voc16, voc8 = _load('voc.yaml'), _load('voc-fcn16s.yaml'), _load('voc-fcn8s.yaml')
    assert (voc.model.name, voc16.model.name, voc8.model.name) == ('fcn32s', 'fcn16s', 'fcn8s')
    assert voc16.init.checkpoint == voc.train.run_dir
    assert voc8.init.checkpoint == voc16.train.run_dir
    assert len({voc.train.run_dir, voc16.train.run_dir, voc8.train.run_dir}) == 3
    assert voc16.data == voc.data and voc8.data == voc.data


def test_coco_recipe_reads_the_voc20_records():
    cfg = _load('coco-fcn32s.yaml')
    assert cfg.data.dir == 'data/coco-voc' and cfg.model.name == 'fcn32s'
    assert cfg.init.checkpoint.endswith('vgg_16.ckpt') and 'vgg_16/fc8' in cfg.init.exclude_scopes
