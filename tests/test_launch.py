"""fcn.launch with a stand-in task script: TF_CONFIG per task, prefixed output, job end
rules, and no task left behind (checked through /proc after every run)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fcn import launch
from fcn.cluster import roles

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ('ps:0', 'worker:0', 'worker:1')

# Reads its role like train.py would, records its pid, then behaves per STANDIN_MODE:
#   ok:    the chief exits 3 once every task is up; the ps ignores SIGTERM (needs SIGKILL)
#   fail:  worker 1 exits 5 once every task is up; the others wait
#   sleep: every task waits; on SIGTERM it writes NAME.term (the time it got it), a worker then
#          takes 0.5 s (as the chief's save) and writes NAME.exit before it exits 143
STANDIN = textwrap.dedent('''
    import os, signal, sys, time
    from fcn.cluster import roles

    info = roles.resolve()
    name = '%s:%d' % (info.task_type, info.task_index)
    mode, pid_dir = os.environ['STANDIN_MODE'], os.environ['PID_DIR']
    if mode == 'ok' and info.task_type == 'ps':
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def record(event):
        with open(os.path.join(pid_dir, '%s.%s' % (name, event)), 'w') as f:
            f.write(repr(time.time()))

    def stop(signum, frame):
        record('term')
        if info.task_type == 'worker':
            time.sleep(0.5)
            record('exit')
        sys.exit(128 + signum)

    if mode == 'sleep':
        signal.signal(signal.SIGTERM, stop)
    with open(os.path.join(pid_dir, name + '.tmp'), 'w') as f:
        f.write(str(os.getpid()))
    os.replace(os.path.join(pid_dir, name + '.tmp'), os.path.join(pid_dir, name + '.pid'))
    print('task=%s chief=%s gpus=%r args=%s' % (
        name, info.is_chief, os.environ.get('CUDA_VISIBLE_DEVICES'), ' '.join(sys.argv[1:])))
    print('second line')

    def all_up():
        deadline = time.time() + 30
        while len([f for f in os.listdir(pid_dir) if f.endswith('.pid')]) < 3 and time.time() < deadline:
            time.sleep(0.05)

    if mode == 'ok' and info.is_chief:
        all_up()
        sys.stdout.write('no newline at the end')
        sys.exit(3)
    if mode == 'fail' and name == 'worker:1':
        all_up()
        print('worker 1 failing')
        sys.exit(5)
    time.sleep(120)
''')


def _alive(pid):
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def _pids(pid_dir):
    pids = {}
    for name in TASKS:
        path = os.path.join(pid_dir, name + '.pid')
        if os.path.exists(path):
            with open(path) as f:
                pids[name] = int(f.read())
    return pids


def _kill_leftovers(pid_dir):
    """Kills (and returns) the tasks still running: a passing test finds none."""
    leftovers = {name: pid for name, pid in _pids(pid_dir).items() if _alive(pid)}
    for pid in leftovers.values():
        os.kill(pid, signal.SIGKILL)
    return leftovers


def _start_launcher(tmp_path, mode):
    script = tmp_path / 'standin.py'
    script.write_text(STANDIN)
    env = dict(os.environ, STANDIN_MODE=mode, PID_DIR=str(tmp_path), PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES='0')
    env.pop('TF_CONFIG', None)
    argv = [sys.executable, '-m', 'fcn.launch', '--ps', '1', '--workers', '2', '--config', 'configs/base.yaml',
            '--set', 'train.steps=7', '--command', '%s %s' % (sys.executable, script), '--grace_secs', '1']
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_launcher(tmp_path, mode, timeout=60):
    """Runs the launcher to its end -> (exit code, stdout, stderr); fails if a task outlives it."""
    proc = _start_launcher(tmp_path, mode)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        leftovers = _kill_leftovers(tmp_path)
    assert set(_pids(tmp_path)) == set(TASKS), (out, err)
    assert not leftovers, 'tasks still running after the launcher: %s\n%s' % (leftovers, err)
    return proc.returncode, out, err


def test_prefixed_output_per_task_and_the_chiefs_exit_code(tmp_path):
    code, out, err = _run_launcher(tmp_path, 'ok')
    assert code == 3, (out, err)
    lines = out.splitlines()
    args = 'args=--config configs/base.yaml --set train.steps=7'
    assert "[worker:0] task=worker:0 chief=True gpus='0' " + args in lines
    assert "[worker:1] task=worker:1 chief=False gpus='0' " + args in lines
    assert "[ps:0] task=ps:0 chief=False gpus='' " + args in lines
    assert sum(line == '[%s] second line' % name for line in lines for name in TASKS) == 3
    assert '[worker:0] no newline at the end' in lines
    assert 'the chief worker:0 exited with code 3' in err


def test_a_failing_worker_stops_the_job_and_is_named(tmp_path):
    start = time.monotonic()
    code, out, err = _run_launcher(tmp_path, 'fail')
    assert code == 5, (out, err)
    assert '[worker:1] worker 1 failing' in out.splitlines()
    assert 'worker:1 exited with code 5 while the chief was running; job stopped' in err
    assert time.monotonic() - start < 30


def _wait_for_tasks(tmp_path, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while len(_pids(tmp_path)) < len(TASKS):
        assert proc.poll() is None and time.monotonic() < deadline, 'the tasks did not start'
        time.sleep(0.05)
    return _pids(tmp_path).values()


def _wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def _times(pid_dir, event):
    times = {}
    for name in TASKS:
        path = os.path.join(pid_dir, '%s.%s' % (name, event))
        if os.path.exists(path):
            with open(path) as f:
                times[name] = float(f.read())
    return times


@pytest.mark.parametrize('signum, exit_code', [
    (signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)])
def test_a_stopped_or_killed_launcher_takes_its_tasks_along(tmp_path, signum, exit_code):
    proc = _start_launcher(tmp_path, 'sleep')
    try:
        pids = _wait_for_tasks(tmp_path, proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == exit_code, err
        assert _wait_gone(pids) == []  # SIGKILL: the tasks get SIGTERM from the kernel
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _kill_leftovers(tmp_path)
    if signum != signal.SIGKILL:
        assert 'fcn.launch: stopped by %s; job stopped' % signal.Signals(signum).name in err
        stopped, exited = _times(tmp_path, 'term'), _times(tmp_path, 'exit')
        assert set(stopped) == set(TASKS) and set(exited) == {'worker:0', 'worker:1'}, (stopped, exited)
        # the ps is asked to stop only once the workers (the chief's last save) are done
        assert stopped['ps:0'] >= max(exited.values()), (stopped, exited)


class FakeProc:
    def __init__(self, code=None):
        self.code = code

    def poll(self):
        return self.code


def _tasks(**codes):
    return [launch.Task(name.split('_')[0], int(name.split('_')[1]), FakeProc(code)) for name, code in codes.items()]


@pytest.mark.parametrize('codes, expected', [
    (dict(ps_0=None, worker_0=0, worker_1=None), (0, 'the chief worker:0 exited with code 0')),
    (dict(ps_0=None, worker_0=None, worker_1=0, worker_2=-9),
     (137, 'worker:2 was killed by SIGKILL while the chief was running')),
    (dict(ps_0=0, worker_0=None, worker_1=None), (1, 'ps:0 exited with code 0 while the chief was running')),
])
def test_job_end_rules(codes, expected):
    assert launch.wait_for_end(_tasks(**codes), poll_secs=0) == expected


def test_tf_config_of_every_task_reads_back():
    spec = launch.make_cluster_spec(2, 3, launch.free_ports(5))
    assert len(set(spec['worker'] + spec['ps'])) == 5
    assert all(address.startswith('127.0.0.1:') for address in spec['worker'] + spec['ps'])
    for job, count in (('worker', 3), ('ps', 2)):
        for index in range(count):
            info = roles.resolve(launch.task_env(spec, job, index, environ={}))
            assert (info.task_type, info.task_index, info.cluster_spec) == (job, index, spec)
            assert info.is_chief is (job == 'worker' and index == 0)


def test_task_argv():
    assert launch.task_argv(None, 'c.yaml', ['a.b=1'])[1:] == ['train.py', '--config', 'c.yaml', '--set', 'a.b=1']
    assert launch.task_argv('python "my script.py" -v', 'c.yaml', []) == [
        'python', 'my script.py', '-v', '--config', 'c.yaml']


@pytest.mark.parametrize('argv, message', [
    (['--ps', '0', '--workers', '2'], 'no ps task'),
    (['--set', 'train.stepz=3'], "unknown key 'train.stepz'"),
])
def test_bad_job_fails_before_starting_anything(argv, message, capsys):
    assert launch.main(['--config', 'configs/base.yaml', '--command', 'false'] + argv) == 2
    assert message in capsys.readouterr().err
