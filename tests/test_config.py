import os

import pytest
import yaml

from fcn.config import ConfigError, load_config, parse_override, save_config


def write(path, data):
    with open(path, 'w') as f:
        yaml.safe_dump(data, f)
    return str(path)


def test_inheritance_chain_child_wins(tmp_path):
    parent = write(tmp_path / 'parent.yaml', {'base': os.path.abspath('configs/base.yaml'),
                                              'train': {'steps': 7, 'batch_size': 3}})
    child = write(tmp_path / 'child.yaml', {'base': 'parent.yaml', 'train': {'steps': 9}})
    cfg = load_config(child)
    assert cfg.train.steps == 9           # child overrides parent
    assert cfg.train.batch_size == 3      # parent overrides base
    assert cfg.train.crop_size == 320     # base default kept
    assert cfg.data.num_classes is None    # base default kept


def test_set_overrides_are_typed():
    cfg = load_config('configs/base.yaml', [
        'train.steps=100', 'train.learning_rate=1e-3', 'augment.flip=false',
        'init.exclude_scopes=[vgg_16/fc8, fcn, other]', 'init.checkpoint=ckpt/vgg_16.ckpt',
        'model.width=1'])
    assert cfg.train.steps == 100 and isinstance(cfg.train.steps, int)
    assert cfg.train.learning_rate == pytest.approx(1e-3) and isinstance(cfg.train.learning_rate, float)
    assert cfg.augment.flip is False
    assert cfg.init.exclude_scopes == ['vgg_16/fc8', 'fcn', 'other']
    assert cfg.init.checkpoint == 'ckpt/vgg_16.ckpt'
    assert isinstance(cfg.model.width, float)


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'train.stpes'.*did you mean 'train.steps'"):
        load_config('configs/base.yaml', ['train.stpes=5'])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = write(tmp_path / 'bad.yaml', {'base': os.path.abspath('configs/base.yaml'),
                                         'model': {'widht': 0.5}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert 'bad.yaml' in str(err.value) and "'model.widht'" in str(err.value)
    assert "'model.width'" in str(err.value)


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match=r'--set: train.steps must be an integer'):
        load_config('configs/base.yaml', ['train.steps=many'])
    with pytest.raises(ConfigError, match=r'augment.flip must be true or false'):
        load_config('configs/base.yaml', ['augment.flip=3'])


def test_malformed_override():
    with pytest.raises(ConfigError, match='KEY=VALUE'):
        parse_override('train.steps')


def test_missing_file_and_loop(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        load_config(str(tmp_path / 'nope.yaml'))
    a = write(tmp_path / 'a.yaml', {'base': 'b.yaml'})
    write(tmp_path / 'b.yaml', {'base': 'a.yaml'})
    with pytest.raises(ConfigError, match='loops'):
        load_config(a)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config('configs/demo.yaml', ['train.steps=3'])
    out = tmp_path / 'run' / 'config.yaml'
    save_config(cfg, str(out))
    again = load_config(str(out))
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize('name', ['base', 'demo', 'voc'])
def test_shipped_configs_load(name):
    load_config('configs/%s.yaml' % name)


def test_base_is_resolved_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / 'parents').mkdir()
    (tmp_path / 'exp').mkdir()
    write(tmp_path / 'parents' / 'common.yaml', {'train': {'steps': 11}})
    write(tmp_path / 'exp' / 'mid.yaml', {'base': '../parents/common.yaml', 'train': {'batch_size': 2}})
    child = write(tmp_path / 'exp' / 'child.yaml', {'base': 'mid.yaml'})
    monkeypatch.chdir(tmp_path / 'parents')  # not the folder of any of them
    cfg = load_config(child)
    assert (cfg.train.steps, cfg.train.batch_size) == (11, 2)


def test_missing_base_names_the_key_and_the_file_that_names_it(tmp_path):
    """A config copied out of configs/ (its `base: base.yaml` no longer beside it)."""
    with open('configs/demo.yaml') as f:
        (tmp_path / 'copy.yaml').write_text(f.read())
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / 'copy.yaml'))
    message = str(err.value)
    assert message.startswith('%s: base: base.yaml not found' % (tmp_path / 'copy.yaml'))
    assert str(tmp_path / 'base.yaml') in message and 'drop the line' in message
    # ... and the fix it suggests works: every config inherits the shipped defaults
    text = (tmp_path / 'copy.yaml').read_text().replace('base: base.yaml\n', '')
    (tmp_path / 'copy.yaml').write_text(text)
    assert load_config(str(tmp_path / 'copy.yaml')).model.width == yaml.safe_load(text)['model']['width']


def test_shipped_schema_is_the_repository_base_yaml():
    from fcn import config
    assert os.path.samefile(config.BASE_CONFIG, 'configs/base.yaml')


def test_a_bare_name_finds_the_shipped_config_unless_the_working_directory_has_that_file(tmp_path, monkeypatch):
    from fcn.config import SHIPPED_DIR, shipped_configs
    monkeypatch.chdir(tmp_path)
    with open(os.path.join(SHIPPED_DIR, 'demo.yaml')) as f:
        shipped_width = yaml.safe_load(f)['model']['width']
    assert load_config('demo.yaml').model.width == shipped_width
    assert load_config('demo').model.width == shipped_width
    (tmp_path / 'demo.yaml').write_text('model:\n  width: 0.5\n')
    assert load_config('demo.yaml').model.width == 0.5  # the working directory's file wins
    assert {'base.yaml', 'demo.yaml', 'voc.yaml'} <= set(shipped_configs())
    with pytest.raises(ConfigError, match=r'config file not found: vocc.yaml \(a shipped config .*voc\.yaml'):
        load_config('vocc.yaml')
