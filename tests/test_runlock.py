"""One trainer per run dir (RUN_DIR/train.lock); evaluators alongside; best/ updated by one
evaluator at a time."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from fcn import runlock, train_lib
from fcn.cluster.roles import ClusterInfo
from pipeline_fixtures import REPO_ROOT, run_script, tiny_config, tiny_overrides

HOLDER = ('import sys, time\n'
          'from fcn import runlock\n'
          'lock = runlock.TrainerLock(sys.argv[1], "train.py").acquire()\n'
          'print("held", flush=True)\n'
          'time.sleep(600)\n')


@pytest.fixture
def holder(tmp_path):
    """Another process holding RUN_DIR's trainer lock, as a running train.py does."""
    run_dir = str(tmp_path / 'run')
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, run_dir], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == 'held'
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_trainer_is_refused_naming_the_holder(holder, tmp_path):
    run_dir, proc = holder
    run = run_script('train.py', '--config', 'configs/demo.yaml',
                     *sum([['--set', o] for o in tiny_overrides(str(tmp_path / 'no-data'), run_dir)], []))
    assert run.returncode == 2, run.stderr
    assert 'error:' in run.stderr and 'Traceback' not in run.stderr
    assert 'pid %d on host %s' % (proc.pid, socket.gethostname()) in run.stderr
    assert os.path.join(run_dir, 'train.lock') in run.stderr
    assert not os.path.exists(os.path.join(run_dir, 'config.yaml'))  # refused before touching the run dir


def test_lock_of_a_killed_process_is_taken_over_with_a_message(holder):
    run_dir, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert runlock.read_holder(run_dir)['pid'] == proc.pid  # the file stays behind
    messages = []
    with runlock.TrainerLock(run_dir, log=messages.append):
        assert runlock.read_holder(run_dir)['pid'] == os.getpid()
    assert len(messages) == 1 and 'taking over' in messages[0] and 'pid %d' % proc.pid in messages[0]
    assert runlock.read_holder(run_dir) is None  # released: the file is gone


def test_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'train.lock').write_text(json.dumps({'host': socket.gethostname(), 'pid': int(dead.stdout)}))
    messages = []
    runlock.TrainerLock(str(run_dir), log=messages.append).acquire().release()
    assert 'taking over' in messages[0]


def test_without_flock_a_live_holder_on_this_host_still_refuses(tmp_path, monkeypatch):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'train.lock').write_text(json.dumps({'host': socket.gethostname(), 'pid': os.getppid()}))
    monkeypatch.setattr(runlock, '_flock', lambda fd: None)  # a file system without flock
    with pytest.raises(runlock.RunLockError, match='pid %d' % os.getppid()):
        runlock.TrainerLock(str(run_dir)).acquire()


def test_only_the_chief_takes_the_trainer_lock(holder, monkeypatch):
    run_dir, _ = holder
    monkeypatch.setattr(train_lib, '_train', lambda cfg, info, log, *stop: 'trained')
    cfg = tiny_config('/unused', run_dir)
    spec = {'worker': ['127.0.0.1:1', '127.0.0.1:2'], 'ps': ['127.0.0.1:3']}
    assert train_lib.train(cfg, ClusterInfo('worker', 1, spec)) == 'trained'
    with pytest.raises(runlock.RunLockError, match='is in use'):
        train_lib.train(cfg, ClusterInfo('worker', 0, spec))  # worker 0 is the chief here


def _fake_checkpoint(run_dir, step):
    prefix = os.path.join(run_dir, 'model.ckpt-%d' % step)
    for suffix in ('.index', '.data-00000-of-00001'):
        with open(prefix + suffix, 'w') as f:
            f.write('%d%s' % (step, suffix) * 1000)
    return prefix


def test_two_evaluators_take_turns_on_best(tmp_path, monkeypatch):
    """Evaluator A is paused in the middle of copying its (worse) checkpoint to best/ while
    evaluator B keeps a better one. Unlocked, A would then finish and overwrite B's best."""
    from fcn import run as runs
    run_dir = str(tmp_path)
    worse, better = _fake_checkpoint(run_dir, 10), _fake_checkpoint(run_dir, 20)
    a_copying, a_may_go = threading.Event(), threading.Event()
    real_copy = runs.shutil.copyfile

    def copyfile(src, dst):
        if threading.current_thread().name == 'A':
            a_copying.set()
            a_may_go.wait(30)
        return real_copy(src, dst)
    monkeypatch.setattr(runs.shutil, 'copyfile', copyfile)
    kept = {}

    def evaluate(name, checkpoint, miou):
        kept[name] = runs.Run(run_dir).keep_best(checkpoint, {'global_step': int(checkpoint.rsplit('-', 1)[1]),
                                                              'miou': miou})
    a = threading.Thread(target=evaluate, args=('A', worse, 0.5), name='A')
    b = threading.Thread(target=evaluate, args=('B', better, 0.6), name='B')
    a.start()
    assert a_copying.wait(30)
    b.start()
    b.join(2.0)  # with the lock B waits for A
    a_may_go.set()
    a.join(30)
    b.join(30)
    best = runs.Run(run_dir).read_best()
    assert (best['miou'], best['global_step'], kept) == (0.6, 20, {'A': True, 'B': True})
    best_dir = os.path.join(run_dir, 'best')
    assert sorted(os.listdir(best_dir)) == ['best.json', 'checkpoint', 'model.ckpt-20.data-00000-of-00001',
                                            'model.ckpt-20.index']
    with open(os.path.join(best_dir, 'model.ckpt-20.index')) as f:
        assert f.read() == '20.index' * 1000
