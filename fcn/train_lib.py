"""Training: slim provider -> clones -> averaged gradients -> MonitoredTrainingSession.

A run dir holds everything of one run: checkpoints, TensorBoard events, the resolved
config. Restarting the same command resumes from the run dir's latest checkpoint;
`init.checkpoint` (vgg_16.ckpt) is only read when the run dir has none.
"""

import time

from fcn import accumulate, checkpoints, deploy, failures, losses, optim, options, runlock, stopping, summaries
from fcn import run as runs
from fcn.cluster import done, roles, runtime
from fcn.compat import loss_scale_optimizer, session_options, set_op_determinism, slim, tf, tf1, visible_gpus
from fcn.config import ConfigError
from fcn.data import info as dataset_info
from fcn.input import provider
from fcn.input.preprocess import train_preprocess_fn
from fcn.hooks import RunDirWatch, StopOnSignal, SummarySaverHook, TrainingMonitor
from fcn.nets.fcn import build_model
from fcn.summaries import colorize_tensor



def _process_seed(seed, cluster_info):
    """train.seed, offset by the worker rank in a cluster job: every worker drawing the same
    crops and flips would waste the extra replicas."""
    return seed if cluster_info is None else seed + cluster_info.worker_rank


class TrainGraph:
    """The training graph: inputs, clones, optimizer, summaries; built in `self.graph`.

    One update is `run_step(session)`: a single run of train_op, or with
    train.accumulate_steps k > 1, k - 1 runs of `accumulate_op` and then train_op (fcn.accumulate).
    """

    def __init__(self, cfg, deploy_config, cluster_info=None, info=None):
        self.deploy_config = deploy_config
        self.cluster_info = cluster_info
        self.sync_hooks = []
        info = info or dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes)
        self.dataset = provider.get_dataset(cfg.data.dir, cfg.data.train_split, info)
        self.options = opts = options.training(cfg, info)  # the config's last use here: values from now on
        self.graph = tf.Graph()
        with self.graph.as_default():
            if opts.seed is not None:
                tf1.set_random_seed(_process_seed(opts.seed, cluster_info))
            self._build()

    def _build(self):
        opts, config = self.options, self.deploy_config
        with tf1.device(config.variables_device()):  # tf1.device: also takes the ps device function
            self.global_step = tf1.train.get_or_create_global_step()
        with tf1.device(config.inputs_device()):
            queue = self._input_queue()
        self.clones = clones = deploy.create_clones(config, self._clone_fn, [queue])
        first = clones[0]
        with tf1.device(config.optimizer_device()):
            self.learning_rate = optim.learning_rate(opts.schedule, self.global_step)
            self.optimizer = optim.make_optimizer(opts.optimizer, self.learning_rate, opts.gradients)
        if opts.mixed_precision:  # its loss-scale variables are shared: with the others (ps tasks)
            with tf1.device(config.variables_device()):
                self.optimizer = loss_scale_optimizer(self.optimizer)
        with tf1.device(config.optimizer_device()):
            if self.cluster_info is not None and opts.sync_replicas:
                self.optimizer, self.sync_hooks = runtime.sync_optimizer(
                    self.optimizer, self.cluster_info, opts.replicas_to_aggregate)
        self.total_loss, grads_and_vars = deploy.optimize_clones(
            clones, self.optimizer, var_list=_trainable_variables(opts.trainable_scopes))
        self.accumulator = self.accumulate_op = None
        if opts.accumulate_steps > 1:
            with tf1.device(config.optimizer_device()):
                self.accumulator = accumulate.GradientAccumulator(grads_and_vars, self.total_loss,
                                                                  opts.accumulate_steps)
                grads_and_vars = self.accumulator.mean_gradients()
            self.accumulate_op, self.total_loss = self.accumulator.add_op, self.accumulator.mean_loss
        grads_and_vars = optim.transform_gradients(opts.gradients, grads_and_vars, opts.optimizer.name)
        self.train_op = self._apply(grads_and_vars)
        if self.accumulator is not None:
            with tf1.device(config.optimizer_device()):
                self.train_op = self.accumulator.reset_op(self.train_op)
        with tf.control_dependencies([self.train_op]):
            self.step_after_update = tf.identity(self.global_step)
        self._add_summaries(first)

    def run_step(self, session):
        """One update in a MonitoredSession -> the global step after it. With accumulation,
        the first k - 1 batches run without hooks: the hooks see one run per update."""
        if self.accumulator is None:
            return session.run(self.step_after_update)

        def step_fn(step_context):
            for _ in range(self.accumulator.num_steps - 1):
                step_context.session.run(self.accumulate_op)
            return step_context.run_with_hooks(self.step_after_update)
        return session.run_step_fn(step_fn)

    def _input_queue(self):
        num_clones = self.deploy_config.num_clones
        preprocess_fn = train_preprocess_fn(self.options.augment, self.dataset.ignore_label)
        if self.options.input.deterministic and num_clones > 1:
            # clones racing for batches of one queue would take them in any order: split one batch instead
            batch = provider.train_batch(self.dataset, self.options.batch_size, preprocess_fn, self.options.input)
            queue = slim.prefetch_queue.prefetch_queue([batch['images'], batch['labels']], capacity=2)
            return _SplitInCloneOrder(queue.dequeue(), num_clones)
        per_clone = self.options.batch_size // num_clones
        batch = provider.train_batch(self.dataset, per_clone, preprocess_fn, self.options.input)
        return slim.prefetch_queue.prefetch_queue([batch['images'], batch['labels']],
                                                  capacity=2 * num_clones)

    def _clone_fn(self, queue):
        """One clone: dequeue a batch, run the model, add its loss to the losses collection."""
        images, labels = queue.dequeue()
        logits, _ = build_model(images, self.options.model, self.dataset.num_classes, is_training=True)
        loss, terms = losses.weighted_loss(logits, labels, self.dataset.num_classes, self.dataset.ignore_label,
                                           self.options.loss, self.global_step)
        tf1.losses.add_loss(loss)
        return {'images': images, 'labels': labels, 'logits': logits, 'loss': loss, 'loss_terms': terms}

    def _apply(self, grads_and_vars):
        with tf1.device(self.deploy_config.optimizer_device()):
            apply_op = self.optimizer.apply_gradients(grads_and_vars, global_step=self.global_step)
            self.ema = optim.moving_average(self.options.ema_decay, self.global_step)
            if self.ema is None:
                return apply_op
            with tf.control_dependencies([apply_op]):
                return tf.group(self.ema[1])

    def _add_summaries(self, first_clone):
        outputs = first_clone.outputs
        palette = self.dataset.palette
        ignore = self.dataset.ignore_label
        predictions = tf.argmax(outputs['logits'], axis=3, output_type=tf.int32)
        summaries.scalar('loss/total', self.total_loss)  # tags exactly as README's TensorBoard section
        summaries.scalar('loss/segmentation', outputs['loss'])
        for name, value in outputs['loss_terms'].items():
            summaries.scalar('loss/' + name, value)
        summaries.scalar('learning_rate', self.learning_rate)
        summaries.images('image', tf.cast(outputs['images'], tf.uint8), max_outputs=3)
        summaries.images('ground_truth', colorize_tensor(outputs['labels'], palette, ignore), max_outputs=3)
        summaries.images('prediction', colorize_tensor(predictions, palette, ignore), max_outputs=3)


