"""A run is what it was trained as (issue 22): eval, export and predict of a run rebuild the
network its config.yaml describes whatever config the command line names, a run trained with
moving averages is evaluated and exported with them, another run's checkpoint is that run,
and an evaluator survives beside a trainer whose rotation deletes checkpoints.

The runs here are trained for a few steps, then their score and upsampling layers are made
random (every other tensor of the checkpoint, EMA shadows included, kept): a few-step run
predicts background nearly everywhere, which would hide a wrongly built network."""
import json
import os
import shutil
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from datasets_fixtures import read_examples
from fcn import browse, eval_lib, export, predict_lib, train_lib
from fcn import run as runs
from fcn.compat import tf, tf1
from fcn.config import ConfigError, load_config
from fcn.data.palette import read_index_png
from fcn.export.common import sidecar_path
from fcn.export.frozen import FrozenModel
from pipeline_fixtures import REPO_ROOT, fake_checkpoint_files, build_synthetic, run_script, tiny_config, tiny_overrides

FCN8S = ['model.name=fcn8s', 'model.width=0.0625', 'train.batch_size=2', 'eval.interval_secs=0']


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=3, size=64)


def _plain(records, run_dir, *extra):
    """The command's config: the demo recipe with the tiny sizes, nothing about skip scaling or EMA."""
    return tiny_config(records, run_dir, steps=3, extra=FCN8S + list(extra))


def _randomise(run_dir, seed=7):
    """Rewrites the run's latest checkpoint as the next step's with random raw fc8 and fcn/
    weights and biases (EMA shadows and everything else kept); returns its prefix."""
    checkpoint = tf1.train.latest_checkpoint(run_dir)
    reader = tf.train.load_checkpoint(checkpoint)
    rng = np.random.RandomState(seed)
    step = int(reader.get_tensor('global_step')) + 1
    with tf.Graph().as_default():
        variables = {}
        for i, name in enumerate(sorted(reader.get_variable_to_shape_map())):
            value = reader.get_tensor(name)
            if name.startswith(('vgg_16/fc8/', 'fcn/')) and name.endswith(('/weights', '/biases')):
                value = rng.normal(0.0, 0.5, value.shape).astype(value.dtype)
            if name == 'global_step':
                value = np.asarray(step, value.dtype)
            variables[name] = tf1.Variable(value, name='v%d' % i)
        saver = tf1.train.Saver(variables, save_relative_paths=True)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return saver.save(sess, os.path.join(run_dir, 'model.ckpt'), global_step=step)


def _trained(records, run_dir, *extra):
    train_lib.train(_plain(records, run_dir, *extra), log=lambda *_: None)
    return _randomise(run_dir)


@pytest.fixture(scope='module')
def skip_run(records, tmp_path_factory):
    """The "at-once" FCN-8s: trained with --set model.skip_scaling=true."""
    run_dir = str(tmp_path_factory.mktemp('skip') / 'run')
    return run_dir, _trained(records, run_dir, 'model.skip_scaling=true')


@pytest.fixture(scope='module')
def ema_run(records, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp('ema') / 'run')
    return run_dir, _trained(records, run_dir, 'train.ema_decay=0.9')


def _own(run_dir, *overrides):
    """The run's own config (its config.yaml), as `eval.py --config RUN_DIR/config.yaml`."""
    return load_config(os.path.join(run_dir, 'config.yaml'), list(overrides))


def _predictions(cfg, checkpoint):
    """{filename: class ids} of the val split with `cfg` as given (no run opened)."""
    return {name: prediction for name, _, prediction in eval_lib.predictions_for_split(cfg, checkpoint)}


def _evaluate(cfg, checkpoint=None):
    lines = []
    results = eval_lib.evaluate_once(cfg, checkpoint, progress=False, log=lines.append)
    return results, lines


def _export(cfg, path, checkpoint=None):
    lines = []
    export.export('frozen', cfg, checkpoint, path, log=lines.append)
    return lines


def _frozen_predictions(path, records):
    model = FrozenModel(path)
    try:
        return {ex['filename']: model.predict(ex['image']) for ex in read_examples(records, 'val')}
    finally:
        model.close()


def _assert_same(predictions, expected):
    assert sorted(predictions) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(predictions[name], expected[name], err_msg=name)


def _differ(a, b):
    return any((a[name] != b[name]).any() for name in a)


# --- the at-once scenario -------------------------------------------------------------------

