"""Model replicas ("clones") over devices, in the TF-Slim `model_deploy` style.

A process trains `num_clones` copies of the model (one per GPU, or all on the CPU for
tests) that share one set of variables. Variables live on this process's CPU, or
round-robin over the parameter servers when the job has some; everything else of a clone
runs on its own device. Each clone's loss is scaled by 1/num_clones and the clones'
gradients are summed, so the update is the average over clones: 2 clones of batch 2 give
the same step as 1 clone of batch 4.

The trainer's side (see fcn/train_lib.py):

    config = fcn.options.deployment(cfg, cluster_info)      # cluster_info: fcn.cluster.resolve()
    with tf1.device(config.variables_device()):
        global_step = tf1.train.get_or_create_global_step()
    with tf1.device(config.inputs_device()):
        queue = ...                                          # batches, one dequeue per clone
    clones = deploy.create_clones(config, model_fn, [queue])
    with tf1.device(config.optimizer_device()):
        optimizer = ...
    total_loss, grads_and_vars = deploy.optimize_clones(clones, optimizer)
    with tf1.device(config.optimizer_device()):
        train_op = optimizer.apply_gradients(grads_and_vars, global_step)
    summaries = deploy.first_clone_summaries(clones)         # the clones' summaries, once

The model_fn contract: it builds one clone and registers every loss term with
`tf1.losses.add_loss` (the `tf1.losses.*` functions do this by themselves); what it
returns is kept as `Clone.outputs`. Regularisation losses come from the
REGULARIZATION_LOSSES collection (slim's `weights_regularizer`); they are created once,
with the variables, and added to the first clone's loss only.
"""
import collections
import os

from fcn.compat import tf, tf1
from fcn.config import ConfigError

Clone = collections.namedtuple('Clone', ['outputs', 'scope', 'device'])
Clone.__doc__ = """One model replica: model_fn's return value, its name scope ('' or 'clone_i/'), its device."""


class DeploymentConfig:
    """Where the clones, variables, inputs and optimizer of one training process go.

    replica_id is this process's task index in the `worker_job_name` job (the launcher and
    fcn.cluster pass 'chief' / 'worker' and the task index); num_replicas is the number of
    training processes. Device names carry a job and task only when there are parameter
    servers (num_ps_tasks > 0): a single process uses local device names.
    """

    def __init__(self, num_clones=1, clone_on_cpu=False, replica_id=0, num_replicas=1,
                 num_ps_tasks=0, worker_job_name='worker', ps_job_name='ps'):
        if num_clones < 1:
            raise ValueError('num_clones must be at least 1, got %r' % num_clones)
        if not 0 <= replica_id < num_replicas:
            raise ValueError('replica_id %r is out of range for %r replicas' % (replica_id, num_replicas))
        if num_ps_tasks < 0:
            raise ValueError('num_ps_tasks must be >= 0, got %r' % num_ps_tasks)
        if num_replicas > 1 and num_ps_tasks == 0:
            raise ValueError('%d replicas need parameter servers (num_ps_tasks > 0) to share variables'
                             % num_replicas)
        self.num_clones = num_clones
        self.clone_on_cpu = clone_on_cpu
        self.replica_id = replica_id
        self.num_replicas = num_replicas
        self.num_ps_tasks = num_ps_tasks
        self.worker_job_name = worker_job_name
        self.ps_job_name = ps_job_name
        self._variables_device = None

    def __repr__(self):
        return ('DeploymentConfig(num_clones=%d, clone_on_cpu=%r, replica_id=%d, num_replicas=%d, '
                'num_ps_tasks=%d, worker_job_name=%r, ps_job_name=%r)' % (
                    self.num_clones, self.clone_on_cpu, self.replica_id, self.num_replicas,
                    self.num_ps_tasks, self.worker_job_name, self.ps_job_name))

    def _worker_device(self):
        if self.num_ps_tasks == 0:
            return ''
        return '/job:%s/task:%d' % (self.worker_job_name, self.replica_id)

    def _cpu(self):
        return self._worker_device() + '/device:CPU:0'

    def clone_device(self, i):
        """Device of clone i: this worker's GPU i, or its CPU when clone_on_cpu."""
        if not 0 <= i < self.num_clones:
            raise ValueError('clone index %r is out of range for %d clones' % (i, self.num_clones))
        if self.clone_on_cpu:
            return self._cpu()
        return self._worker_device() + '/device:GPU:%d' % i

    def clone_scope(self, i):
        """Name scope of clone i: 'clone_i' with several clones, '' (no extra scope) with one."""
        if not 0 <= i < self.num_clones:
            raise ValueError('clone index %r is out of range for %d clones' % (i, self.num_clones))
        return 'clone_%d' % i if self.num_clones > 1 else ''

    def variables_device(self):
        """This worker's CPU, or a device function that places variables round-robin on the ps
        tasks (other ops on this worker's CPU). The same function is returned on every call,
        so the round robin continues across calls (global step, model, optimizer slots)."""
        if self.num_ps_tasks == 0:
            return self._cpu()
        if self._variables_device is None:
            self._variables_device = tf1.train.replica_device_setter(
                ps_tasks=self.num_ps_tasks, ps_device='/job:%s/device:CPU:0' % self.ps_job_name,
                worker_device=self._cpu())
        return self._variables_device

    def optimizer_device(self):
        """Where the gradient application (and learning-rate ops) run: this worker's CPU."""
        return self._cpu()

    def inputs_device(self):
        """Where input readers, decoding and batch queues run: this worker's CPU."""
        return self._cpu()

    def caching_device(self):
        """For `variable_scope(caching_device=...)`: with parameter servers, a variable read is
        cached on the device of the op that reads it (one copy per worker device rather than
        one transfer per use); None (no caching) otherwise."""
        if self.num_ps_tasks == 0:
            return None
        return lambda op: op.device


