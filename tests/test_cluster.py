"""fcn.cluster (roles, done, runtime): TF_CONFIG and Slurm parsing, sync-replica helpers, and a real 1 ps + 2 workers job."""
import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fcn.cluster import roles, runtime
from fcn.cluster.done import done_file, signal_done
from fcn.cluster.roles import ClusterError, ClusterInfo

SPEC = {'worker': ['w0:2222', 'w1:2222'], 'ps': ['p0:2222']}
WITH_CHIEF = {'chief': ['c0:2222'], 'worker': ['w0:2222', 'w1:2222'], 'ps': ['p0:2222', 'p1:2222']}


def _tf_config(spec, task_type, index):
    return {'TF_CONFIG': roles.make_tf_config(spec, task_type, index)}


@pytest.mark.parametrize('spec, task_type, index, is_chief, rank', [
    (WITH_CHIEF, 'chief', 0, True, 0),
    (WITH_CHIEF, 'worker', 0, False, 1),
    (WITH_CHIEF, 'ps', 1, False, 1),
    (SPEC, 'worker', 0, True, 0),   # no chief job: worker 0 is the chief
    (SPEC, 'worker', 1, False, 1),
    (SPEC, 'ps', 0, False, 0),
])
def test_tf_config_roles(spec, task_type, index, is_chief, rank):
    info = roles.resolve(_tf_config(spec, task_type, index))
    assert (info.task_type, info.task_index, info.cluster_spec) == (task_type, index, spec)
    assert info.worker_rank == rank
    assert info.is_chief is is_chief and roles.is_chief(info) is is_chief
    assert info.master == 'grpc://' + spec[task_type][index]
    assert runtime.session_target(info) == info.master
    assert (info.num_workers, info.num_ps) == (len(spec.get('chief', [])) + 2, len(spec['ps']))


def test_tfjob_style_config_with_master_alias_and_evaluator():
    text = json.dumps({'cluster': {'master': ['m:1'], 'worker': ['w:1'], 'ps': ['p:1'], 'evaluator': ['e:1']},
                       'task': {'type': 'master', 'index': 0}, 'environment': 'cloud'})
    info = roles.resolve({'TF_CONFIG': text})
    assert (info.task_type, info.is_chief, info.num_workers) == ('chief', True, 2)
    assert info.training_spec == {'chief': ['m:1'], 'worker': ['w:1'], 'ps': ['p:1']}
    evaluator = roles.parse_tf_config(json.dumps({'cluster': {'chief': ['m:1']},
                                                    'task': {'type': 'evaluator', 'index': 0}}))
    assert (evaluator.task_type, evaluator.is_chief) == ('evaluator', False)
    with pytest.raises(ClusterError, match='evaluator task is not part of the training cluster'):
        runtime.start_server(evaluator)


@pytest.mark.parametrize('environ', [
    {},
    {'TF_CONFIG': ''},
    {'TF_CONFIG': '{}'},
    _tf_config({'worker': ['localhost:2222']}, 'worker', 0),
    {'SLURM_PROCID': '0', 'SLURM_STEP_NUM_TASKS': '1'},
])
def test_single_process_is_none(environ):
    assert roles.resolve(environ) is None
    assert runtime.session_target(None) == '' and roles.is_chief(None)