class _SplitInCloneOrder:
    """One batch split into equal parts; the i-th `dequeue()` call (clone i, as
    deploy.create_clones builds them in order) gets part i."""

    def __init__(self, tensors, num_parts):
        self._parts = list(zip(*[tf.split(tensor, num_parts, axis=0) for tensor in tensors]))

    def dequeue(self):
        return self._parts.pop(0)


def _trainable_variables(scopes):
    """Trainable variables, restricted to `scopes` (train.trainable_scopes) when given."""
    variables = tf1.trainable_variables()
    if not scopes:
        return variables
    chosen = [v for v in variables if any(v.op.name.startswith(s.rstrip('/') + '/') for s in scopes)]
    if not chosen:
        raise ConfigError('train.trainable_scopes %r match no variable (e.g. %s)'
                          % (list(scopes), variables[0].op.name if variables else 'none'))
    return chosen


def session_config(cfg):
    """The training sessions' ConfigProto: soft placement, train.xla, train.mixed_precision,
    deploy.gpu_memory_growth (default off: TensorFlow takes the whole GPU at start)."""
    config = session_options(tf1.ConfigProto(allow_soft_placement=True),
                             xla=cfg.train.xla, mixed_precision=cfg.train.mixed_precision)
    return deploy.shared_gpu_config(config) if cfg.deploy.gpu_memory_growth else config


def checkpoint_step(checkpoint):
    """The global step saved in a checkpoint."""
    return int(tf.train.load_checkpoint(checkpoint).get_tensor('global_step'))


