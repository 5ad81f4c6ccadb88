"""The fault suite: train.py SIGKILLed at random (seeded) moments and rerun; export and eval
SIGKILLed in the middle of writing. Nothing left behind may look complete and be broken."""
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from fcn.run import Run
from fcn.compat import tf, tf1
from fcn.export.frozen import FrozenModel
from pipeline_fixtures import REPO_ROOT, build_synthetic, tiny_overrides

STEPS = 60
SAVE_EVERY = 4
KILLS = 5
STEP_LINE = re.compile(r'^step (\d+)/%d ' % STEPS, re.MULTILINE)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=32)


def _overrides(data_dir, run_dir, steps=STEPS):
    return sum([['--set', o] for o in tiny_overrides(data_dir, run_dir, steps) + [
        'model.width=0.0625', 'train.crop_size=32', 'train.batch_size=2', 'train.log_every_steps=1',
        'train.save_every_steps=%d' % SAVE_EVERY, 'train.summary_every_steps=20', 'train.keep_checkpoints=3']], [])


def _env():
    return dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONUNBUFFERED='1', PYTHONPATH=REPO_ROOT)


class _Train:
    """train.py in the background, its merged output collected line by line."""

    def __init__(self, args, kill_after_steps=1):
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'train.py')] + args, cwd=REPO_ROOT,
                                     env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.kill_after_steps = kill_after_steps
        self.steps_logged = 0
        self.ready = threading.Event()  # kill_after_steps step lines logged (or the process ended)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if STEP_LINE.match(line):
                self.steps_logged += 1
                if self.steps_logged >= self.kill_after_steps:
                    self.ready.set()
        self.ready.set()

    def output(self):
        self.reader.join(60)
        return ''.join(self.lines)


def _all_checkpoints_load(run_dir):
    """Every checkpoint the state file lists reads completely; returns the latest's step."""
    state = tf1.train.get_checkpoint_state(run_dir)
    assert state is not None and state.model_checkpoint_path
    for path in list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    return int(tf.train.load_checkpoint(state.model_checkpoint_path).get_tensor('global_step'))


def test_train_killed_at_five_random_moments_resumes_to_exactly_train_steps(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    rng = random.Random(20261122)
    kills = 0
    for attempt in range(KILLS):
        # A random moment of training (steps, saves, summaries): after 1 to 2 save intervals of
        # this attempt's steps plus a fraction of a step, so that on a machine of any speed the
        # five kills come before the last step.
        train = _Train(['--config', 'configs/demo.yaml'] + _overrides(data_dir, run_dir),
                       kill_after_steps=rng.randint(1, 2 * SAVE_EVERY))
        assert train.ready.wait(600), train.output()
        time.sleep(rng.uniform(0.0, 0.05))
        train.proc.send_signal(signal.SIGKILL)
        code = train.proc.wait(60)
        out = train.output()
        logged = [int(step) for step in STEP_LINE.findall(out)]
        assert logged, out
        if attempt:  # the previous run was SIGKILLed holding the lock
            assert 'taking over %s' % os.path.join(run_dir, 'train.lock') in out, out
            assert re.search(r'^resuming from \S+model\.ckpt-\d+$', out, re.MULTILINE), out
        saved = _all_checkpoints_load(run_dir)
        if code == 0:  # finished before the signal came
            assert saved == STEPS, out
            break
        assert code == -signal.SIGKILL, out
        kills += 1
        assert max(logged) - saved <= SAVE_EVERY, (max(logged), saved)  # at most one save interval lost
    assert kills >= 3, 'training finished too soon for the fault suite to mean anything'
    final = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'train.py'), '--config', 'configs/demo.yaml']
                           + _overrides(data_dir, run_dir), cwd=REPO_ROOT, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    assert _all_checkpoints_load(run_dir) == STEPS
    assert tf1.train.latest_checkpoint(run_dir) == os.path.join(run_dir, 'model.ckpt-%d' % STEPS)
    assert not os.path.exists(os.path.join(run_dir, 'train.lock'))


# --- export and eval, killed while writing --------------------------------------------------

@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp('trained') / 'run')
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'train.py'), '--config', 'configs/demo.yaml']
                         + _overrides(data_dir, run_dir, steps=8), cwd=REPO_ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run_dir


