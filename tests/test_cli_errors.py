"""User mistakes end in one `error:` line naming the culprit, exit code 2, no traceback."""
import pytest

from pipeline_fixtures import run_script


def assert_user_error(run, *fragments):
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert 'Traceback' not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr[-2000:]


def test_train_with_missing_records_names_the_folder(tmp_path):
    missing = str(tmp_path / 'no-records')
    run = run_script('train.py', '--config', 'configs/demo.yaml', '--set', 'data.dir=%s' % missing,
                     '--set', 'train.run_dir=%s' % (tmp_path / 'run'))
    assert_user_error(run, 'error:', 'no-records', 'summary.json')


@pytest.mark.parametrize('script', ['train.py', 'eval.py', 'export.py'])
def test_unknown_key_suggests_the_right_one(script):
    extra = ['--out', 'unused.pb'] if script == 'export.py' else []
    run = run_script(script, '--config', 'configs/demo.yaml', '--set', 'train.stpes=3', *extra)
    assert_user_error(run, "unknown key 'train.stpes'", "did you mean 'train.steps'")


def test_a_bad_value_names_key_what_is_valid_and_value():
    run = run_script('train.py', '--config', 'configs/demo.yaml', '--set', 'train.crop_size=[96, 100]')
    assert_user_error(run, 'error: --set: train.crop_size must be a positive multiple of 32, or [height, width] '
                           'of such (e.g. 512 or [512, 1024]), got [96, 100]')


def test_eval_without_checkpoint(tmp_path):
    run = run_script('eval.py', '--config', 'configs/demo.yaml', '--once',
                     '--set', 'train.run_dir=%s' % (tmp_path / 'empty'))
    assert_user_error(run, 'no checkpoint found', 'empty')


def test_predict_with_missing_model_and_image(tmp_path):
    run = run_script('predict.py', '--model', str(tmp_path / 'model.pb'), '--out', str(tmp_path / 'o'),
                     str(tmp_path / 'cat.jpg'))
    assert_user_error(run, 'cat.jpg')
    image = tmp_path / 'img.jpg'
    image.write_bytes(b'\xff\xd8 not really a jpeg')
    run = run_script('predict.py', '--model', str(tmp_path / 'model.pb'), '--out', str(tmp_path / 'o'), str(image))
    assert_user_error(run, 'model.pb')


def test_errors_come_alone_without_tensorflow_start_up_noise(tmp_path):
    """TF_CPP_MIN_LOG_LEVEL unset, as a user's shell has it: the one line is all of stderr."""
    run = run_script('eval.py', '--config', 'configs/demo.yaml', '--once',
                     '--set', 'train.run_dir=%s' % (tmp_path / 'empty'), env={'TF_CPP_MIN_LOG_LEVEL': '0'})
    assert run.returncode == 2
    assert run.stderr.splitlines() == [run.stderr.strip()] and run.stderr.startswith('error: no checkpoint found')


def test_build_tfrecords_and_the_launcher_print_errors_and_honour_verbose_through_fcn_cli(tmp_path):
    """One entry-point style: their errors are one `error: ...` line with exit code 2 (fcn.cli),
    and --verbose is fcn.cli's flag, with no FCN_VERBOSE literal or error exit of their own."""
    import os
    import subprocess
    import sys

    from pipeline_fixtures import REPO_ROOT
    result = run_script('build_tfrecords.py', '--verify', str(tmp_path / 'missing'))
    assert result.returncode == 2 and result.stderr.strip() == 'error: --verify %s: not a folder' % (
        tmp_path / 'missing')
    launched = subprocess.run([sys.executable, '-m', 'fcn.launch', '--config', 'configs/demo.yaml', '--set',
                               'train.stepz=3', '--verbose'], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert launched.returncode == 2
    assert launched.stderr.strip().startswith("error: --set: unknown key 'train.stepz'"), launched.stderr
    for module in ('fcn/tools/build_records.py', 'fcn/launch.py'):
        with open(os.path.join(REPO_ROOT, module)) as f:
            source = f.read()
        assert 'FCN_VERBOSE' not in source and "print('error" not in source and 'cli.add_verbose_arg' in source