def device_report(config, gpus):
    """The trainer's first line: the GPUs TensorFlow sees (`gpus`: their names, from
    fcn.compat.visible_gpus) and where the clones go. Raises ConfigError when the clones ask
    for more GPUs than are visible (soft placement would put the extra ones on the CPU, a run
    many times slower that looks fine); one clone without a GPU trains on the CPU."""
    seen = 'GPUs: %d (%s)' % (len(gpus), ', '.join(gpus)) if gpus else 'no GPU visible'
    if config.clone_on_cpu:
        return '%s: %d clone%s on the CPU (deploy.clone_on_cpu)' % (
            seen, config.num_clones, '' if config.num_clones == 1 else 's')
    if not gpus and config.num_clones == 1:
        return '%s: training on the CPU' % seen
    if config.num_clones > len(gpus):
        raise ConfigError(
            'deploy.num_clones is %d but %d GPU%s visible (CUDA_VISIBLE_DEVICES=%s): set deploy.num_clones to '
            'at most %d, make more GPUs visible with CUDA_VISIBLE_DEVICES, or set deploy.clone_on_cpu: true '
            'to run the clones on the CPU' % (
                config.num_clones, len(gpus), ' is' if len(gpus) == 1 else 's are',
                os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)'), max(len(gpus), 1)))
    return '%s -> clones on %s' % (seen, ', '.join('GPU:%d' % i for i in range(config.num_clones)))


def single_device_report(gpus, doing):
    """eval's (and any one-device tool's) first line: 'GPUs: 1 (...) -> evaluating on GPU:0'
    or 'no GPU visible: evaluating on the CPU'."""
    if not gpus:
        return 'no GPU visible: %s on the CPU' % doing
    return 'GPUs: %d (%s) -> %s on GPU:0' % (len(gpus), ', '.join(gpus), doing)


def shared_gpu_config(config=None):
    """`config` (a new ConfigProto by default) with gpu_options.allow_growth: the session takes
    GPU memory as it needs it instead of the whole GPU at start (TensorFlow's default), so an
    evaluator or exporter runs next to a trainer on the same GPU."""
    config = tf1.ConfigProto() if config is None else config
    config.gpu_options.allow_growth = True
    return config


def create_clones(config, model_fn, args=(), kwargs=None):
    """Builds `config.num_clones` clones of model_fn(*args, **kwargs) -> [Clone].

    Clone i is built under name scope clone_scope(i) and device clone_device(i). The first
    clone creates the variables (on variables_device(), whatever way model_fn creates them
    with get_variable, slim included); the others reuse them. model_fn registers its loss
    with tf1.losses.add_loss (see the module docstring)."""
    kwargs = kwargs or {}
    place_variables = _variables_on(config.variables_device())
    clones = []
    for i in range(config.num_clones):
        with tf1.name_scope(config.clone_scope(i)) as scope:
            device = config.clone_device(i)
            with tf1.device(device), tf1.variable_scope(
                    tf1.get_variable_scope(), reuse=True if i > 0 else None,
                    custom_getter=place_variables, auxiliary_name_scope=False):
                outputs = model_fn(*args, **kwargs)
            clones.append(Clone(outputs, scope, device))
    return clones


def _variables_on(device):
    """A variable-scope custom getter that creates variables under `device`. It is the
    innermost device scope, so it wins over the clone's device."""
    def place(getter, *args, **kwargs):
        with tf1.device(device):
            return getter(*args, **kwargs)
    return place


def optimize_clones(clones, optimizer, regularization_losses=None, var_list=None):
    """Total loss and averaged gradients of the clones -> (total_loss, grads_and_vars).

    Each clone's loss (the LOSSES collection under its scope) is scaled by 1/num_clones;
    the regularisation losses (default: the REGULARIZATION_LOSSES collection) are added to
    the first clone's loss only. Gradients are computed on each clone's device and summed
    over clones. Apply them with optimizer.apply_gradients(grads_and_vars, global_step)
    under optimizer_device()."""
    if regularization_losses is None:
        regularization_losses = tf1.losses.get_regularization_losses()
    clone_losses, clone_grads = [], []
    for i, clone in enumerate(clones):
        with tf1.name_scope(clone.scope), tf1.device(clone.device):
            loss = _clone_loss(clone, len(clones), regularization_losses if i == 0 else ())
            clone_losses.append(loss)
            clone_grads.append(optimizer.compute_gradients(loss, var_list=var_list))
    total_loss = tf.add_n(clone_losses, name='total_loss')
    return total_loss, _sum_gradients(clone_grads)


def _clone_loss(clone, num_clones, regularization_losses):
    """The clone's losses summed, scaled by 1/num_clones, plus the regularisation given."""
    terms = tf1.losses.get_losses(scope=clone.scope)
    if not terms:
        raise ValueError('clone %r added no loss: model_fn must register its loss with '
                         'tf.compat.v1.losses.add_loss' % (clone.scope or 'clone_0'))
    loss = tf.add_n(terms, name='clone_loss')
    if num_clones > 1:
        loss = tf.multiply(loss, 1.0 / num_clones, name='scaled_clone_loss')
    if regularization_losses:
        loss = tf.add(loss, tf.add_n(list(regularization_losses), name='regularization_loss'))
    return loss


def _sum_gradients(clone_grads):
    """[[(grad, var)] per clone] -> [(sum of grads, var)]; variables no clone has a gradient
    for are left out, as compute_gradients' None gradients would be by apply_gradients."""
    summed = []
    for pairs in zip(*clone_grads):
        var = pairs[0][1]
        grads = [grad for grad, _ in pairs if grad is not None]
        if grads:
            summed.append((_add_gradients(grads, var), var))
    return summed


def _add_gradients(grads, var):
    if len(grads) == 1:
        return grads[0]
    name = var.op.name + '/sum_clone_grads'
    if all(isinstance(g, tf.IndexedSlices) for g in grads):
        return tf.IndexedSlices(tf.concat([g.values for g in grads], 0, name=name),
                                tf.concat([g.indices for g in grads], 0), grads[0].dense_shape)
    return tf.add_n([tf.convert_to_tensor(g) for g in grads], name=name)


def first_clone_summaries(clones):
    """The SUMMARIES of the first clone (all of them when there is one clone), so summaries
    made inside model_fn are written once, not once per clone."""
    return tf1.get_collection(tf1.GraphKeys.SUMMARIES, clones[0].scope)