@pytest.mark.parametrize('text, message', [
    ('{"cluster": {"worker": ["a:1"]', "TF_CONFIG is not valid JSON .*'{\"cluster\""),
    ('[1, 2]', 'must be a JSON object'),
    ('{"task": {"type": "worker", "index": 0}}', "needs a 'cluster' object"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs a 'task' object"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "trainer", "index": 0}}',
     "unknown type 'trainer' .*chief, worker, ps, evaluator"),
    ('{"cluster": {"worker": ["a:1", "c:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 2}}',
     "index 2 is out of range: the cluster has 2 'worker' task"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": -1}}',
     'integer >= 0, got -1'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": "0"}}',
     "integer >= 0, got '0'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task type 'ps' is not a job of the cluster \\(jobs: worker\\)"),
    ('{"cluster": {"workers": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     "unknown job 'workers'"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}',
     "job 'worker' must list 'host:port' strings, got \\['a'\\]"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}',
     '2 training tasks but no ps task'),
    ('{"cluster": {"chief": ["a:1", "b:1"], "ps": ["c:1"]}, "task": {"type": "chief", "index": 0}}',
     'at most one chief, got 2'),
    ('{"cluster": {"ps": ["c:1"]}, "task": {"type": "ps", "index": 0}}', 'no chief or worker'),
])
def test_malformed_tf_config_names_the_problem(text, message):
    with pytest.raises(ClusterError, match=message):
        roles.resolve({'TF_CONFIG': text})


def _slurm_env(procid, **extra):
    env = {'SLURM_PROCID': str(procid), 'SLURM_STEP_NUM_TASKS': '5', 'SLURM_STEP_NODELIST': 'node[01-02],node10',
           'SLURM_STEP_TASKS_PER_NODE': '2(x2),1', 'FCN_NUM_PS': '2'}
    env.update(extra)
    return env


SLURM_SPEC = {'ps': ['node01:8888', 'node01:8889'], 'worker': ['node02:8888', 'node02:8889', 'node10:8888']}


@pytest.mark.parametrize('procid, task_type, index, is_chief', [
    (0, 'ps', 0, False), (1, 'ps', 1, False), (2, 'worker', 0, True), (4, 'worker', 2, False)])
def test_slurm_environment(procid, task_type, index, is_chief):
    info = roles.resolve(_slurm_env(procid))
    assert info == ClusterInfo(task_type, index, SLURM_SPEC)
    assert info.is_chief is is_chief


def test_slurm_layout_matches_slurm_cluster_resolver(monkeypatch):
    import tensorflow as tf
    for name, value in _slurm_env(3).items():
        monkeypatch.setenv(name, value)
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        jobs={'ps': 2, 'worker': 3}, gpus_per_node=2, gpus_per_task=1, auto_set_gpu=False)
    assert resolver.cluster_spec().as_dict() == SLURM_SPEC
    info = roles.from_slurm(os.environ)
    assert resolver.get_task_info() == (info.task_type, info.task_index) == ('worker', 1)


def test_slurm_port_base_and_own_address_check():
    info = roles.resolve(_slurm_env(4, FCN_PORT_BASE='9000', SLURMD_NODENAME='node10', SLURM_LOCALID='0'))
    assert info.address == 'node10:9000'
    with pytest.raises(ClusterError, match='SLURM_PROCID=4 runs on node01 .*node10:8888.*distribution=block'):
        roles.resolve(_slurm_env(4, SLURMD_NODENAME='node01', SLURM_LOCALID='0'))


@pytest.mark.parametrize('extra, message', [
    (dict(SLURM_STEP_NODELIST=None), 'SLURM_STEP_NODELIST is not set'),
    (dict(SLURM_STEP_TASKS_PER_NODE='2,2,2'), "places 6 tasks but SLURM_STEP_NUM_TASKS=5"),
    (dict(SLURM_STEP_TASKS_PER_NODE='2(x2),1,1'), 'names 3 nodes but .* gives 4 counts'),
    (dict(FCN_NUM_PS='x'), "FCN_NUM_PS must be an integer, got 'x'"),
    (dict(FCN_NUM_PS='5'), 'FCN_NUM_PS=5 must be >= 0 and leave a worker'),
    (dict(FCN_NUM_PS='0'), '5 training tasks but no ps task'),
    (dict(SLURM_PROCID='7'), 'SLURM_PROCID=7 is out of range for 5 tasks'),
])
def test_bad_slurm_environment(extra, message):
    env = {k: v for k, v in _slurm_env(0, **extra).items() if v is not None}
    with pytest.raises(ClusterError, match=message):
        roles.resolve(env)


