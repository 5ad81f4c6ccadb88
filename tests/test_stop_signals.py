"""train.py stopped by SIGTERM (scancel, preemption, a time limit) and SIGUSR1 (Slurm's early
warning) keeps the step it reached (fcn.stopping), and a rerun resumes from it; a signal that
lands while a checkpoint is being written never leaves a "latest" that cannot be restored;
the summaries of the final step are written.
"""
import glob
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from fcn.compat import tf, tf1
from pipeline_fixtures import REPO_ROOT, build_synthetic, scalar_series, tiny_overrides

STEP_LINE = re.compile(r'^step (\d+)/')
STOPPED_LINE = re.compile(r'^stopped by (SIG\w+) at step (\d+): checkpoint (\S+) kept$')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=32)


def _args(data_dir, run_dir, steps, *extra):
    overrides = tiny_overrides(data_dir, run_dir, steps) + [
        'model.width=0.0625', 'train.crop_size=32', 'train.batch_size=2', 'train.log_every_steps=1',
        'train.save_every_steps=100000', 'train.summary_every_steps=100000'] + list(extra)
    return ['--config', 'configs/demo.yaml'] + sum([['--set', o] for o in overrides], [])


class Trainer:
    """train.py in the background; its merged output read line by line (`last_step` logged)."""

    def __init__(self, args):
        env = dict(os.environ, CUDA_VISIBLE_DEVICES='', PYTHONUNBUFFERED='1', PYTHONPATH=REPO_ROOT)
        env.pop('TF_CONFIG', None)
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'train.py')] + args, cwd=REPO_ROOT,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.last_step = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip('\n'))
            match = STEP_LINE.match(line)
            if match:
                self.last_step = int(match.group(1))

    def wait_for_step(self, step, timeout=300):
        deadline = time.monotonic() + timeout
        while self.last_step < step:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def finish(self, timeout=120):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail('train.py did not end %d s after the signal:\n%s' % (timeout, self.output()))
        self.reader.join(30)
        return code

    def output(self):
        return '\n'.join(self.lines)


def _checkpoint_step(path):
    """Reads every tensor of the checkpoint (it must be whole) -> its global step."""
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    return int(reader.get_tensor('global_step'))


def _assert_stopped(trainer, code, signum, run_dir, reached):
    """The process ended with 128 + signum and one last line naming a whole checkpoint of a step
    at or after `reached` (the step in flight is finished), the lock released -> that step."""
    out = trainer.output()
    assert code == 128 + signum, out
    assert 'Traceback' not in out, out
    match = STOPPED_LINE.match(trainer.lines[-1])
    assert match, out
    name, step, checkpoint = match.group(1), int(match.group(2)), match.group(3)
    assert name == signal.Signals(signum).name
    assert checkpoint == tf1.train.latest_checkpoint(run_dir) == os.path.join(run_dir, 'model.ckpt-%d' % step)
    assert _checkpoint_step(checkpoint) == step >= reached
    assert not os.path.exists(os.path.join(run_dir, 'train.lock'))
    return step


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGUSR1])
def test_a_stop_signal_keeps_the_step_reached(data_dir, tmp_path, signum):
    run_dir = str(tmp_path / 'run')
    trainer = Trainer(_args(data_dir, run_dir, 100000))  # no periodic checkpoint would ever come
    trainer.wait_for_step(5)
    reached = trainer.last_step
    trainer.proc.send_signal(signum)
    _assert_stopped(trainer, trainer.finish(), signum, run_dir, reached)


def test_rerun_resumes_from_the_stopped_step_and_writes_the_final_steps_summaries(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    trainer = Trainer(_args(data_dir, run_dir, 100000))
    trainer.wait_for_step(3)
    trainer.proc.send_signal(signal.SIGTERM)
    step = _assert_stopped(trainer, trainer.finish(), signal.SIGTERM, run_dir, 3)
    final = step + 4
    rerun = Trainer(_args(data_dir, run_dir, final, 'train.summary_every_steps=1000'))
    assert rerun.finish(300) == 0, rerun.output()
    resuming = rerun.lines.index('resuming from %s' % os.path.join(run_dir, 'model.ckpt-%d' % step))
    assert STEP_LINE.match(rerun.lines[resuming + 1]).group(1) == str(step + 1)
    assert rerun.lines[-1] == 'done: %s' % os.path.join(run_dir, 'model.ckpt-%d' % final)
    # summaries every 1000 steps: the first step of each process, and the final step
    assert [s for s, _ in scalar_series(run_dir, 'loss/total')] == [1, step + 1, final]


def test_a_signal_during_a_checkpoint_write_leaves_a_restorable_latest(data_dir, tmp_path):
    """SIGTERM the moment a checkpoint's temporary files appear: that write is finished (the
    message names it or a later one) and every checkpoint listed reads whole."""
    run_dir = str(tmp_path / 'run')
    trainer = Trainer(_args(data_dir, run_dir, 100000, 'train.save_every_steps=1', 'train.keep_checkpoints=3'))
    trainer.wait_for_step(2)
    deadline = time.monotonic() + 120
    while True:  # a sharded Saver writes model.ckpt-N_temp/ first, then merges and renames
        writing = glob.glob(os.path.join(run_dir, 'model.ckpt-*_temp*'))
        if writing:
            break
        assert time.monotonic() < deadline and trainer.proc.poll() is None, trainer.output()
    trainer.proc.send_signal(signal.SIGTERM)
    in_flight = int(re.search(r'model\.ckpt-(\d+)_temp', writing[0]).group(1))
    _assert_stopped(trainer, trainer.finish(), signal.SIGTERM, run_dir, in_flight)
    state = tf1.train.get_checkpoint_state(run_dir)
    for path in state.all_model_checkpoint_paths:
        _checkpoint_step(path)
    assert not glob.glob(os.path.join(run_dir, '*_temp*'))
