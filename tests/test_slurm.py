"""The shipped configs/cluster/slurm.sbatch, unchanged, on a real one-node Slurm (Debian's
slurm-wlm 22.05 + munge, started by tests/slurm_cluster.py; `.ci/run` installs them):

- 1 ps + 2 workers stopped by `scancel` keep the step reached; the resubmitted job resumes
  from it and trains to the final step, next to an evaluator job that ends once it has
  evaluated the final checkpoint;
- a job at its time limit (--time=1 --signal=USR1@50) stops on the warning, requeues itself
  and resumes from the step it reached;
- a worker killed mid-run ends the whole job.

Without slurmctld (or root) the tests are skipped, except under CI=true, where they fail.
"""
import os
import re
import signal
import socket
import sys
import time

import pytest

from fcn.compat import tf
from pipeline_fixtures import REPO_ROOT, build_synthetic
import external_tools
import slurm_cluster

SCRIPT = 'configs/cluster/slurm.sbatch'
JOB_TIMEOUT = 240
STOPPED = re.compile(r'^1: stopped by (SIG\w+) at step (\d+): checkpoint (\S+) kept$', re.MULTILINE)
STEP = re.compile(r'^1: step (\d+)/', re.MULTILINE)


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    problem = None
    if not slurm_cluster.available():
        problem = 'Slurm is not installed (apt-get install slurm-wlm munge)'
    elif os.geteuid() != 0:
        problem = "Slurm's daemons run as root here; these tests need root"
    if problem:
        external_tools.missing(problem + ' (.ci/run installs slurm-wlm and munge)')
    with slurm_cluster.SlurmCluster(tmp_path_factory.mktemp('slurm')) as cluster:
        yield cluster


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=32)


