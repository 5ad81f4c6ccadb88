"""Training across processes and clones with the real trainer (train.py, fcn.train_lib):

- a 1 ps + 2 synchronous workers job on 127.0.0.1 started by `python -m fcn.launch`;
- a worker killed mid-run stops the job, and the same command then resumes it;
- SIGTERM to the launcher: the chief saves the step it is in (the ps still up), exit 143;
- one process with 2 clones on the CPU.

Every launcher is run under `_launch`, which stops it (and kills any task it left) even
when the test fails; every wait has a timeout.
"""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fcn import deploy, train_lib
from fcn.compat import tf, tf1
from pipeline_fixtures import REPO_ROOT, build_synthetic, scalar_series, tiny_config, tiny_overrides

STEPS = 40
LAUNCH_TIMEOUT = 100  # seconds for one launcher run; ~25 s on 2 cores
TASK_PIDS = re.compile(r'(\w+:\d+) \(pid (\d+)\)')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=16, num_val=4, size=64)


class Launch:
    """A running `python -m fcn.launch` whose output (both streams) goes to `log_path`."""

    def __init__(self, overrides, log_path, grace_secs=3):
        self.log_path = log_path
        argv = [sys.executable, '-m', 'fcn.launch', '--ps', '1', '--workers', '2', '--grace_secs', str(grace_secs),
                '--config', 'configs/demo.yaml']
        for override in overrides:
            argv += ['--set', override]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='', PYTHONPATH=REPO_ROOT)
        env.pop('TF_CONFIG', None)
        with open(log_path, 'w') as log:
            self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def task_pids(self):
        """{'ps:0': pid, 'worker:0': pid, ...} from the launcher's 'started' line ({} before it)."""
        for line in self.log().splitlines():
            if line.startswith('fcn.launch: started '):
                return {name: int(pid) for name, pid in TASK_PIDS.findall(line)}
        return {}

    def wait(self, timeout=LAUNCH_TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail('the launcher did not finish in %d s:\n%s' % (timeout, self.log()[-6000:]))

    def stop(self):
        """Ends the launcher (SIGTERM: it stops its tasks; then SIGKILL) and kills leftover
        tasks -> the names of the tasks that were still running after the launcher."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # its tasks get SIGTERM from the kernel (PR_SET_PDEATHSIG)
                self.proc.wait()
        leftovers = _wait_gone(self.task_pids())
        for pid in leftovers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return sorted(leftovers)


@contextlib.contextmanager
def _launch(overrides, log_path, **options):
    launch = Launch(overrides, log_path, **options)
    try:
        yield launch
    finally:
        leftovers = launch.stop()
    assert not leftovers, 'tasks still running after the launcher: %s' % leftovers


def _alive(pid):
    """True while `pid` is one of our train.py tasks (a zombie counts as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            running = f.read().rsplit(')', 1)[1].split()[0] != 'Z'
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return running and b'train.py' in f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False


def _wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {name: pid for name, pid in pids.items() if _alive(pid)}


def _overrides(data_dir, run_dir, *extra):
    return tiny_overrides(data_dir, run_dir, STEPS) + ['train.summary_every_steps=4'] + list(extra)


def _checkpoint_step(run_dir):
    path = tf1.train.latest_checkpoint(run_dir)
    assert path is not None, 'no checkpoint in %s' % run_dir
    return int(tf.train.load_checkpoint(path).get_tensor('global_step'))


def test_one_ps_two_sync_workers_train_to_the_last_step(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    with _launch(_overrides(data_dir, run_dir), tmp_path / 'launch.log') as launch:
        code = launch.wait()
        log = launch.log()
    assert code == 0, log
    assert 'fcn.launch: the chief worker:0 exited with code 0; job done' in log
    assert '[worker:1] step %d/%d' % (STEPS // 2, STEPS) in log, log  # worker 1 trained too
    assert 'Exception in thread' not in log, log  # the chief's sync queue runner ends quietly
    assert _checkpoint_step(run_dir) == STEPS
    losses = [value for _, value in scalar_series(run_dir, 'loss/segmentation')]
    assert len(losses) >= 8, losses
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses


def _wait_for_checkpoint_past_0(launch, run_dir):
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while tf1.train.latest_checkpoint(run_dir) in (None, os.path.join(run_dir, 'model.ckpt-0')):
        assert launch.proc.poll() is None and time.monotonic() < deadline, launch.log()
        time.sleep(0.1)


def test_a_killed_worker_stops_the_job_and_the_same_command_resumes(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    overrides = _overrides(data_dir, run_dir, 'train.save_every_steps=5')
    with _launch(overrides, tmp_path / 'killed.log') as launch:
        _wait_for_checkpoint_past_0(launch, run_dir)
        os.kill(launch.task_pids()['worker:1'], signal.SIGKILL)
        code = launch.wait(60)
        log = launch.log()
    assert code == 128 + signal.SIGKILL, log
    assert 'fcn.launch: worker:1 was killed by SIGKILL while the chief was running; job stopped' in log
    killed_at = _checkpoint_step(run_dir)
    assert 5 <= killed_at < STEPS, log

    with _launch(overrides, tmp_path / 'resumed.log') as launch:
        code = launch.wait()
        log = launch.log()
    assert code == 0, log
    resumed_from = re.search(r'\[worker:0\] resuming from \S+/model\.ckpt-(\d+)$', log, re.MULTILINE)
    assert resumed_from and int(resumed_from.group(1)) == killed_at, log
    assert _checkpoint_step(run_dir) == STEPS


def test_sigterm_to_the_launcher_keeps_the_chiefs_step_and_exits_143(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    overrides = _overrides(data_dir, run_dir, 'train.save_every_steps=5', 'train.log_every_steps=1')
    with _launch(overrides, tmp_path / 'stopped.log', grace_secs=60) as launch:
        _wait_for_checkpoint_past_0(launch, run_dir)
        launch.proc.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        code = launch.wait(90)
        stop_secs = time.monotonic() - stopped_at
        log = launch.log()
    assert 'SIGKILL' not in log, log  # every task ended on its own
    print('the job took %.1f s to stop' % stop_secs)
    assert code == 128 + signal.SIGTERM, log
    assert 'fcn.launch: stopped by SIGTERM; job stopped' in log
    stopped = re.search(r'^\[worker:0\] stopped by SIGTERM at step (\d+): checkpoint (\S+) kept$', log, re.MULTILINE)
    assert stopped, log
    step, kept = int(stopped.group(1)), stopped.group(2)
    assert 5 <= step < STEPS, log
    assert tf1.train.latest_checkpoint(run_dir) == kept == os.path.join(run_dir, 'model.ckpt-%d' % step)
    assert _checkpoint_step(run_dir) == step  # read from the ps, which outlived the save


@pytest.mark.tf_subset
def test_two_clones_on_the_cpu_split_the_batch(data_dir, tmp_path, monkeypatch):
    made = []

    def create_clones(config, model_fn, args=(), kwargs=None):
        made.extend(real_create_clones(config, model_fn, args, kwargs))
        return made

    real_create_clones = deploy.create_clones
    monkeypatch.setattr(deploy, 'create_clones', create_clones)
    run_dir = str(tmp_path / 'run')
    cfg = tiny_config(data_dir, run_dir, steps=4, extra=['deploy.num_clones=2', 'deploy.clone_on_cpu=true'])
    assert train_lib.train(cfg, log=lambda *_: None) == 4
    assert [clone.scope for clone in made] == ['clone_0/', 'clone_1/']
    assert all(clone.device.endswith('CPU:0') for clone in made)
    assert [clone.outputs['images'].shape[0] for clone in made] == [2, 2]  # batch_size 4 split in two
    assert _checkpoint_step(run_dir) == 4


def test_sync_workers_accumulating_gradients_with_mixed_precision(data_dir, tmp_path):
    """train.accumulate_steps with SyncReplicasOptimizer: each worker sums k batches locally
    (hook-less runs), then hands their mean to the sync optimizer once per update; the
    loss-scale variables are shared on the ps."""
    run_dir = str(tmp_path / 'run')
    steps = 6
    overrides = tiny_overrides(data_dir, run_dir, steps) + [
        'train.accumulate_steps=2', 'train.mixed_precision=true', 'train.log_every_steps=1']
    with _launch(overrides, tmp_path / 'launch.log') as launch:
        code = launch.wait()
        log = launch.log()
    assert code == 0, log
    assert '[worker:1] step 3/%d' % steps in log and '[worker:0] step 3/%d' % steps in log, log
    assert _checkpoint_step(run_dir) == steps
    names = {name for name, _ in tf.train.list_variables(tf1.train.latest_checkpoint(run_dir))}
    assert 'current_loss_scale' in names  # one shared loss scale, saved by the chief
    assert not [name for name in names if name.startswith('gradient_accumulation')]
