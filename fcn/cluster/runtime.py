"""The TensorFlow side of a cluster job: servers, sessions, synchronous replicas.

Between-graph replication with parameter servers: chief and workers each build the graph
(fcn.deploy places variables on the ps tasks) and run it in a session on their own server;
gradients are aggregated synchronously by SyncReplicasOptimizer (`sync_optimizer`).
The role of this process comes from fcn.cluster.roles; fcn.task dispatches on it.

How the trainer uses this module (fcn/train_lib.py):

    server = runtime.start_server(info, cfg.deploy.gpu_memory_growth)  # chief and workers (fcn.task: ps)
    ... build the graph with fcn.options.deployment(cfg, info) ...
    sync_hooks = []
    if cfg.deploy.sync_replicas:
        optimizer, sync_hooks = runtime.sync_optimizer(optimizer, info, cfg.deploy.replicas_to_aggregate)
    if roles.is_chief(info):     # the chief initialises, saves, summarises
        session = MonitoredTrainingSession(**runtime.session_kwargs(info, base_config),
                                           hooks=sync_hooks + ..., checkpoint_dir=run_dir)
    else:                        # the other workers wait for the chief's initialisation
        session = runtime.worker_session(info, scaffold, sync_hooks + ..., base_config)
    if info is not None and info.is_chief:
        done.signal_done(done.done_file(run_dir))
"""
import time

from fcn.cluster.done import written_since
from fcn.cluster.roles import TRAINING_JOBS, ClusterError, is_chief
from fcn.compat import tf, tf1

STOP_GRACE_SECS = 5
WORKER_POLL_SECS = 1.0
WORKER_MAX_WAIT_SECS = 7200


def start_server(info, gpu_memory_growth=False):
    """Starts this task's tf.compat.v1.train.Server. Parameter servers see no GPU: they
    only hold variables, and must not take the workers' GPU memory. A worker's GPUs are
    set up by its server, whose config is the one that counts: the session's gpu_options
    are ignored there, so deploy.gpu_memory_growth goes here."""
    if info.task_type not in TRAINING_JOBS:
        raise ClusterError('a %s task is not part of the training cluster and starts no server' % info.task_type)
    if info.task_type == 'ps':
        config = tf1.ConfigProto(device_count={'GPU': 0})
    else:
        config = tf1.ConfigProto()
        config.gpu_options.allow_growth = gpu_memory_growth
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


def session_target(info):
    """The `master` for MonitoredTrainingSession: this task's server, '' for a single process."""
    return '' if info is None else info.master


def session_config(info, base=None):
    """Session ConfigProto (a copy of `base`) with device filters for a cluster task: a worker
    talks to the ps tasks and itself only, so it neither waits for nor depends on the other
    workers being up. Soft placement is on (clones on GPUs fall back to CPU)."""
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
    sync = SyncReplicasOptimizer(optimizer, replicas_to_aggregate=replicas, total_num_replicas=info.num_workers)
    num_tokens = max(0, replicas - info.num_workers)
    return sync, [sync.make_session_run_hook(info.is_chief, num_tokens=num_tokens)]


class _ChiefQueueRunner(tf1.train.QueueRunner):
    """The chief's aggregation queue runner, quiet when the session closes.

    At the end of training the chief's aggregation thread (QueueRunnerThread-sync_token_q)
    is blocked waiting for gradients of a step no worker will run. Closing the session
    cancels that wait with CancelledError, which the stock QueueRunner reports to the
    already-joined Coordinator; that re-raises it, and the thread dies printing
    "Exception in thread QueueRunnerThread-sync_token_q-...: CancelledError: Step was
    cancelled by an explicit call to `Session::Close()`". This runner ignores a
    CancelledError only once a stop was requested (the session is closing); at any other
    time it is reported as before."""

    def _run(self, sess, enqueue_op, coord=None):
        try:
            super()._run(sess, enqueue_op, coord)
        except tf.errors.CancelledError:
            if coord is None or not coord.should_stop():
                raise


class SyncReplicasOptimizer(tf1.train.SyncReplicasOptimizer):
    """tf1.train.SyncReplicasOptimizer whose chief queue runner ends quietly at session close."""

    def get_chief_queue_runner(self):
        runner = super().get_chief_queue_runner()
        # Same queue and ops (none added to the graph), quiet at close.
        return _ChiefQueueRunner(queue=runner.queue, enqueue_ops=runner.enqueue_ops,
                                 close_op=runner.close_op, cancel_op=runner.cancel_op,
                                 queue_closed_exception_types=runner.queue_closed_exception_types)