def test_session_config_filters_devices_to_ps_and_self():
    info = ClusterInfo('worker', 1, SPEC)
    config = runtime.session_config(info)
    assert list(config.device_filters) == ['/job:ps', '/job:worker/task:1']
    assert config.allow_soft_placement
    assert list(runtime.session_config(None).device_filters) == []
    kwargs = runtime.session_kwargs(info)
    assert (kwargs['master'], kwargs['is_chief'], kwargs['config']) == ('grpc://w1:2222', False, config)
    assert kwargs['stop_grace_period_secs'] < 30
    assert runtime.session_kwargs(None)['is_chief']


def test_sync_optimizer_aggregates_every_worker():
    from fcn.compat import tf, tf1
    with tf.Graph().as_default():
        base = tf1.train.GradientDescentOptimizer(0.1)
        assert runtime.sync_optimizer(base, None) == (base, [])
        info = ClusterInfo('chief', 0, WITH_CHIEF)
        optimizer, hooks = runtime.sync_optimizer(base, info)
        assert isinstance(optimizer, tf1.train.SyncReplicasOptimizer)
        assert (optimizer._replicas_to_aggregate, optimizer._total_num_replicas) == (3, 3)
        assert len(hooks) == 1 and hooks[0]._is_chief
        optimizer, _ = runtime.sync_optimizer(base, info, replicas_to_aggregate=2)
        assert optimizer._replicas_to_aggregate == 2


def test_serve_forever_returns_when_done_file_is_written_after_it_started(tmp_path):
    done = tmp_path / 'run'
    done.mkdir()
    done = done / os.path.basename(done_file(str(done)))
    done.write_text('')
    os.utime(done, (time.time() - 60, time.time() - 60))  # left by an earlier run
    server = object()
    thread = threading.Thread(target=runtime.serve_forever, args=(server, str(done), 0.02), daemon=True)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive(), 'a stale done file must not stop the ps'
    signal_done(str(done))
    thread.join(timeout=5)
    assert not thread.is_alive()


# A tiny between-graph job: worker i builds one CPU clone of loss 0.5 * (w - target_i)^2
# with fcn.deploy, targets 1 and 3; SyncReplicasOptimizer averages the 2 workers' gradients
# per step, which is the gradient of 0.5 * (w - 2)^2.
SMOKE_SCRIPT = textwrap.dedent('''
    import os, sys, time
    from fcn import deploy
    from fcn.cluster import roles, runtime
    from fcn.compat import tf, tf1

    info = roles.resolve()
    server = runtime.start_server(info)
    if info.task_type == 'ps':
        runtime.serve_forever(server)
    ready = os.path.join(os.environ['SMOKE_DIR'], 'chief_ready')
    with tf.Graph().as_default():
        config = deploy.DeploymentConfig(clone_on_cpu=True, replica_id=info.task_index,
                                         num_replicas=info.num_workers, num_ps_tasks=info.num_ps)
        with tf1.device(config.variables_device()):
            global_step = tf1.train.get_or_create_global_step()
        def model_fn():
            w = tf1.get_variable('w', [], initializer=tf1.zeros_initializer())
            tf1.losses.add_loss(0.5 * tf.square(w - (1.0 + 2.0 * info.task_index)))
            return w
        clones = deploy.create_clones(config, model_fn)
        w = clones[0].outputs
        optimizer, hooks = runtime.sync_optimizer(tf1.train.GradientDescentOptimizer(0.5), info)
        _, grads_and_vars = deploy.optimize_clones(clones, optimizer)
        with tf1.device(config.optimizer_device()):
            train_op = optimizer.apply_gradients(grads_and_vars, global_step)
        class Report(tf1.train.SessionRunHook):
            def end(self, session):
                print('done global_step=%d w=%.6f' % tuple(session.run([global_step, w])), flush=True)
        hooks += [tf1.train.StopAtStepHook(last_step=5), Report()]
        if not info.is_chief:
            while not os.path.exists(ready):  # skips the 30 s poll of a worker that is up first
                time.sleep(0.05)
        with tf1.train.MonitoredTrainingSession(hooks=hooks, **runtime.session_kwargs(info)) as sess:
            if info.is_chief:
                open(ready, 'w').close()
            while not sess.should_stop():
                sess.run(train_op)
                print('trained a step', flush=True)
''')