def _hooks(cfg, graph, scaffold, is_chief, log, stop_on_signal=None):
    """(hooks, chief_only_hooks). MonitoredTrainingSession runs chief-only hooks first, so on
    the chief the monitor goes there, ahead of the saver: a non-finite loss raises before
    the diverged weights can be written. On the chief `stop_on_signal` (fcn.hooks.StopOnSignal)
    ends training after the step in which a stop signal arrived; the saver hook then writes it."""
    train = cfg.train
    monitor = TrainingMonitor(graph.total_loss, graph.step_after_update, graph.learning_rate,
                              train.steps, train.batch_size * train.accumulate_steps, train.log_every_steps, log=log)
    stop = tf1.train.StopAtStepHook(last_step=train.steps)
    if not is_chief:
        return [monitor, stop], []
    saver_hook = tf1.train.CheckpointSaverHook(train.run_dir, save_steps=train.save_every_steps,
                                               scaffold=scaffold)
    summary_hook = SummarySaverHook(train.steps, save_steps=train.summary_every_steps, output_dir=train.run_dir,
                                    scaffold=scaffold)
    watch = RunDirWatch(train.run_dir, runs.Run(train.run_dir).config_path)
    return [stop, stop_on_signal], [monitor, watch, saver_hook, summary_hook]


def _scaffold(cfg, graph):
    """(scaffold, init_fn, resumed): resumes from the run dir's latest checkpoint (its shapes
    checked against the model first), else initialises from init.checkpoint."""
    with graph.graph.as_default():
        latest = tf1.train.latest_checkpoint(cfg.train.run_dir)
        init_fn = None
        if latest is None:
            init_fn = checkpoints.make_init_fn(cfg.init.checkpoint, cfg.init.exclude_scopes,
                                               cfg.init.ignore_missing_vars, model_name=cfg.model.name)
        else:
            checkpoints.check_shapes(latest, {v.op.name: v for v in tf1.global_variables()})
        saver = tf1.train.Saver(max_to_keep=cfg.train.keep_checkpoints, sharded=True)
        return tf1.train.Scaffold(init_fn=init_fn, saver=saver), init_fn, latest is not None


def train(cfg, cluster_info=None, log=print, signals=None):
    """Trains to `train.steps`, resuming from the run dir; returns the final global step.

    `cluster_info` (fcn.cluster.roles.resolve()) makes this process a chief or worker task
    of a cluster job (fcn.task runs the other roles): workers train, the chief alone
    initialises, writes checkpoints and summaries. SIGTERM and SIGUSR1 stop training after
    the step in flight, with a checkpoint of it (fcn.stopping): raises stopping.Stopped.
    `signals`: an active stopping.StopSignals (train.py enters one first thing); None: one is
    entered here.
    """
    if signals is None:
        with stopping.StopSignals() as signals:
            return train(cfg, cluster_info, log, signals)
    # first line: the devices; clones without GPUs for them stop here, before anything is written
    log(deploy.device_report(options.deployment(cfg, cluster_info), visible_gpus()))
    run_dir = cfg.train.run_dir
    if not roles.is_chief(cluster_info):
        signals.on_stop(stopping.end_with_the_chief(done.done_file(run_dir), time.time(),
                                                    'worker %d' % cluster_info.task_index))
        return _train(cfg, cluster_info, log, signals)
    with runlock.TrainerLock(run_dir, 'train.py', log) as lock:  # one trainer (chief) per run dir
        step = _train(cfg, cluster_info, log, signals, lock)
    if signals.signum is not None and (step is None or step < cfg.train.steps):
        checkpoint = tf1.train.latest_checkpoint(run_dir)
        raise stopping.Stopped('stopped by %s at step %d: checkpoint %s kept' % (
            signals.name, checkpoint_step(checkpoint), checkpoint) if checkpoint else
            'stopped by %s before the first step: nothing kept in %s' % (signals.name, run_dir), signals.signum)
    return step


def _abandon_step(run_dir, cluster_info, lock):
    """The chief's way out when the step in flight does not end after a stop signal."""
    def abandon(signum):
        lock.release()
        if cluster_info is not None:
            done.signal_done(done.done_file(run_dir))
        stopping.exit_now('stopped by %s: the step in flight did not end within %d s (is a worker gone?)%s' % (
            stopping.signal_name(signum), stopping.CHIEF_STEP_GRACE_SECS, failures.kept(run_dir)),
            stopping.exit_status(signum))
    return abandon


