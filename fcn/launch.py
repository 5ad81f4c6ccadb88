"""Runs a parameter-server training job on this machine, every process on 127.0.0.1:

    python -m fcn.launch --ps 1 --workers 2 --config configs/demo.yaml [--set k=v ...] [--port_base N]

Every task runs the same command (default `python train.py`, with --config/--set
appended) with its own TF_CONFIG; worker 0 is the chief (there is no separate chief job,
as fcn.cluster.roles reads it). Each output line is prefixed with its task, e.g. `[worker:1] `.
The launcher prints each task's pid when it starts them. The job ends when the chief exits
(the launcher exits with the chief's code), or as soon as another task fails: a worker
exiting non-zero, or a ps exiting before the chief wrote <train.run_dir>/cluster.done (a
ps returns only when the chief has written it, at the end of training; see
fcn.cluster.runtime.serve_forever); the launcher then names that task and exits non-zero. In both
cases the remaining tasks are terminated: SIGTERM to the workers first, SIGKILL to those still
there after --grace_secs, and only then to the parameter servers, which hold the variables the
chief's last save reads (fcn.stopping: on SIGTERM the chief finishes its step and saves it).
SIGTERM or Ctrl-C to the launcher stops the job the same way; it then exits 128 + the signal
(143, 130), as the tasks do. Tasks also get SIGTERM if the launcher itself dies (Linux), so a
killed launcher leaves no job behind.
"""
import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

from fcn.cluster.done import done_file, written_since
from fcn.cluster.roles import ClusterError, make_tf_config, validate_cluster_spec
from fcn import cli
from fcn.config import add_config_args, load_config

HOST = '127.0.0.1'
PR_SET_PDEATHSIG = 1
GRACE_SECS = 60  # a full-size chief's save on SIGTERM (about 1.6 GB with momentum) to network storage
PS_GRACE_SECS = 5  # a ps holds no state of its own once the workers are gone
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith('linux') else None


class Task:
    """One process of the job: its job name, index, Popen, and whether it is the chief."""

    def __init__(self, job, index, proc):
        self.job = job
        self.index = index
        self.proc = proc
        self.is_chief = job == 'worker' and index == 0

    @property
    def name(self):
        return '%s:%d' % (self.job, self.index)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='python -m fcn.launch',
                                     description='Run a ps/worker training job on this machine.')
    cli.add_verbose_arg(add_config_args(parser))  # --verbose: every task shows TensorFlow's logs
    parser.add_argument('--ps', type=int, default=1, help='parameter-server tasks (default 1)')
    parser.add_argument('--workers', type=int, default=2, help='worker tasks; worker 0 is the chief (default 2)')
    parser.add_argument('--port_base', type=int, default=None,
                        help='use ports port_base, port_base+1, ... (default: free ports picked by the OS)')
    parser.add_argument('--command', default=None,
                        help='command every task runs, --config/--set appended (default: "python train.py")')
    parser.add_argument('--grace_secs', type=float, default=GRACE_SECS,
                        help='how long the workers get to exit after SIGTERM before SIGKILL: the chief '
                             'saves a checkpoint then (default %d)' % GRACE_SECS)
    args = parser.parse_args(argv)
    if args.workers < 1 or args.ps < 0:
        parser.error('need --workers >= 1 and --ps >= 0, got --workers %d --ps %d' % (args.workers, args.ps))
    return args


def free_ports(count, host=HOST):
    """`count` distinct ports free on `host` now (all sockets held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def make_cluster_spec(num_ps, num_workers, ports):
    """{'worker': [...], 'ps': [...]} on 127.0.0.1; raises ClusterError if it cannot train."""
    addresses = ['%s:%d' % (HOST, port) for port in ports]
    spec = {'worker': addresses[:num_workers]}
    if num_ps:
        spec['ps'] = addresses[num_workers:num_workers + num_ps]
    validate_cluster_spec(spec)
    return spec


def task_argv(command, config, overrides):
    """The command line every task runs: command + --config + --set ...."""
    argv = shlex.split(command) if command else [sys.executable, 'train.py']
    argv += ['--config', config]
    for override in overrides:
        argv += ['--set', override]
    return argv


def task_env(spec, job, index, environ=None):
    """The task's environment: ours plus its TF_CONFIG, unbuffered Python output (lines
    stream as they are printed), and no GPU for a parameter server."""
    env = dict(os.environ if environ is None else environ)
    env['TF_CONFIG'] = make_tf_config(spec, job, index)
    env['PYTHONUNBUFFERED'] = '1'
    if job == 'ps':
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


def _die_with_parent():
    """Runs in the child before exec: SIGTERM it when the launcher dies."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_tasks(spec, argv):
    """Starts the ps tasks, then the workers, each in its own process group -> [Task]."""
    tasks = []
    try:
        for job in ('ps', 'worker'):
            for index in range(len(spec.get(job, []))):
                proc = subprocess.Popen(
                    argv, env=task_env(spec, job, index), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, text=True, errors='replace', bufsize=1,
                    start_new_session=True, preexec_fn=_die_with_parent)
                tasks.append(Task(job, index, proc))
    except BaseException:
        stop_tasks(tasks, grace_secs=0)
        raise
    return tasks


