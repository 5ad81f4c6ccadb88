"""Which process of a training job this is, and the TensorFlow servers and sessions it needs.

A cluster job runs the same `train.py` in every process; each learns its role from
  - TF_CONFIG (Kubernetes TFJob, fcn.launch), e.g.
    {"cluster": {"worker": ["h0:2222", "h1:2222"], "ps": ["h2:2222"]},
     "task": {"type": "worker", "index": 1}}
    Roles: 'chief', 'worker', 'ps', 'evaluator' ('master', an older name of the chief, is
    read as 'chief'). Without a 'chief' job, worker 0 is the chief. The evaluator is not
    part of the training cluster and starts no server.
  - or a Slurm step of several tasks (`srun`): ranks 0..FCN_NUM_PS-1 are parameter servers,
    the others workers (worker 0 = chief); a task's port is FCN_PORT_BASE (default 8888)
    plus its index on its node. This is the layout of
    tf.distribute.cluster_resolver.SlurmClusterResolver(jobs={'ps': P, 'worker': W}), read
    here from SLURM_* variables because the resolver reads only os.environ, sets
    CUDA_VISIBLE_DEVICES as a side effect, and needs nvidia-smi or gpus_per_node >= tasks
    per node (it fails on CPU-only nodes).

Between-graph replication with parameter servers: chief and workers each build the graph
(fcn.deploy places variables on the ps tasks) and run it in a session on their own server;
gradients are aggregated synchronously by SyncReplicasOptimizer (`sync_optimizer`).

How the trainer uses this module:

    info = cluster.resolve()                         # None: a single process
    if info is not None and info.task_type == 'evaluator':
        ... evaluate (eval loop) instead of training ...
    if info is not None:
        server = cluster.start_server(info)
        if info.task_type == 'ps':
            cluster.serve_forever(server, cluster.done_file(run_dir))  # until the chief is done
            return
    ... build the graph with fcn.deploy.from_config(cfg, info); every variable on
        variables_device() (fcn.deploy does it for the clones' variables) ...
    sync_hooks = []
    if cfg.deploy.sync_replicas:
        optimizer, sync_hooks = cluster.sync_optimizer(optimizer, info, cfg.deploy.replicas_to_aggregate)
    if cluster.is_chief(info):   # the chief initialises, saves, summarises
        session = MonitoredTrainingSession(**cluster.session_kwargs(info, base_config),
                                           hooks=sync_hooks + ..., checkpoint_dir=run_dir)
    else:                        # the other workers wait for the chief's initialisation
        session = cluster.worker_session(info, scaffold, sync_hooks + ..., base_config)
    if info is not None and info.is_chief:
        cluster.signal_done(cluster.done_file(run_dir))

TensorFlow is imported by the functions that need it, so fcn.launch (which only builds
TF_CONFIG) starts without it.
"""
import dataclasses
import json
import os
import time

TASK_TYPES = ('chief', 'worker', 'ps', 'evaluator')
TRAINING_JOBS = ('chief', 'worker', 'ps')
ALIASES = {'master': 'chief'}
SLURM_NUM_PS = 'FCN_NUM_PS'
SLURM_PORT_BASE = 'FCN_PORT_BASE'
DEFAULT_PORT_BASE = 8888
STOP_GRACE_SECS = 5
WORKER_POLL_SECS = 1.0
WORKER_MAX_WAIT_SECS = 7200
DONE_FILENAME = 'cluster.done'


class ClusterError(ValueError):
    """A cluster description (TF_CONFIG, Slurm environment) that cannot be trained with."""


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """This process's role in the job. cluster_spec: {job name: ['host:port', ...]}."""
    task_type: str
    task_index: int
    cluster_spec: dict
    rpc_layer: str = 'grpc'

    @property
    def is_chief(self):
        """The chief initialises variables and writes checkpoints and summaries."""
        if self.task_type == 'chief':
            return True
        return self.task_type == 'worker' and self.task_index == 0 and 'chief' not in self.cluster_spec

    @property
    def num_workers(self):
        """Training processes (chief + workers): the replicas whose gradients are aggregated."""
        return len(self.cluster_spec.get('chief', [])) + len(self.cluster_spec.get('worker', []))

    @property
    def worker_rank(self):
        """This training process's place among chief + workers (chief 0): distinct per
        process, so per-process random seeds differ."""
        offset = 1 if self.task_type == 'worker' and 'chief' in self.cluster_spec else 0
        return self.task_index + offset

    @property
    def num_ps(self):
        return len(self.cluster_spec.get('ps', []))

    @property
    def training_spec(self):
        """The jobs whose servers form the training cluster (the evaluator is not one)."""
        return {job: list(self.cluster_spec[job]) for job in TRAINING_JOBS if job in self.cluster_spec}

    @property
    def address(self):
        return self.cluster_spec[self.task_type][self.task_index]

    @property
    def master(self):
        """Session target of this task's server, e.g. 'grpc://host:2222'."""
        return '%s://%s' % (self.rpc_layer, self.address)


