"""A plain, non-editable `pip install .` ships the config schema: the wheel holds base.yaml and
configs load from the unpacked wheel, away from the repository."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from pipeline_fixtures import REPO_ROOT

BUILD_FILES = ('setup.cfg', 'pyproject.toml', 'README.md')


@pytest.fixture(scope='module')
def unpacked_wheel(tmp_path_factory):
    """Builds the wheel offline from a copy of the sources (no build/ or egg-info in the repo)."""
    root = tmp_path_factory.mktemp('wheel')
    src = root / 'src'
    src.mkdir()
    for name in BUILD_FILES:
        shutil.copy(os.path.join(REPO_ROOT, name), src / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for folder in ('fcn', 'configs'):  # configs/: fcn/configs/base.yaml links into it
        shutil.copytree(os.path.join(REPO_ROOT, folder), src / folder, symlinks=True, ignore=ignore)
    run = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                          '--no-index', '-q', '-w', str(root / 'dist'), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    wheels = os.listdir(root / 'dist')
    assert len(wheels) == 1, wheels
    site = root / 'site'
    with zipfile.ZipFile(root / 'dist' / wheels[0]) as wheel:
        names = wheel.namelist()
        wheel.extractall(site)
    return site, names


def test_wheel_holds_the_schema_as_a_file_equal_to_configs_base_yaml(unpacked_wheel):
    site, names = unpacked_wheel
    assert 'fcn/configs/base.yaml' in names
    packaged = site / 'fcn' / 'configs' / 'base.yaml'
    assert not os.path.islink(packaged)
    with open(os.path.join(REPO_ROOT, 'configs', 'base.yaml'), 'rb') as f:
        assert packaged.read_bytes() == f.read()


def test_configs_load_with_the_installed_package_outside_the_repo(unpacked_wheel, tmp_path):
    site, _ = unpacked_wheel
    own = tmp_path / 'mine.yaml'
    own.write_text('train:\n  steps: 7\n')
    code = ('import fcn, sys\n'
            'from fcn.config import load_config\n'
            'assert fcn.__file__.startswith(sys.argv[1]), fcn.__file__\n'
            'print(load_config(sys.argv[2]).train.steps, load_config(sys.argv[3]).model.width)\n')
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, '-c', code, str(site), str(own),
                          os.path.join(REPO_ROOT, 'configs', 'demo.yaml')],
                         cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with open(os.path.join(REPO_ROOT, 'configs', 'demo.yaml')) as f:
        demo_width = yaml.safe_load(f)['model']['width']  # demo.yaml's own value, through base.yaml
    assert run.stdout.split() == ['7', str(demo_width)]