def test_a_skip_scaling_run_is_evaluated_exported_and_predicted_as_trained(records, skip_run, tmp_path):
    run_dir, checkpoint = skip_run
    plain, own = _plain(records, run_dir), _own(run_dir)
    assert (plain.model.skip_scaling, own.model.skip_scaling) == (False, True)
    trained_as = _predictions(own, checkpoint)
    assert _differ(_predictions(plain, checkpoint), trained_as)  # the unbound network would differ

    results, lines = _evaluate(plain)
    assert lines[0] == 'weights: raw weights of %s' % checkpoint
    assert lines[1] == ('the run in %s was trained with other values than %s: taken from its config.yaml: '
                        'model.skip_scaling true (not false)'
                        % (run_dir, os.path.join(REPO_ROOT, 'configs', 'demo.yaml')))
    own_results, own_lines = _evaluate(own)
    assert not [line for line in own_lines if 'taken from' in line]
    assert results['miou'] == own_results['miou']
    assert results['confusion_matrix'] == own_results['confusion_matrix']

    model_path = str(tmp_path / 'model.pb')
    _export(plain, model_path)
    _assert_same(_frozen_predictions(model_path, records), trained_as)
    with open(sidecar_path(model_path)) as f:
        assert json.load(f)['model']['skip_scaling'] is True

    photos = tmp_path / 'photos'
    photos.mkdir()
    for ex in read_examples(records, 'val'):
        (photos / (ex['filename'] + '.jpg')).write_bytes(ex['image_bytes'])
    out = tmp_path / 'out'
    list(predict_lib.predict_files(model_path, [str(photos)], str(out)))
    _assert_same({name: read_index_png(str(out / (name + '.png'))) for name in trained_as}, trained_as)


def test_eval_and_export_py_with_the_plain_config_say_what_the_run_decided(records, skip_run, tmp_path):
    run_dir, checkpoint = skip_run
    overrides = [arg for o in tiny_overrides(records, run_dir, steps=3) + FCN8S for arg in ('--set', o)]
    result = run_script('export.py', '--config', 'configs/demo.yaml', '--out', str(tmp_path / 'm.pb'), *overrides)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'weights: raw weights of %s' % checkpoint
    assert lines[1].endswith('taken from its config.yaml: model.skip_scaling true (not false)')


def test_a_set_of_a_run_bound_key_that_disagrees_is_an_error(records, skip_run, tmp_path):
    run_dir, _ = skip_run
    overrides = tiny_overrides(records, run_dir, steps=3) + FCN8S + ['model.skip_scaling=false']
    args = [arg for o in overrides for arg in ('--set', o)]
    for script, extra in (('eval.py', ['--once']), ('export.py', ['--out', str(tmp_path / 'm.pb')])):
        result = run_script(script, '--config', 'configs/demo.yaml', *extra, *args)
        assert result.returncode == 2, (script, result.stderr)
        assert result.stderr.strip() == (
            'error: --set model.skip_scaling=false disagrees with the run in %s, trained with model.skip_scaling: '
            'true (%s); drop the override, or use another train.run_dir'
            % (run_dir, os.path.join(run_dir, 'config.yaml')))
    assert not os.path.exists(tmp_path / 'm.pb')
    with pytest.raises(ConfigError, match=r'--set train.ema_decay=0.5 disagrees .* eval.moving_averages: false'):
        eval_lib.evaluate_once(_plain(records, run_dir, 'train.ema_decay=0.5'), progress=False)


# --- moving averages ------------------------------------------------------------------------

def test_an_ema_run_is_evaluated_and_exported_with_its_moving_averages_by_default(records, ema_run, tmp_path):
    run_dir, checkpoint = ema_run
    plain = _plain(records, run_dir)
    assert plain.train.ema_decay == 0.0
    averaged = _predictions(_own(run_dir), checkpoint)
    raw = _predictions(_own(run_dir, 'eval.moving_averages=false'), checkpoint)
    assert _differ(averaged, raw)  # the random raw layers vs the trained shadows

    results, lines = _evaluate(plain)
    assert lines[0] == 'weights: moving averages (train.ema_decay 0.9) of %s' % checkpoint
    assert 'train.ema_decay 0.9 (not 0.0)' in lines[1]
    assert results['confusion_matrix'] == _evaluate(_own(run_dir))[0]['confusion_matrix']
    raw_results, raw_lines = _evaluate(_plain(records, run_dir, 'eval.moving_averages=false'))
    assert raw_lines[0] == 'weights: raw weights of %s (eval.moving_averages false)' % checkpoint
    raw_own, _ = _evaluate(_own(run_dir, 'eval.moving_averages=false'))
    assert raw_results['confusion_matrix'] == raw_own['confusion_matrix']
    assert raw_results['confusion_matrix'] != results['confusion_matrix']

    averaged_path, raw_path = str(tmp_path / 'ema.pb'), str(tmp_path / 'raw.pb')
    assert _export(plain, averaged_path)[0] == 'weights: moving averages (train.ema_decay 0.9) of %s' % checkpoint
    _export(_plain(records, run_dir, 'eval.moving_averages=false'), raw_path)
    _assert_same(_frozen_predictions(averaged_path, records), averaged)
    _assert_same(_frozen_predictions(raw_path, records), raw)
    for path, ema in ((averaged_path, True), (raw_path, False)):
        with open(sidecar_path(path)) as f:
            assert json.load(f)['ema'] is ema