def _killed_in(mode, script, *args):
    run = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tests', 'fault_injection.py'), mode,
                          os.path.join(REPO_ROOT, script)] + list(args), cwd=REPO_ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == -signal.SIGKILL, (mode, run.stdout, run.stderr)  # it was killed mid-write


def _complete_files(folder):
    return sorted(name for name in os.listdir(folder) if not name.endswith('.tmp'))


@pytest.mark.parametrize('target', ['model.pb', 'model.json'])
def test_export_killed_mid_write_leaves_no_complete_looking_model(data_dir, trained, tmp_path, target):
    out = str(tmp_path / 'export')
    _killed_in('write:' + os.path.join(out, target), 'export.py', '--config', 'configs/demo.yaml',
               '--out', os.path.join(out, 'model.pb'), *_overrides(data_dir, trained, steps=8))
    assert 'model.pb' not in _complete_files(out)  # only a .tmp holds the half-written graph
    for name in _complete_files(out):  # any sidecar there is whole
        with open(os.path.join(out, name)) as f:
            assert json.load(f)['output'] == 'SemanticPredictions:0'
    assert any(name.endswith('.tmp') for name in os.listdir(out))
    with pytest.raises(FileNotFoundError, match='model file not found'):
        FrozenModel(os.path.join(out, 'model.pb'))


def test_eval_killed_mid_write_leaves_results_and_best_whole(data_dir, trained):
    args = ['--once', '--config', 'configs/demo.yaml'] + _overrides(data_dir, trained, steps=8)
    eval_dir = os.path.join(trained, 'eval')
    _killed_in('write:metrics-', 'eval.py', *args)  # the first result file
    assert not [name for name in _complete_files(eval_dir) if name.endswith('.json')]
    assert Run(trained).read_best() is None

    # a previous best (an earlier checkpoint, any mIoU beats -1), then a kill while copying the new one
    earlier = tf1.train.get_checkpoint_state(trained).all_model_checkpoint_paths[0]
    earlier_step = int(tf.train.load_checkpoint(earlier).get_tensor('global_step'))
    assert earlier_step < 8 and Run(trained).keep_best(earlier, {'global_step': earlier_step, 'miou': -1.0})
    _killed_in('copy:%s' % os.path.join(trained, 'best'), 'eval.py', *args)
    for name in _complete_files(eval_dir):  # this time the results were written before best/
        if name.endswith('.json'):
            with open(os.path.join(eval_dir, name)) as f:
                assert json.load(f)['global_step'] == 8
    best = Run(trained).read_best()
    assert best['checkpoint'] == os.path.join(trained, 'best', os.path.basename(earlier))
    assert tf1.train.latest_checkpoint(os.path.join(trained, 'best')) == best['checkpoint']
    assert int(tf.train.load_checkpoint(best['checkpoint']).get_tensor('global_step')) == earlier_step
    assert glob.glob(os.path.join(trained, 'best', '*.tmp'))  # the half copy, under a name nothing reads


def test_first_lines_say_what_training_starts_from_and_ctrl_c_names_the_checkpoint(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    args = ['--config', 'configs/demo.yaml'] + _overrides(data_dir, run_dir) + ['--set', 'train.log_every_steps=25']
    train = _Train(args)
    assert train.ready.wait(600), train.output()
    assert train.lines[:3] and train.lines[0] == 'no GPU visible: training on the CPU\n'
    assert train.lines[1] == 'training from scratch (init.checkpoint is null)\n'
    assert train.lines[2].startswith('step 1/%d ' % STEPS)  # at once, not after log_every_steps
    while not os.path.exists(os.path.join(run_dir, 'model.ckpt-%d.index' % SAVE_EVERY)):
        assert train.proc.poll() is None, train.output()
        time.sleep(0.05)
    train.proc.send_signal(signal.SIGINT)
    code = train.proc.wait(120)
    out = train.output()
    assert code == 130, out
    assert 'Traceback' not in out
    kept = tf1.train.latest_checkpoint(run_dir)
    assert out.rstrip().splitlines()[-1] == 'interrupted: %s is kept; rerun the same command to resume from it' % kept
    _all_checkpoints_load(run_dir)
    assert not os.path.exists(os.path.join(run_dir, 'train.lock'))  # released on the way out