def _train(cfg, cluster_info, log, signals, lock=None):
    deploy_config = options.deployment(cfg, cluster_info)
    if cfg.train.deterministic and cluster_info is not None:
        raise ConfigError('train.deterministic makes one process reproducible; in a cluster job the workers race '
                          'for each update: set train.deterministic false or train in one process')
    set_op_determinism(cfg.train.deterministic)
    is_chief = roles.is_chief(cluster_info)
    run_dir = cfg.train.run_dir
    latest = tf1.train.latest_checkpoint(run_dir)
    if latest is not None and checkpoint_step(latest) >= cfg.train.steps:
        log('the run in %s is already at step %d (train.steps %d): nothing to train; raise train.steps '
            'to train on' % (run_dir, checkpoint_step(latest), cfg.train.steps))
        if is_chief and cluster_info is not None:
            done.signal_done(done.done_file(run_dir))
        return checkpoint_step(latest)
    run = runs.Run(run_dir)
    if latest is not None:  # resuming: the run decides every run-bound key (fcn.run)
        cfg = run.bind(cfg, log)
    info = _dataset_for_training(run, cfg.data.dir, cfg.data.num_classes, resuming=latest is not None)
    if is_chief:
        run.write(cfg, info)
    server = (runtime.start_server(cluster_info, cfg.deploy.gpu_memory_growth)
              if cluster_info is not None else None)
    graph = TrainGraph(cfg, deploy_config, cluster_info, info)
    scaffold, init_fn, resumed = _scaffold(cfg, graph)
    if is_chief and resumed:
        log('resuming from %s' % tf1.train.latest_checkpoint(run_dir))
    elif is_chief and init_fn is not None:
        log('initialising from %s' % init_fn.checkpoint)
        log('%d model variables restored, %d start as initialised%s' % (
            len(init_fn.restored), len(init_fn.fresh),
            ': ' + ', '.join(init_fn.fresh) if 0 < len(init_fn.fresh) <= 8 else ''))
    elif is_chief:
        log('training from scratch (init.checkpoint is null)')
    stop_on_signal = StopOnSignal(signals) if is_chief else None
    if is_chief:
        abandon = _abandon_step(run_dir, cluster_info, lock)
        signals.on_stop(stopping.abandon_if_step_hangs(signals, stop_on_signal, abandon))
    hooks, chief_hooks = _hooks(cfg, graph, scaffold, is_chief, log, stop_on_signal)
    with failures.named_failures(cfg.data.dir, cfg.data.train_split, run_dir):
        step = _run_session(graph, scaffold, cluster_info, hooks + graph.sync_hooks, chief_hooks,
                            run_dir, session_config(cfg))
    if is_chief:
        if cluster_info is not None:
            done.signal_done(done.done_file(run_dir))
        if signals.signum is None:
            log('done: %s' % tf1.train.latest_checkpoint(run_dir))
    del server
    return step


def _dataset_for_training(run, data_dir, expected, resuming):
    """The dataset description a training run uses: a resumed run keeps the classes it was
    started with (its dataset.json, checked against the records in `data_dir`); a new run takes
    the records'. `expected`: data.num_classes (None: any)."""
    if resuming:
        run.check_classes(data_dir)
        return dataset_info.for_run(run.dir, data_dir, expected)
    info = dataset_info.DatasetInfo.read(data_dir)
    if expected is not None and int(expected) != info.num_classes:
        raise ConfigError('data.num_classes is %d but %s says %d classes; drop the key or fix it'
                          % (expected, info.source, info.num_classes))
    return info


def _run_session(graph, scaffold, cluster_info, hooks, chief_hooks, run_dir, base_config):
    """Runs training steps until the hooks stop it; returns the last global step. `base_config`:
    the sessions' ConfigProto (session_config)."""
    with graph.graph.as_default():
        if roles.is_chief(cluster_info):
            session = tf1.train.MonitoredTrainingSession(
                checkpoint_dir=run_dir, scaffold=scaffold, hooks=hooks, chief_only_hooks=chief_hooks,
                save_checkpoint_secs=None, save_checkpoint_steps=None,
                save_summaries_steps=None, log_step_count_steps=None,  # summaries: fcn.hooks.SummarySaverHook
                **runtime.session_kwargs(cluster_info, base_config))
        else:
            # Another worker: MonitoredTrainingSession(is_chief=False)'s session, but polling for
            # the chief's initialisation every second instead of every 30 s (fcn.cluster.runtime).
            session = runtime.worker_session(cluster_info, scaffold, hooks, base_config)
        step = None
        try:
            with session:
                while not session.should_stop():
                    step = graph.run_step(session)
        except tf.errors.InvalidArgumentError as e:
            _raise_label_error(e)
    return step


def _raise_label_error(error):
    """A label outside the classes (checked by the input pipeline) is a user error; others re-raise."""
    user_error = provider.label_error(error)
    if user_error is None:
        raise error
    raise user_error from None