# --- another run's checkpoint ---------------------------------------------------------------

def _snapshot(folder):
    """{relative path: (bytes, mtime_ns)} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                files[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return files


def test_another_runs_checkpoint_is_that_run(records, skip_run, ema_run, tmp_path):
    run_a, run_b = str(tmp_path / 'a'), str(tmp_path / 'b')
    shutil.copytree(ema_run[0], run_a)
    shutil.copytree(skip_run[0], run_b, ignore=shutil.ignore_patterns('eval', 'best'))
    checkpoint_b = os.path.join(run_b, os.path.basename(skip_run[1]))
    config_a = _own(run_a)  # ema_decay 0.9, no skip scaling: B was trained otherwise
    config_a.train.run_dir = run_a
    before = _snapshot(run_a)
    b_as_trained = _predictions(_own(run_b), checkpoint_b)

    for source in (run_b, checkpoint_b):
        results, lines = _evaluate(config_a, source)
        assert lines[0] == 'weights: raw weights of %s' % checkpoint_b  # B has no moving averages
        assert 'model.skip_scaling true (not false), train.ema_decay 0.0 (not 0.9)' in lines[1]
        assert lines[2] == ('%s belongs to the run in %s: its config.yaml and dataset.json decide the network and '
                            'the classes, and the results go to %s' % (source, run_b, os.path.join(run_b, 'eval')))
        with open(os.path.join(run_b, 'eval', 'latest.json')) as f:
            assert json.load(f)['confusion_matrix'] == results['confusion_matrix']
    assert _snapshot(run_a) == before
    assert runs.Run(run_b).read_best()['source'] == checkpoint_b  # best/ of the run owning it

    best_checkpoint = runs.Run(run_b).read_best()['checkpoint']
    best_before = _snapshot(os.path.join(run_b, 'best'))
    results, lines = _evaluate(config_a, best_checkpoint)  # best/ belongs to B too, and is not copied onto itself
    assert 'belongs to the run in %s' % run_b in lines[2]
    assert _snapshot(os.path.join(run_b, 'best')) == best_before
    assert _snapshot(run_a) == before

    model_path = str(tmp_path / 'b.pb')
    _export(config_a, model_path, checkpoint_b)
    _assert_same(_frozen_predictions(model_path, records), b_as_trained)
    assert _snapshot(run_a) == before

    # configs/coco-fcn32s.yaml's suggestion: eval.checkpoint names the other run (evaluated once)
    os.remove(os.path.join(run_b, 'eval', 'latest.json'))
    result = run_script('eval.py', '--config', os.path.join(run_a, 'config.yaml'), '--set', 'train.run_dir=%s' % run_a,
                        '--set', 'eval.checkpoint=%s' % run_b)
    assert result.returncode == 0, result.stderr
    assert 'belongs to the run in %s' % run_b in result.stdout
    assert os.path.isfile(os.path.join(run_b, 'eval', 'latest.json'))
    assert _snapshot(run_a) == before


def test_a_bare_checkpoint_takes_the_configs_model_keys(records, skip_run, tmp_path):
    """A checkpoint with no run beside it (a converted file, vgg_16.ckpt) is built as the config says."""
    bare_dir = tmp_path / 'converted'
    bare_dir.mkdir()
    for path in tf.io.gfile.glob(skip_run[1] + '.*'):
        shutil.copy(path, str(bare_dir))
    bare = str(bare_dir / os.path.basename(skip_run[1]))
    cfg = _plain(records, str(tmp_path / 'run'), 'model.skip_scaling=true')
    results, lines = _evaluate(cfg, bare)
    assert lines[0] == 'weights: raw weights of %s' % bare
    assert not [line for line in lines if 'taken from' in line or 'belongs to' in line]
    assert os.path.isfile(os.path.join(str(tmp_path / 'run'), 'eval', 'latest.json'))
    assert not os.path.exists(os.path.join(str(tmp_path / 'run'), 'best'))  # not this run's checkpoint


# --- an evaluator beside a trainer ----------------------------------------------------------

def test_a_checkpoint_deleted_between_found_and_read_is_skipped(records, skip_run, tmp_path, monkeypatch):
    """The worst moment of training's rotation, made certain: the loop finds model.ckpt-N, and
    its files are deleted (as the trainer's Saver does) before the restore reads them."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(skip_run[0], run_dir, ignore=shutil.ignore_patterns('eval', 'best'))
    final = tf1.train.latest_checkpoint(run_dir)  # the randomised step 4; training's step 3 is there too
    older = os.path.join(run_dir, 'model.ckpt-%d' % (int(final.rsplit('-', 1)[1]) - 1))
    assert tf.io.gfile.exists(older + '.index')
    tf1.train.update_checkpoint_state(run_dir, older, all_model_checkpoint_paths=[older])
    found = runs.Run.latest_checkpoint

    def rotating(self):
        checkpoint = found(self)
        if checkpoint and checkpoint.endswith(os.path.basename(older)):
            for path in tf.io.gfile.glob(checkpoint + '.*'):
                os.remove(path)  # rotated away...
            tf1.train.update_checkpoint_state(run_dir, final, all_model_checkpoint_paths=[final])  # ...for the next
        return checkpoint
    monkeypatch.setattr(runs.Run, 'latest_checkpoint', rotating)
    messages = []
    cfg = _plain(records, run_dir, 'train.steps=%d' % int(final.rsplit('-', 1)[1]))
    assert eval_lib.evaluate_loop(cfg, progress=False, log=messages.append) == 1
    assert ('skipped %s: deleted by training\'s rotation (train.keep_checkpoints) before it was read; '
            'going on with the newest' % os.path.join(run_dir, os.path.basename(older))) in messages
    assert messages[-1] == 'step %s is the final step (train.steps %s): done' % ((final.rsplit('-', 1)[1],) * 2)


def test_the_evaluator_beside_a_rotating_trainer(records, tmp_path):
    """train.py (a checkpoint every 2 steps, one kept) and eval.py's loop (no pause) on one run dir."""
    run_dir = str(tmp_path / 'run')
    steps = 40
    overrides = tiny_overrides(records, run_dir, steps=steps) + [
        'model.width=0.0625', 'train.crop_size=32', 'train.batch_size=2', 'train.save_every_steps=2',
        'train.keep_checkpoints=1', 'eval.interval_secs=0', 'eval.timeout_secs=300', 'eval.flip=true',
        'eval.scales=[1.0, 0.75]']
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO_ROOT)
    common = ['--config', 'configs/demo.yaml'] + [arg for o in overrides for arg in ('--set', o)]
    evaluator = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'eval.py')] + common, cwd=REPO_ROOT,
                                 env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trainer = run_script('train.py', *common)
    out, err = evaluator.communicate(timeout=600)
    assert trainer.returncode == 0, trainer.stderr
    assert evaluator.returncode == 0, err
    assert 'Traceback' not in err and 'NotFoundError' not in err + out, err
    evaluated = [line for line in out.splitlines() if ': mIoU ' in line]
    assert len(evaluated) >= 2, out
    assert evaluated[-1].endswith('step %d: mIoU %s' % (steps, evaluated[-1].rsplit(' ', 1)[1]))
    assert out.splitlines()[-1] == 'step %d is the final step (train.steps %d): done' % (steps, steps)