@pytest.mark.tf_subset
def test_sync_training_job_of_one_ps_and_two_workers(tmp_path):
    """Real servers on 127.0.0.1 started by fcn.launch; proves the helpers work on this TF."""
    script = tmp_path / 'smoke.py'
    script.write_text(SMOKE_SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, SMOKE_DIR=str(tmp_path), PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL='2')
    env.pop('TF_CONFIG', None)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'fcn.launch', '--ps', '1', '--workers', '2', '--config', 'configs/base.yaml',
         '--command', '%s %s' % (sys.executable, script), '--grace_secs', '2'],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # the launcher's tasks get SIGTERM when it dies
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert '[worker:1] trained a step' in output, output
    done = re.search(r'\[worker:0\] done global_step=(\d+) w=([\d.]+)', output)
    assert done, output
    step, value = int(done.group(1)), float(done.group(2))
    # Each update averages the workers' gradients (w - 1) and (w - 3): w_k = 2 - 2 * 0.5**k.
    # Summed gradients would give w_1 = 2 already; unsynchronised updates, one worker's
    # gradient at a time, other values. Worker 1 may add one more update while the chief
    # reads, hence the k window.
    assert 5 <= step <= 7, output
    assert any(abs(value - (2 - 2 * 0.5 ** k)) < 1e-5 for k in (step - 1, step, step + 1)), output


def test_tfjob_and_slurm_script_take_the_same_parameters():
    """tfjob.yaml: every replica runs `python train.py` with one shared argument list (config +
    --set overrides; PS replicas = the ps count); slurm.sbatch: srun runs train.py with the
    config and overrides given after the script, FCN_NUM_PS parameter servers."""
    import yaml
    from fcn.config import add_config_args, load_config
    with open('configs/cluster/tfjob.yaml') as f:
        replicas = yaml.safe_load(f)['spec']['tfReplicaSpecs']
    containers = [spec['template']['spec']['containers'][0] for spec in replicas.values()]
    assert [c['command'] for c in containers] == [['python', 'train.py']] * 2
    assert containers[0]['args'] == containers[1]['args']
    args = add_config_args(argparse.ArgumentParser()).parse_args(containers[0]['args'])
    assert load_config(args.config, args.overrides).deploy.sync_replicas
    assert replicas['PS']['replicas'] == 1
    with open('configs/cluster/slurm.sbatch') as f:
        script = f.read()
    assert '"$PYTHON" train.py --config "$CONFIG" "$@"' in script
    assert 'export FCN_NUM_PS=${FCN_NUM_PS:-1}' in script


# --- structure: role resolution without TensorFlow, one dispatch of the roles ------------------

def test_role_resolution_and_launcher_do_not_import_tensorflow():
    """fcn.launch and the role/done modules run in every task before TensorFlow is needed."""
    code = ('import sys, fcn.cluster.roles, fcn.cluster.done, fcn.launch\n'
            'info = fcn.cluster.roles.resolve({"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2", '
            '"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "FCN_NUM_PS": "1"})\n'
            'print(info.task_type, info.address, sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))')
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=repo))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['worker', 'n2:8888', '[]']


@pytest.mark.parametrize('hostlist, tasks', [
    ('node[01-02],node10', '2(x2),1'), ('n[1-2],m5,o[3-4,6,7-9]', '1,2(x3),3,1(x4)'),
    ('gpu-a[008-011],cpu7', '4(x5)'), ('single', '3')])
def test_slurm_lists_are_read_as_slurm_cluster_resolver_reads_them(hostlist, tasks):
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as reference
    assert roles.expand_hostlist(hostlist) == reference.expand_hostlist(hostlist)
    assert roles.expand_tasks_per_node(tasks) == reference.expand_tasks_per_node(tasks)