def _port_base(count=3):
    """A base port with `count` free consecutive ports on this machine."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            base = probe.getsockname()[1]
        if base + count < 65536 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError('no %d consecutive free ports' % count)


def _free(port):
    with socket.socket() as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


class Job:
    """A job of the shipped script: `sbatch OPTIONS configs/cluster/slurm.sbatch configs/demo.yaml --set ...`
    from the repository root, in this test's environment (its python first on PATH)."""

    def __init__(self, slurm, folder, data_dir, run_dir, steps, sbatch_options=(), extra=(), argv=None):
        self.slurm = slurm
        overrides = ['data.dir=%s' % data_dir, 'train.run_dir=%s' % run_dir, 'train.steps=%d' % steps,
                     'model.width=0.0625', 'train.crop_size=32', 'train.batch_size=2', 'train.log_every_steps=1',
                     'train.save_every_steps=100000', 'train.summary_every_steps=100000'] + list(extra)
        if argv is None:  # what the README says: sbatch [OPTIONS] configs/cluster/slurm.sbatch CONFIG [--set ...]
            argv = [SCRIPT, 'configs/demo.yaml'] + sum([['--set', o] for o in overrides], [])
        output = os.path.join(str(folder), 'job-%j.out')
        env = {'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               'FCN_PORT_BASE': str(_port_base()), 'CUDA_VISIBLE_DEVICES': '', 'TF_CPP_MIN_LOG_LEVEL': '2'}
        self.id = slurm.sbatch(['--overcommit', '--output=%s' % output] + list(sbatch_options) + list(argv),
                               cwd=REPO_ROOT, env=env)
        self.output = output.replace('%j', str(self.id))

    def log(self):
        if not os.path.exists(self.output):
            return ''
        with open(self.output, errors='replace') as f:
            return f.read()

    def wait_for(self, condition, what, timeout=JOB_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not condition(self.log()):
            info = self.slurm.job(self.id)
            assert time.monotonic() < deadline, 'timed out waiting for %s; job %s\n%s' % (what, info, self.log())
            assert info.get('JobState') not in ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT'), (
                'job ended before %s: %s\n%s' % (what, info, self.log()))
            time.sleep(0.5)

    def wait_ended(self, timeout=JOB_TIMEOUT):
        try:
            return self.slurm.wait_ended(self.id, timeout)
        except AssertionError as e:
            raise AssertionError('%s\n%s' % (e, self.log())) from None

    def chief_step(self):
        steps = STEP.findall(self.log())
        return int(steps[-1]) if steps else 0


def _checkpoint_step(path):
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    return int(reader.get_tensor('global_step'))


def _task_pids(job_id, rank):
    """pids of the processes of job `job_id` whose SLURM_PROCID is `rank` (the tasks' train.py)."""
    pids = []
    for pid in slurm_cluster._all_pids():
        environ = slurm_cluster._environ(pid)
        if environ.get('SLURM_JOB_ID') == str(job_id) and environ.get('SLURM_PROCID') == str(rank) \
                and slurm_cluster._name(pid).startswith('python'):
            pids.append(pid)
    return pids


def test_scancel_keeps_the_step_reached_and_the_resubmitted_job_trains_to_the_end(slurm, data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    job = Job(slurm, tmp_path, data_dir, run_dir, steps=100000)  # no periodic checkpoint would come
    job.wait_for(lambda log: job.chief_step() >= 5, 'five steps')
    reached = job.chief_step()
    slurm.run(['scancel', str(job.id)])
    assert job.wait_ended()['JobState'] == 'CANCELLED'
    log = job.log()
    stopped = STOPPED.findall(log)
    assert len(stopped) == 1, log
    name, step, checkpoint = stopped[0]
    step = int(step)
    assert name == 'SIGTERM' and step >= reached
    assert checkpoint == os.path.join(run_dir, 'model.ckpt-%d' % step) == tf.train.latest_checkpoint(run_dir)
    assert _checkpoint_step(checkpoint) == step
    assert '0: ps 0: stopped by SIGTERM once the chief was done' in log
    assert not os.path.exists(os.path.join(run_dir, 'train.lock'))
    assert 'Traceback' not in log

    final = step + 10
    resumed = Job(slurm, tmp_path, data_dir, run_dir, steps=final)
    evaluator = Job(slurm, tmp_path, data_dir, run_dir, final, argv=[  # the README's evaluator job
        '--job-name=fcn-eval', '--ntasks=1', '--wrap',
        'python eval.py --config configs/demo.yaml --set data.dir=%s --set train.run_dir=%s --set model.width=0.0625 '
        '--set train.steps=%d --set eval.interval_secs=1' % (data_dir, run_dir, final)])
    info = resumed.wait_ended()
    log = resumed.log()
    assert info['JobState'] == 'COMPLETED' and info['ExitCode'] == '0:0', log
    assert '1: resuming from %s' % checkpoint in log
    assert '1: step %d/%d ' % (step + 1, final) in log
    assert '1: done: %s' % os.path.join(run_dir, 'model.ckpt-%d' % final) in log
    assert _checkpoint_step(tf.train.latest_checkpoint(run_dir)) == final
    info = evaluator.wait_ended()
    log = evaluator.log()
    assert info['JobState'] == 'COMPLETED' and info['ExitCode'] == '0:0', log
    assert 'step %d is the final step (train.steps %d): done' % (final, final) in log, log


def test_the_time_limit_warning_requeues_the_job_and_it_resumes(slurm, data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    job = Job(slurm, tmp_path, data_dir, run_dir, steps=100000, sbatch_options=['--time=1', '--signal=USR1@50'])
    job.wait_for(lambda log: re.search(r'^1: resuming from .*\n(.*\n)*1: step \d+/', log, re.MULTILINE),
                 'the requeued run to train', timeout=300)
    slurm.run(['scancel', str(job.id)])
    info = job.wait_ended()
    log = job.log()
    first = STOPPED.search(log)
    assert first and first.group(1) == 'SIGUSR1', log
    assert 'fcn slurm.sbatch: stopped before the time limit; requeueing job %d to resume' % job.id in log
    assert 'job %d run 1:' % job.id in log
    assert '1: resuming from %s' % first.group(3) in log.split('job %d run 1:' % job.id)[1]
    assert int(info['Restarts']) >= 1


def test_a_killed_worker_ends_the_job(slurm, data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    job = Job(slurm, tmp_path, data_dir, run_dir, steps=100000)
    job.wait_for(lambda log: job.chief_step() >= 3, 'three steps')
    workers = _task_pids(job.id, 2)
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    killed = time.monotonic()
    info = job.wait_ended(timeout=60)
    assert info['JobState'] == 'FAILED', job.log()
    assert time.monotonic() - killed < 30
    assert 'task 2: Killed' in job.log()