def test_a_checkpoint_vanishing_while_copied_to_best_leaves_the_previous_best_whole(tmp_path, monkeypatch):
    run_dir = str(tmp_path)
    run = runs.Run(run_dir)
    assert run.keep_best(fake_checkpoint_files(run_dir, 10), {'global_step': 10, 'miou': 0.5})
    before = _snapshot(run.best_dir)
    newer = fake_checkpoint_files(run_dir, 20)
    real_copy = shutil.copyfile

    def copy_then_rotate(src, dst):
        real_copy(src, dst)
        for path in tf.io.gfile.glob(newer + '.*'):  # the trainer's Saver deletes the rest meanwhile
            os.remove(path)
    monkeypatch.setattr(runs.shutil, 'copyfile', copy_then_rotate)
    with pytest.raises(runs.CheckpointGone):
        run.keep_best(newer, {'global_step': 20, 'miou': 0.9})
    assert _snapshot(run.best_dir) == before
    assert tf1.train.latest_checkpoint(run.best_dir) == os.path.join(run.best_dir, 'model.ckpt-10')


def test_two_writers_of_latest_json_never_leave_it_half_written(tmp_path):
    path = str(tmp_path / 'latest.json')
    payloads = [{'writer': i, 'values': list(range(20000 * (i + 1)))} for i in range(2)]
    errors, done = [], threading.Event()

    def write(payload):
        for _ in range(30):
            runs.write_json(path, payload)

    def read():
        while not done.is_set():
            if os.path.exists(path):
                with open(path) as f:
                    try:
                        data = json.load(f)
                    except ValueError as e:
                        errors.append(e)
                        return
                if data not in payloads:
                    errors.append(data['writer'])
    writers = [threading.Thread(target=write, args=(p,)) for p in payloads]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    with open(path) as f:
        assert json.load(f) in payloads
    assert os.listdir(str(tmp_path)) == ['latest.json']  # no temporaries left