def stream_output(task, sink, lock):
    """Copies the task's output to `sink` line by line, each line prefixed `[job:index] `."""
    prefix = '[%s] ' % task.name
    for line in task.proc.stdout:
        with lock:
            sink.write(prefix + line if line.endswith('\n') else prefix + line + '\n')
            sink.flush()


def wait_for_end(tasks, poll_secs=0.1, chief_done=None):
    """Blocks until the chief exits or another task fails -> (exit code, message).
    `chief_done()` is True once the chief has signalled the end of training (the ps tasks
    then return, possibly before the chief's process has exited)."""
    while True:
        for task in tasks:
            code = task.proc.poll()
            if code is None:
                continue
            if task.is_chief:
                return exit_status(code), 'the chief %s %s' % (task.name, _ended(code))
            if task.job == 'worker' and code == 0:
                continue  # finished its steps before the chief: normal
            if task.job == 'ps' and code == 0 and chief_done is not None and chief_done():
                continue  # the chief wrote its done file: the ps stopped serving, as it should
            return exit_status(code) or 1, '%s %s while the chief was running' % (task.name, _ended(code))
        time.sleep(poll_secs)


def _ended(returncode):
    if returncode < 0:
        return 'was killed by %s' % signal.Signals(-returncode).name
    return 'exited with code %d' % returncode


def exit_status(returncode):
    """A Popen returncode as a shell exit status: -SIG (killed by a signal) -> 128 + SIG."""
    return 128 - returncode if returncode < 0 else returncode


def stop_tasks(tasks, grace_secs):
    """Stops the workers (SIGTERM, SIGKILL after grace_secs), then the parameter servers: a
    ps must outlive the chief's save on SIGTERM, which reads the variables it holds."""
    _stop_group_of([task for task in tasks if task.job != 'ps'], grace_secs)
    _stop_group_of([task for task in tasks if task.job == 'ps'], min(grace_secs, PS_GRACE_SECS))


def _stop_group_of(tasks, grace_secs):
    """SIGTERM to every task's process group, SIGKILL to those still there after grace_secs."""
    for task in tasks:
        _signal_group(task, signal.SIGTERM)
    deadline = time.monotonic() + grace_secs
    for task in tasks:
        try:
            task.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print('fcn.launch: %s still running %g s after SIGTERM: SIGKILL' % (task.name, grace_secs),
                  file=sys.stderr, flush=True)
            _signal_group(task, signal.SIGKILL)
            task.proc.wait()


def _signal_group(task, signum):
    try:
        os.killpg(task.proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def run_job(spec, argv, grace_secs=GRACE_SECS, sink=None, done_path=None):
    """Runs one job to its end (see the module docstring) -> the launcher's exit code.
    done_path: the chief's done file (fcn.cluster.done.done_file of the run dir), if known."""
    sink = sink or sys.stdout
    lock = threading.Lock()
    tasks, readers = [], []
    started = time.time()
    try:
        tasks = start_tasks(spec, argv)
        with lock:
            print('fcn.launch: started %s' % ', '.join('%s (pid %d)' % (task.name, task.proc.pid) for task in tasks),
                  file=sys.stderr, flush=True)
        for task in tasks:
            reader = threading.Thread(target=stream_output, args=(task, sink, lock), daemon=True)
            reader.start()
            readers.append(reader)
        code, message = wait_for_end(tasks, chief_done=lambda: written_since(done_path, started))
    except Stopped as stop:
        code, message = 128 + stop.signum, 'stopped by %s' % signal.Signals(stop.signum).name
    finally:
        stop_tasks(tasks, grace_secs)
        for reader in readers:
            reader.join(timeout=5)
    with lock:
        print('fcn.launch: %s; %s' % (message, 'job stopped' if code else 'job done'), file=sys.stderr, flush=True)
    return code


class Stopped(BaseException):
    """The launcher got SIGTERM or SIGINT (a scheduler's or a user's stop)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)  # once: stopping the tasks must not be cut short
    raise Stopped(signum)


def main(argv=None):
    """The launcher -> its exit code (errors printed by fcn.cli, as the other tools do)."""
    return cli.exit_code(_main, argv)


def _main(argv):
    args = parse_args(argv)
    cli.apply_verbose(args)  # in os.environ, which every task inherits
    cfg = load_config(args.config, args.overrides)  # a typo fails here once, not in every task
    count = args.ps + args.workers
    ports = free_ports(count) if args.port_base is None else list(range(args.port_base, args.port_base + count))
    spec = make_cluster_spec(args.ps, args.workers, ports)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_stopped)
    try:
        return run_job(spec, task_argv(args.command, args.config, args.overrides), args.grace_secs,
                       done_path=done_file(cfg.train.run_dir))
    except OSError as e:
        raise ClusterError('cannot start %r: %s' % (args.command or 'train.py', e)) from None


if __name__ == '__main__':
    sys.exit(main())