def is_chief(info):
    """True for the chief, and for a single process (info None)."""
    return info is None or info.is_chief


def resolve(environ=os.environ):
    """ClusterInfo from TF_CONFIG, else from a Slurm step of several tasks; None when this is
    a single process (neither is set, TF_CONFIG is '{}', or the cluster is one lone task)."""
    text = environ.get('TF_CONFIG', '').strip()
    if text:
        info = parse_tf_config(text)
    elif _slurm_num_tasks(environ) > 1:
        info = from_slurm(environ)
    else:
        return None
    if info is None or _is_lone_task(info):
        return None
    return info


def _is_lone_task(info):
    return info.task_type in ('chief', 'worker') and info.num_workers == 1 and info.num_ps == 0


def parse_tf_config(text):
    """TF_CONFIG JSON -> ClusterInfo (None for '{}'). Raises ClusterError naming the problem."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ClusterError('TF_CONFIG is not valid JSON (%s): %s' % (e, _clip(text))) from None
    if not isinstance(config, dict):
        raise ClusterError('TF_CONFIG must be a JSON object, got %s' % _clip(text))
    if not config:
        return None
    for key in ('cluster', 'task'):
        if not isinstance(config.get(key), dict):
            raise ClusterError('TF_CONFIG needs a %r object, got %s' % (key, _clip(text)))
    spec = _parse_cluster(config['cluster'])
    task_type, task_index = _parse_task(config['task'], spec)
    return ClusterInfo(task_type, task_index, spec, config.get('rpc_layer') or 'grpc')


def _clip(text, limit=200):
    return repr(text if len(text) <= limit else text[:limit] + '...')


def _parse_cluster(cluster):
    spec = {}
    for job, addresses in cluster.items():
        name = ALIASES.get(job.lower(), job.lower())
        if name not in TASK_TYPES:
            raise ClusterError('TF_CONFIG cluster has an unknown job %r (expected one of %s)'
                               % (job, ', '.join(TASK_TYPES)))
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise ClusterError("TF_CONFIG cluster job %r must list 'host:port' strings, got %r" % (job, addresses))
        spec[name] = list(addresses)
    validate_cluster_spec(spec)
    return spec


def _is_address(address):
    host, _, port = address.rpartition(':') if isinstance(address, str) else ('', '', '')
    return bool(host) and port.isdigit()


def validate_cluster_spec(spec):
    """Checks a {job: [addresses]} dict can train: one chief at most, some trainer, and
    parameter servers when there is more than one training process."""
    if len(spec.get('chief', [])) > 1:
        raise ClusterError('a cluster has at most one chief, got %d: %r' % (len(spec['chief']), spec['chief']))
    trainers = len(spec.get('chief', [])) + len(spec.get('worker', []))
    if trainers == 0:
        raise ClusterError('the cluster has no chief or worker task: %r' % (spec,))
    if trainers > 1 and not spec.get('ps'):
        raise ClusterError('the cluster has %d training tasks but no ps task; fcn trains across '
                           'processes with parameter servers: add a "ps" job' % trainers)


def _parse_task(task, spec):
    raw_type = task.get('type')
    task_type = ALIASES.get(str(raw_type).lower(), str(raw_type).lower())
    if task_type not in TASK_TYPES:
        raise ClusterError('TF_CONFIG task has an unknown type %r (expected one of %s)'
                           % (raw_type, ', '.join(TASK_TYPES)))
    index = task.get('index', 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ClusterError('TF_CONFIG task index must be an integer >= 0, got %r' % (index,))
    if task_type not in spec:
        if task_type == 'evaluator':
            return task_type, index
        raise ClusterError('TF_CONFIG task type %r is not a job of the cluster (jobs: %s)'
                           % (raw_type, ', '.join(sorted(spec))))
    if index >= len(spec[task_type]):
        raise ClusterError('TF_CONFIG task index %d is out of range: the cluster has %d %r task(s)'
                           % (index, len(spec[task_type]), task_type))
    return task_type, index


def make_tf_config(cluster_spec, task_type, task_index):
    """The TF_CONFIG JSON for one task of `cluster_spec` (what fcn.launch hands each process)."""
    return json.dumps({'cluster': cluster_spec, 'task': {'type': task_type, 'index': task_index}})


def _slurm_num_tasks(environ):
    value = environ.get('SLURM_STEP_NUM_TASKS', '')
    return int(value) if value.isdigit() else 0


def from_slurm(environ=os.environ):
    """ClusterInfo of this task of a Slurm step (srun), from SLURM_PROCID,
    SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE, plus FCN_NUM_PS
    (parameter servers, default 0) and FCN_PORT_BASE (default 8888)."""
    rank = _slurm_int(environ, 'SLURM_PROCID')
    num_tasks = _slurm_int(environ, 'SLURM_STEP_NUM_TASKS')
    num_ps = _slurm_int(environ, SLURM_NUM_PS, default=0)
    port_base = _slurm_int(environ, SLURM_PORT_BASE, default=DEFAULT_PORT_BASE)
    addresses = _slurm_addresses(environ, port_base)
    if len(addresses) != num_tasks:
        raise ClusterError('SLURM_STEP_TASKS_PER_NODE=%r places %d tasks but SLURM_STEP_NUM_TASKS=%d'
                           % (environ['SLURM_STEP_TASKS_PER_NODE'], len(addresses), num_tasks))
    if not 0 <= rank < num_tasks:
        raise ClusterError('SLURM_PROCID=%d is out of range for %d tasks' % (rank, num_tasks))
    if not 0 <= num_ps < num_tasks:
        raise ClusterError('%s=%d must be >= 0 and leave a worker among the step\'s %d tasks'
                           % (SLURM_NUM_PS, num_ps, num_tasks))
    spec = {'ps': addresses[:num_ps], 'worker': addresses[num_ps:]} if num_ps else {'worker': addresses}
    validate_cluster_spec(spec)
    _check_own_address(environ, addresses[rank], port_base)
    if rank < num_ps:
        return ClusterInfo('ps', rank, spec)
    return ClusterInfo('worker', rank - num_ps, spec)


def _slurm_int(environ, name, default=None):
    value = environ.get(name)
    if value is None:
        if default is None:
            raise ClusterError('%s is not set: not inside a Slurm step (srun)?' % name)
        return default
    try:
        return int(value)
    except ValueError:
        raise ClusterError('%s must be an integer, got %r' % (name, value)) from None


def _slurm_addresses(environ, port_base):
    """'host:port' of every task in rank order: node by node in node-list order (Slurm's
    node lists are sorted, as SlurmClusterResolver sorts them), port_base + index on the node."""
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import (
        expand_hostlist, expand_tasks_per_node)
    for name in ('SLURM_STEP_NODELIST', 'SLURM_STEP_TASKS_PER_NODE'):
        if not environ.get(name):
            raise ClusterError('%s is not set: not inside a Slurm step (srun)?' % name)
    try:
        hosts = expand_hostlist(environ['SLURM_STEP_NODELIST'])
        counts = expand_tasks_per_node(environ['SLURM_STEP_TASKS_PER_NODE'])
    except ValueError as e:
        raise ClusterError('cannot read the Slurm node list: %s' % e) from None
    if len(hosts) != len(counts):
        raise ClusterError('SLURM_STEP_NODELIST=%r names %d nodes but SLURM_STEP_TASKS_PER_NODE=%r gives %d counts'
                           % (environ['SLURM_STEP_NODELIST'], len(hosts), environ['SLURM_STEP_TASKS_PER_NODE'],
                              len(counts)))
    return ['%s:%d' % (host, port_base + i) for host, count in zip(hosts, counts) for i in range(count)]


def _check_own_address(environ, address, port_base):
    """Ranks are laid out node by node (Slurm's default block distribution); a task whose
    node and local id disagree with that layout would serve on another task's address."""
    node, local_id = environ.get('SLURMD_NODENAME'), environ.get('SLURM_LOCALID')
    if node is None or local_id is None or not local_id.isdigit():
        return
    own = '%s:%d' % (node, port_base + int(local_id))
    if own != address:
        raise ClusterError('SLURM_PROCID=%s runs on %s (SLURM_LOCALID=%s) but the block layout gives it %s: '
                           'run srun with --distribution=block'
                           % (environ.get('SLURM_PROCID'), node, local_id, address))


def start_server(info):
    """Starts this task's tf.compat.v1.train.Server. Parameter servers see no GPU: they
    only hold variables, and must not take the workers' GPU memory."""
    from fcn.compat import tf1
    if info.task_type not in TRAINING_JOBS:
        raise ClusterError('a %s task is not part of the training cluster and starts no server' % info.task_type)
    config = tf1.ConfigProto(device_count={'GPU': 0}) if info.task_type == 'ps' else None
    return tf1.train.Server(tf1.train.ClusterSpec(info.training_spec), job_name=info.task_type,
                            task_index=info.task_index, protocol=info.rpc_layer, config=config, start=True)


def serve_forever(server, done_file=None, poll_secs=2.0):
    """Serves a parameter server until `done_file` is written (created or touched after this
    call began: a file left by an earlier run does not count), or, without one, until the
    process is killed (fcn.launch, Kubernetes and Slurm all end the ps tasks of a job).
    `server` is kept referenced while serving; its gRPC threads do the work."""
    started = time.time()
    while not written_since(done_file, started):
        time.sleep(poll_secs)
    return server


def written_since(path, since):
    """True when the file `path` exists and was written at or after time `since`."""
    if path is None:
        return False
    try:
        return os.stat(path).st_mtime >= since
    except FileNotFoundError:
        return False


def done_file(run_dir):
    """The file by which the chief tells the ps tasks the job is over (run_dir is shared)."""
    return os.path.join(run_dir, DONE_FILENAME)


def signal_done(done_file):
    """Called by the chief when training is over: the ps tasks serving on done_file return."""
    os.makedirs(os.path.dirname(os.path.abspath(done_file)), exist_ok=True)
    with open(done_file, 'a'):
        pass
    os.utime(done_file)


def session_target(info):
    """The `master` for MonitoredTrainingSession: this task's server, '' for a single process."""
    return '' if info is None else info.master


def session_config(info, base=None):
    """Session ConfigProto (a copy of `base`) with device filters for a cluster task: a worker
    talks to the ps tasks and itself only, so it neither waits for nor depends on the other
    workers being up. Soft placement is on (clones on GPUs fall back to CPU)."""
    from fcn.compat import tf1
    config = tf1.ConfigProto()
    if base is not None:
        config.CopyFrom(base)
    config.allow_soft_placement = True
    if info is not None:
        del config.device_filters[:]
        config.device_filters.extend(['/job:ps', '/job:%s/task:%d' % (info.task_type, info.task_index)])
    return config


def session_kwargs(info, base_config=None):
    """The cluster arguments of tf1.train.MonitoredTrainingSession for this task: master,
    is_chief, config (see session_config) and a short stop_grace_period_secs. The short grace
    matters with sync_optimizer: at the end, the chief's aggregation queue runner is left
    blocked waiting for gradients, and closing the session would wait the default 120 s."""
    return dict(master=session_target(info), is_chief=is_chief(info),
                config=session_config(info, base_config), stop_grace_period_secs=STOP_GRACE_SECS)


def worker_session(info, scaffold, hooks, base_config=None, poll_secs=WORKER_POLL_SECS,
                   max_wait_secs=WORKER_MAX_WAIT_SECS):
    """The MonitoredSession of a worker that is not the chief (call it with the training
    graph as the default graph): what MonitoredTrainingSession(is_chief=False) makes, except
    that it checks every `poll_secs` whether the chief has initialised (or restored) the
    variables, where TF's WorkerSessionCreator checks every 30 s. A worker up before the
    chief's initialisation, which is common, would otherwise idle up to 30 s, and with
    synchronous replicas every other worker waits for it."""
    from fcn.compat import tf1
    if is_chief(info):
        raise ValueError('worker_session is for the workers other than the chief')
    kwargs = session_kwargs(info, base_config)
    creator = _WorkerSessionCreator(scaffold, tf1.get_default_graph(), kwargs['master'], kwargs['config'],
                                    poll_secs, max_wait_secs)
    return tf1.train.MonitoredSession(session_creator=creator, hooks=hooks,
                                      stop_grace_period_secs=kwargs['stop_grace_period_secs'])


class _WorkerSessionCreator:
    """A tf1.train.SessionCreator: tf1.train.WorkerSessionCreator with a poll interval."""

    def __init__(self, scaffold, graph, master, config, poll_secs, max_wait_secs):
        self._scaffold = scaffold
        self._graph = graph
        self._master = master
        self._config = config
        self._poll_secs = poll_secs
        self._max_wait_secs = max_wait_secs

    def create_session(self):
        from fcn.compat import tf1
        scaffold = self._scaffold
        scaffold.finalize()
        manager = tf1.train.SessionManager(
            local_init_op=scaffold.local_init_op, ready_op=scaffold.ready_op,
            ready_for_local_init_op=scaffold.ready_for_local_init_op, graph=self._graph,
            recovery_wait_secs=self._poll_secs, local_init_feed_dict=scaffold.local_init_feed_dict)
        return manager.wait_for_session(self._master, config=self._config, max_wait_secs=self._max_wait_secs)


def sync_optimizer(optimizer, info, replicas_to_aggregate=None):
    """Wraps `optimizer` for synchronous training -> (optimizer, hooks).

    Each step averages the gradients of `replicas_to_aggregate` replicas (default: every
    training process). Returns (optimizer, []) unchanged for a single process (info None).
    The trainer must pass global_step to apply_gradients and `hooks` to its
    MonitoredTrainingSession on every worker (the chief's hook starts the aggregation queue
    runner and puts the first tokens in). No tokens beyond what the replica counts require
    are put in, so the first update waits for a gradient from every replica rather than
    letting the first worker up run ahead alone."""
    if info is None:
        return optimizer, []
    replicas = replicas_to_aggregate or info.num_workers
    sync = _sync_replicas_class()(optimizer, replicas_to_aggregate=replicas, total_num_replicas=info.num_workers)
    num_tokens = max(0, replicas - info.num_workers)
    return sync, [sync.make_session_run_hook(info.is_chief, num_tokens=num_tokens)]


_SYNC_REPLICAS_CLASS = None


def _sync_replicas_class():
    """tf1.train.SyncReplicasOptimizer whose chief queue runner ends quietly when the session
    closes (built on first use: TensorFlow is imported lazily).

    At the end of training the chief's aggregation thread (QueueRunnerThread-sync_token_q)
    is blocked waiting for gradients of a step no worker will run. Closing the session
    cancels that wait with CancelledError, which the stock QueueRunner reports to the
    already-joined Coordinator; that re-raises it, and the thread dies printing
    "Exception in thread QueueRunnerThread-sync_token_q-...: CancelledError: Step was
    cancelled by an explicit call to `Session::Close()`". The runner below ignores a
    CancelledError only once a stop was requested (the session is closing); at any other
    time it is reported as before."""
    global _SYNC_REPLICAS_CLASS
    if _SYNC_REPLICAS_CLASS is not None:
        return _SYNC_REPLICAS_CLASS
    from fcn.compat import tf, tf1

    class ChiefQueueRunner(tf1.train.QueueRunner):
        def _run(self, sess, enqueue_op, coord=None):
            try:
                super()._run(sess, enqueue_op, coord)
            except tf.errors.CancelledError:
                if coord is None or not coord.should_stop():
                    raise

    class SyncReplicasOptimizer(tf1.train.SyncReplicasOptimizer):
        def get_chief_queue_runner(self):
            runner = super().get_chief_queue_runner()
            # Same queue and ops (none added to the graph), quiet at close.
            return ChiefQueueRunner(queue=runner.queue, enqueue_ops=runner.enqueue_ops,
                                    close_op=runner.close_op, cancel_op=runner.cancel_op,
                                    queue_closed_exception_types=runner.queue_closed_exception_types)

    _SYNC_REPLICAS_CLASS = SyncReplicasOptimizer
    return SyncReplicasOptimizer
