"""A real single-node Slurm (Debian's slurm-wlm 22.05 + munge) in a temporary folder, for tests.

    with SlurmCluster(tmp_dir) as slurm:
        job = slurm.sbatch(['--ntasks=3', '--overcommit', 'configs/cluster/slurm.sbatch', ...])
        slurm.wait_state(job, 'COMPLETED')

Starts `munged`, `slurmctld` and `slurmd` in the foreground as child processes (this process
must be root, as Slurm's daemons are here), with their config, state, spool, sockets, pid and
log files under the folder, on free ports; every Slurm command run through `slurm.run` gets
SLURM_CONF pointing at that config. `stop()` ends exactly the daemons it started, by pid,
and kills whatever job processes are left on the node (slurmstepd, found by its parent pid).
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

DAEMONS = ('munged', 'slurmctld', 'slurmd')
START_TIMEOUT = 60
STOP_WAIT = 10
FIELD = re.compile(r'(\w+)=(\S*)')


def available():
    """True when the Slurm and munge daemons are installed (Debian: slurm-wlm munge)."""
    return all(shutil.which(name) for name in DAEMONS + ('sbatch', 'scontrol'))


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(('127.0.0.1', 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def slurm_conf(folder, host, ctld_port, slurmd_port, munge_socket, cpus=2):
    """The slurm.conf of the one-node cluster (see DESIGN.md and issue 16)."""
    return '\n'.join([
        'ClusterName=local',
        'SlurmctldHost=%s(127.0.0.1)' % host,
        'SlurmctldPort=%d' % ctld_port,
        'SlurmdPort=%d' % slurmd_port,
        'SlurmUser=root',
        'SlurmdUser=root',
        'AuthType=auth/munge',
        'AuthInfo=socket=%s,cred_expire=10' % munge_socket,  # also how long a requeued job waits (default 120 s)
        'CredType=cred/munge',
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_CPU',
        'MpiDefault=none',
        'ReturnToService=2',
        'JobAcctGatherType=jobacct_gather/none',
        'StateSaveLocation=%s/state' % folder,
        'SlurmdSpoolDir=%s/spool' % folder,
        'SlurmctldPidFile=%s/slurmctld.pid' % folder,
        'SlurmdPidFile=%s/slurmd.pid' % folder,
        'SlurmctldLogFile=%s/slurmctld.log' % folder,
        'SlurmdLogFile=%s/slurmd.log' % folder,
        'NodeName=%s NodeAddr=127.0.0.1 CPUs=%d State=UNKNOWN' % (host, cpus),
        'PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE',
        ''])


class SlurmCluster:
    """See the module docstring."""

    def __init__(self, folder):
        self.folder = str(folder)
        self.host = socket.gethostname().split('.')[0]
        self.conf = os.path.join(self.folder, 'slurm.conf')
        self.munge_socket = os.path.join(self.folder, 'munge', 'munge.socket')
        self.daemons = {}

    @property
    def env(self):
        return dict(os.environ, SLURM_CONF=self.conf)

    def start(self):
        for sub in ('state', 'spool', 'munge'):
            os.makedirs(os.path.join(self.folder, sub), exist_ok=True)
        os.chmod(self.folder, 0o755)  # munged refuses group/world-writable folders on the socket's path
        ctld_port, slurmd_port = _free_ports(2)
        with open(self.conf, 'w') as f:
            f.write(slurm_conf(self.folder, self.host, ctld_port, slurmd_port, self.munge_socket))
        try:
            self._start_munge()
            self._spawn('slurmctld', ['slurmctld', '-D', '-f', self.conf])
            self._spawn('slurmd', ['slurmd', '-D', '-f', self.conf, '-N', self.host])
            self._wait_node_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self):
        munge = os.path.join(self.folder, 'munge')
        key = os.path.join(munge, 'munge.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self._spawn('munged', ['munged', '-F', '--force', '--socket=%s' % self.munge_socket, '--key-file=%s' % key,
                               '--pid-file=%s' % os.path.join(munge, 'munged.pid'),
                               '--log-file=%s' % os.path.join(munge, 'munged.log'),
                               '--seed-file=%s' % os.path.join(munge, 'munged.seed')])
        self._wait(lambda: os.path.exists(self.munge_socket), 'munged to open %s' % self.munge_socket)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.folder, name + '.out'), 'w')
        self.daemons[name] = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def _wait(self, ready, what, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.daemons.items():
                if proc.poll() is not None:
                    raise RuntimeError('%s exited with %s while waiting for %s:\n%s'
                                       % (name, proc.returncode, what, self.daemon_logs()))
            if time.monotonic() > deadline:
                raise RuntimeError('timed out waiting for %s:\n%s' % (what, self.daemon_logs()))
            time.sleep(0.2)

    def _wait_node_idle(self):
        def idle():
            result = self.run(['sinfo', '-h', '-N', '-o', '%t'], check=False)
            return result.returncode == 0 and result.stdout.strip() == 'idle'
        self._wait(idle, 'node %s to be idle' % self.host)

    def daemon_logs(self, tail=3000):
        text = []
        for name in ('munge/munged.log', 'slurmctld.log', 'slurmd.log', 'munged.out', 'slurmctld.out', 'slurmd.out'):
            path = os.path.join(self.folder, name)
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    text.append('--- %s\n%s' % (name, f.read()[-tail:]))
        return '\n'.join(text)

    def run(self, argv, check=True, timeout=60, cwd=None, env=None):
        result = subprocess.run(argv, env=dict(self.env, **(env or {})), cwd=cwd, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError('%s exited %d:\n%s%s' % (' '.join(argv), result.returncode, result.stdout,
                                                        result.stderr))
        return result

    def sbatch(self, args, cwd, env=None):
        """Submits a job -> its id (sbatch --parsable)."""
        return int(self.run(['sbatch', '--parsable'] + list(args), cwd=cwd, env=env).stdout.strip().split(';')[0])

    def job(self, job_id):
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...); {} once it is forgotten."""
        result = self.run(['scontrol', '-o', 'show', 'job', str(job_id)], check=False)
        return dict(FIELD.findall(result.stdout)) if result.returncode == 0 else {}

    def wait_job(self, job_id, done, timeout, what='the job'):
        """Polls the job until `done(info)` -> info; fails with the job and daemon state on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if done(info):
                return info
            if time.monotonic() > deadline:
                raise AssertionError('timed out after %d s waiting for %s; job %s: %s' % (timeout, what, job_id, info))
            time.sleep(0.5)

    def wait_ended(self, job_id, timeout):
        ended = ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'PREEMPTED')
        return self.wait_job(job_id, lambda info: info.get('JobState') in ended, timeout, 'the end of the job')

    def stop(self):
        """Cancels what is still queued or running, ends the daemons this object started (by
        pid), then kills any job process left: slurmstepd and its tasks, found by the
        SLURM_CONF in the stepd's environment (they outlive slurmd: slurmstepd daemonises)."""
        stepds = set(self._stepds())
        if 'slurmctld' in self.daemons and self.daemons['slurmctld'].poll() is None:
            self.run(['scancel', '--user=%s' % os.getuid()], check=False)
            _wait_until(lambda: not _alive(stepds | set(self._stepds())), STOP_WAIT)
        stepds |= set(self._stepds())
        for name in reversed(DAEMONS):
            proc = self.daemons.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in _alive(stepds | set(self._stepds())):
            _kill_session(pid)
        _wait_until(lambda: not _alive(stepds), STOP_WAIT)

    def _stepds(self):
        return [pid for pid in _all_pids() if _name(pid) == 'slurmstepd' and _environ(pid).get('SLURM_CONF') == self.conf]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def _alive(pids):
    """The pids of `pids` that are still running (not gone, not a zombie)."""
    return [pid for pid in pids if _state(pid) not in (None, 'Z')]


def _all_pids():
    return [int(entry) for entry in os.listdir('/proc') if entry.isdigit()]


def _stat(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index('(') + 1:text.rindex(')')]
    fields = text[text.rindex(')') + 2:].split()
    return name, fields[0]


def _name(pid):
    stat = _stat(pid)
    return stat and stat[0]


def _state(pid):
    stat = _stat(pid)
    return stat and stat[1]


def _environ(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            entries = f.read().decode('utf-8', 'replace').split('\0')
    except OSError:
        return {}
    return dict(entry.split('=', 1) for entry in entries if '=' in entry)


def _kill_session(pid):
    """SIGKILL to a slurmstepd and every process of its session (the job's tasks)."""
    try:
        session = os.getsid(pid)
    except ProcessLookupError:
        return
    for other in _all_pids():
        try:
            if os.getsid(other) == session:
                os.kill(other, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
