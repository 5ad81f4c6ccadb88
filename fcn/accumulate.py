"""Gradient accumulation (train.accumulate_steps = k): k batches, one update.

The gradients of k successive batches are summed into local variables (one per trained
variable, on the optimizer's device, never checkpointed), and the update applies their
mean: the step of one batch k times as large when the loss is a mean over equally many
valid pixels per batch (weight decay, added once per batch, also averages to itself).
The global step, the learning-rate schedule, checkpoints and summaries count updates.

A training step is then k session runs (fcn.train_lib.TrainGraph.run_step):

    k - 1 times: session.run(accumulator.add_op)           # raw session, no hooks
    once:        session.run(train_op)                     # add, apply the mean, reset; with hooks

where train_op = optimizer.apply_gradients(accumulator.mean_gradients()) followed by
accumulator.reset_op(apply_op). The reported loss (`mean_loss`) is the mean over the k
batches. Memory: one extra copy of the trained variables (the sums).
"""
from fcn.compat import tf, tf1

SCOPE = 'gradient_accumulation'


class GradientAccumulator:
    """Sums (gradient, variable) pairs and a loss over `num_steps` session runs."""

    def __init__(self, grads_and_vars, loss, num_steps):
        if num_steps < 2:
            raise ValueError('accumulating needs num_steps >= 2, got %r' % num_steps)
        self.num_steps = num_steps
        pairs = [(tf.convert_to_tensor(grad), var) for grad, var in grads_and_vars if grad is not None]
        with tf1.variable_scope(SCOPE):
            self._sums = [_local_zeros(var.op.name + '/sum', grad) for grad, var in pairs]
            self._loss_sum = _local_zeros('loss_sum', loss)
        self._variables = [var for _, var in pairs]
        adds = [total.assign_add(grad, read_value=False) for total, (grad, _) in zip(self._sums, pairs)]
        adds.append(self._loss_sum.assign_add(loss, read_value=False))
        self.add_op = tf.group(*adds, name=SCOPE + '/add')
        with tf.control_dependencies([self.add_op]):
            self.mean_loss = tf.identity(self._loss_sum.read_value() / num_steps, name=SCOPE + '/mean_loss')

    def mean_gradients(self):
        """[(mean gradient, variable)], read after this run's batch was added."""
        with tf.control_dependencies([self.add_op]):
            return [(total.read_value() / self.num_steps, var) for total, var in zip(self._sums, self._variables)]

    def reset_op(self, after):
        """Zeroes the sums once `after` (the update) and the mean loss read have run."""
        with tf.control_dependencies([after, self.mean_loss]):
            zeros = [total.assign(tf.zeros_like(total), read_value=False) for total in self._sums + [self._loss_sum]]
            return tf.group(*zeros, name=SCOPE + '/reset')


def _local_zeros(name, like):
    """A non-trainable local variable of `like`'s shape and dtype, initialised to zero:
    local_init_op of every process's session zeroes it, no Saver writes it."""
    return tf1.get_variable(name, shape=like.shape, dtype=like.dtype, initializer=tf1.zeros_initializer(),
                            trainable=False, collections=[tf1.GraphKeys.LOCAL_VARIABLES])