# --- resume and browse ----------------------------------------------------------------------

def test_a_resumed_run_keeps_what_it_was_trained_as(records, skip_run, tmp_path):
    run_dir = str(tmp_path / 'run')
    shutil.copytree(skip_run[0], run_dir, ignore=shutil.ignore_patterns('eval', 'best'))
    step = int(skip_run[1].rsplit('-', 1)[1])
    with pytest.raises(ConfigError, match='--set model.skip_scaling=false disagrees'):
        train_lib.train(_plain(records, run_dir, 'train.steps=%d' % (step + 1), 'model.skip_scaling=false'),
                        log=lambda *_: None)
    lines = []
    assert train_lib.train(_plain(records, run_dir, 'train.steps=%d' % (step + 1)), log=lines.append) == step + 1
    assert any(line.endswith('taken from its config.yaml: model.skip_scaling true (not false)') for line in lines)
    assert _own(run_dir).model.skip_scaling is True  # the rewritten config.yaml still says so
    assert _own(run_dir).train.steps == step + 1  # a free key: the command's


def test_browse_augment_shows_the_runs_preprocessing(records, skip_run, tmp_path):
    """The run was trained on 64-px crops; demo.yaml says 96: browsing the run shows 64."""
    run_dir = skip_run[0]
    cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'demo.yaml'),
                      ['data.dir=%s' % records, 'train.run_dir=%s' % run_dir])
    assert cfg.train.crop_size != 64 and _own(run_dir).train.crop_size == 64
    lines = []
    paths = browse.browse(cfg, str(tmp_path / 'out'), augment=True, num=1, log=lines.append)
    assert any('train.crop_size 64 (not 96)' in line for line in lines), lines
    sheet = cv2.imread(paths[0])
    assert sheet.shape[1] == 3 * 64 + 200  # three 64-px panels and the legend
    lines = []
    paths = browse.browse(load_config(os.path.join(REPO_ROOT, 'configs', 'demo.yaml'),
                                      ['data.dir=%s' % records, 'train.run_dir=%s' % run_dir, 'train.crop_size=32']),
                          str(tmp_path / 'out32'), augment=True, num=1, log=lines.append)
    assert cv2.imread(paths[0]).shape[1] == 3 * 32 + 200  # a --set still chooses what to look at


def test_eval_export_predict_from_another_folder_with_the_shipped_recipe_rebuild_the_run(records, skip_run, tmp_path):
    """As a user chains them: the scripts run from a folder of their own with the shipped recipe named
    by its bare name (demo.yaml, no skip scaling) on the skip-scaled run: the same mIoU as the run's
    own config, and the exported model predicts the trained network's pixels."""
    run_dir, checkpoint = skip_run
    trained_as = _predictions(_own(run_dir), checkpoint)
    own_results, _ = _evaluate(_own(run_dir), checkpoint)
    overrides = [arg for o in tiny_overrides(records, run_dir, steps=3) + FCN8S for arg in ('--set', o)]
    work = tmp_path / 'elsewhere'
    work.mkdir()

    def tool(script, *args):
        result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, script)] + list(args), cwd=str(work),
                                env=dict(os.environ, CUDA_VISIBLE_DEVICES=''), capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, (script, result.stderr)
        return result

    tool('eval.py', '--config', 'demo.yaml', '--once', *overrides)
    with open(os.path.join(run_dir, 'eval', 'latest.json')) as f:
        assert json.load(f)['confusion_matrix'] == own_results['confusion_matrix']
    tool('export.py', '--config', 'demo.yaml', '--out', 'model.pb', *overrides)
    photos = work / 'photos'
    photos.mkdir()
    for ex in read_examples(records, 'val'):
        (photos / (ex['filename'] + '.jpg')).write_bytes(ex['image_bytes'])
    tool('predict.py', '--model', 'model.pb', '--out', 'out', 'photos')
    _assert_same({name: read_index_png(str(work / 'out' / (name + '.png'))) for name in trained_as}, trained_as)