@pytest.mark.parametrize('hostlist', ['n[1-2', 'n[a-b]', 'n[1-2-3]', 'a,,b'])
def test_malformed_slurm_hostlist_is_a_value_error(hostlist):
    with pytest.raises(ValueError, match='invalid hostlist'):
        roles.expand_hostlist(hostlist)


def test_every_role_is_dispatched_by_fcn_task(monkeypatch):
    from fcn import eval_lib, task, train_lib
    calls = []
    monkeypatch.setattr(train_lib, 'train', lambda cfg, info, log, signals: calls.append(('train', info)) or 7)
    monkeypatch.setattr(eval_lib, 'evaluate_loop', lambda cfg: calls.append(('eval', None)))
    monkeypatch.setattr(task, 'serve_parameters', lambda cfg, info, log, signals: calls.append(('serve', info)))
    chief, ps = ClusterInfo('chief', 0, WITH_CHIEF), ClusterInfo('ps', 1, WITH_CHIEF)
    evaluator = ClusterInfo('evaluator', 0, WITH_CHIEF)
    assert task.run('cfg', None) == 7 and task.run('cfg', chief) == 7
    assert task.run('cfg', ps) is None and task.run('cfg', evaluator) is None
    assert calls == [('train', None), ('train', chief), ('serve', ps), ('eval', None)]


def test_only_a_ps_serves_and_only_chief_and_workers_train():
    from fcn import task, train_lib
    with pytest.raises(ClusterError, match='only a ps task serves parameters; this task is worker:1'):
        task.serve_parameters(None, ClusterInfo('worker', 1, SPEC))
    with pytest.raises(ValueError, match='only chief and worker tasks train; this task is ps:0'):
        train_lib.train(_MinimalConfig(), ClusterInfo('ps', 0, SPEC))


class _MinimalConfig:
    class deploy:
        num_clones, clone_on_cpu = 1, False


# --- Slurm allocations: one clone per GPU a task is given ---------------------------------------

def test_slurm_gpus_per_task_from_the_allocation():
    two_nodes = {'ps': ['n1:8888'], 'worker': ['n1:8889', 'n2:8888']}
    step = {'SLURM_STEP_ID': '0'}
    assert roles.slurm_gpus_per_task({}) is None  # not in a Slurm step
    assert roles.slurm_gpus_per_task(dict(step)) is None  # no GPUs allocated
    assert roles.slurm_gpus_per_task(dict(step, SLURM_GPUS_PER_TASK='a100:2')) == 2
    on_node = dict(step, SLURM_GPUS_ON_NODE='4')
    assert roles.slurm_gpus_per_task(on_node) == 4  # one task, no cluster
    assert roles.slurm_gpus_per_task(on_node, ClusterInfo('worker', 0, two_nodes)) == 4  # the ps takes none
    both = {'ps': ['n1:8888'], 'worker': ['n2:8888', 'n2:8889']}
    assert roles.slurm_gpus_per_task(on_node, ClusterInfo('worker', 1, both)) == 2  # 2 workers share n2's 4


def test_num_clones_is_explicit_in_a_config_or_override_but_not_from_base_yaml(tmp_path):
    from fcn.config import sets_key
    assert not sets_key('configs/demo.yaml', [], 'deploy.num_clones')  # only base.yaml's default
    assert sets_key('configs/demo.yaml', ['deploy.num_clones=2'], 'deploy.num_clones')
    child = tmp_path / 'child.yaml'
    child.write_text('base: %s\ndeploy:\n  num_clones: 2\n' % os.path.abspath('configs/demo.yaml'))
    grandchild = tmp_path / 'grandchild.yaml'
    grandchild.write_text('base: child.yaml\ntrain:\n  steps: 5\n')
    assert sets_key(str(grandchild), [], 'deploy.num_clones')
