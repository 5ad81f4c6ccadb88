"""A plain, non-editable `pip install .` ships the whole tool: the wheel holds base.yaml and every
shipped recipe, configs load from the unpacked wheel away from the repository, and the wheel
installed into a fresh venv gives console scripts that build the demo's records and train a few
steps from another folder, naming the recipe by its bare name."""
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
    for folder in ('fcn', 'configs'):  # configs/: fcn/configs links to it
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
    return site, names, root / 'dist' / wheels[0]


def test_wheel_holds_the_schema_as_a_file_equal_to_configs_base_yaml(unpacked_wheel):
    site, names, _ = unpacked_wheel
    assert 'fcn/configs/base.yaml' in names
    packaged = site / 'fcn' / 'configs' / 'base.yaml'
    assert not os.path.islink(packaged)
    with open(os.path.join(REPO_ROOT, 'configs', 'base.yaml'), 'rb') as f:
        assert packaged.read_bytes() == f.read()


def test_configs_load_with_the_installed_package_outside_the_repo(unpacked_wheel, tmp_path):
    site, _, _ = unpacked_wheel
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


def test_wheel_holds_every_shipped_recipe(unpacked_wheel):
    _, names, _ = unpacked_wheel
    shipped = sorted(os.listdir(os.path.join(REPO_ROOT, 'configs')))
    for name in shipped:
        if name == 'cluster':
            for inner in os.listdir(os.path.join(REPO_ROOT, 'configs', 'cluster')):
                assert 'fcn/configs/cluster/' + inner in names
        else:
            assert 'fcn/configs/' + name in names
    assert 'demo.yaml' in shipped and 'voc.yaml' in shipped


CONSOLE_SCRIPTS = ('fcn-train', 'fcn-eval', 'fcn-export', 'fcn-build-records', 'fcn-predict', 'fcn-browse-dataset',
                   'fcn-fetch')


@pytest.fixture(scope='module')
def wheel_venv(unpacked_wheel, tmp_path_factory):
    """A fresh venv with the wheel installed (pip install --no-deps, offline). Its dependencies
    (TensorFlow...) come from this test's environment through a path entry: copying 600 MB of
    TensorFlow would only test pip. The editable install of the repository is not on that path
    (its import hook is a .pth that a plain path entry does not run), so `fcn` is the wheel's."""
    _, _, wheel = unpacked_wheel
    venv = tmp_path_factory.mktemp('venv') / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True, timeout=120)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    clean = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}  # no other fcn in sight
    run = subprocess.run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index',
                          '-q', str(wheel)], cwd=str(venv.parent), env=clean, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert os.path.isdir(os.path.join(site, 'fcn')), run.stdout + run.stderr  # installed, not "already satisfied"
    deps = [p for p in sys.path if p.endswith('site-packages')]  # after the install: pip must not see them
    with open(os.path.join(site, 'deps.pth'), 'w') as f:
        f.write('\n'.join(deps) + '\n')
    return venv


def test_console_scripts_build_the_demo_and_train_from_another_folder(wheel_venv, tmp_path):
    bin_dir = wheel_venv / 'bin'
    for name in CONSOLE_SCRIPTS:
        assert (bin_dir / name).is_file(), name
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PATH=str(bin_dir) + os.pathsep + os.environ['PATH'])
    env.pop('PYTHONPATH', None)  # nothing of the repository
    work = tmp_path / 'elsewhere'
    work.mkdir()

    def tool(*args):
        result = subprocess.run(list(args), cwd=str(work), env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    where = tool(str(bin_dir / 'python'), '-c', 'import fcn; print(fcn.__file__)').stdout.strip()
    assert where.startswith(str(wheel_venv)), where
    tool('fcn-build-records', '--dataset', 'synthetic', '--out', 'data/demo', '--num_train', '8', '--num_val', '2',
         '--size', '64', '--num_workers', '1', '--no_progress')
    assert (work / 'data' / 'demo' / 'summary.json').is_file()
    tool('fcn-train', '--config', 'demo.yaml', '--set', 'train.steps=3', '--set', 'train.crop_size=64',
         '--set', 'train.batch_size=2', '--set', 'model.name=fcn32s', '--set', 'train.warmup_steps=0',
         '--set', 'train.log_every_steps=1')
    assert any(name.startswith('model.ckpt-3') for name in os.listdir(work / 'runs' / 'demo'))
    assert os.path.isfile(work / 'runs' / 'demo' / 'config.yaml')


def test_an_unknown_bare_config_name_lists_the_shipped_ones(wheel_venv, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    env.pop('PYTHONPATH', None)
    result = subprocess.run([str(wheel_venv / 'bin' / 'fcn-train'), '--config', 'vocc.yaml'], cwd=str(tmp_path),
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith('error: config file not found: vocc.yaml'), result.stderr
    assert 'demo.yaml' in result.stderr and 'voc.yaml' in result.stderr and 'Traceback' not in result.stderr


def test_wheel_ships_the_seg11valid_list(unpacked_wheel):
    """build_tfrecords.py --splits seg11valid reads it from the installed package."""
    site, names, _ = unpacked_wheel
    assert 'fcn/data/seg11valid.txt' in names
    with open(os.path.join(REPO_ROOT, 'fcn', 'data', 'seg11valid.txt'), 'rb') as f:
        assert (site / 'fcn' / 'data' / 'seg11valid.txt').read_bytes() == f.read()
