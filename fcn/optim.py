"""Learning-rate schedules, optimizers and gradient transforms for the trainer.

All functions build graph-mode ops from option values (`Schedule`, `OptimizerOptions`,
`GradientOptions`; fcn.options turns the `train:` config section into them):

- `learning_rate`: fixed | poly | step | exponential | cosine, each with a linear warmup.
- `make_optimizer`: momentum | sgd | adam | rmsprop.
- `transform_gradients` = `clip_gradients` (global norm; tf-slim 1.1.0's
  create_train_op(clip_gradient_norm=...) is broken) then, under momentum and sgd,
  `lr_multipliers` (Caffe's per-layer lr_mult, e.g. 10x for the new fc8 and 2x for biases,
  as in FCN's recipe). Under adam and rmsprop the optimizer applies the multipliers to the
  variables' learning rates instead (fcn.multipliers says why): give `make_optimizer` the
  same GradientOptions.
- `moving_average` / `ema_variables_to_restore`: an optional EMA of the weights.
"""
import dataclasses
import math

from fcn import multipliers
from fcn.compat import tf, tf1
from fcn.config import LR_SCHEDULES as SCHEDULES, OPTIMIZERS  # noqa: F401 (the choices, owned by fcn.config)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: `name` one of SCHEDULES, the rate at step 0 (before warmup)
    and its parameters; `total_steps` is T of poly and cosine."""
    name: str
    learning_rate: float
    total_steps: int
    end_learning_rate: float = 0.0
    lr_power: float = 0.9
    decay_steps: int = 2000
    decay_rate: float = 0.1
    warmup_steps: int = 0
    warmup_start_factor: float = 0.1


@dataclasses.dataclass(frozen=True)
class OptimizerOptions:
    name: str  # one of OPTIMIZERS
    momentum: float = 0.9


@dataclasses.dataclass(frozen=True)
class GradientOptions:
    clip_norm: float = 0.0  # 0: no clipping
    lr_multipliers: tuple = ()  # (scope, factor) pairs
    bias_lr_multiplier: float = 1.0


# --- learning rate -------------------------------------------------------------------------

def learning_rate(schedule, global_step):
    """The learning rate at `global_step` as a float32 scalar tensor, for a `Schedule`.

    Schedules (base = learning_rate, end = end_learning_rate, T = total_steps; steps past T
    keep the value at T):
      fixed:       base
      poly:        (base - end) * (1 - step / T) ** lr_power + end
      step:        base * decay_rate ** floor(step / decay_steps)
      exponential: base * decay_rate ** (step / decay_steps)
      cosine:      end + (base - end) * (1 + cos(pi * step / T)) / 2
    Warmup (warmup_steps > 0) multiplies the schedule by a factor that rises linearly
    from warmup_start_factor at step 0 to 1 at warmup_steps, so the rate climbs from
    warmup_start_factor * base to the schedule's own value there and follows it afterwards.
    """
    step = tf.cast(global_step, tf.float32)
    rate = _SCHEDULE_FNS[schedule.name](schedule, step, float(schedule.total_steps))
    return tf.multiply(rate, _warmup_factor(schedule, step), name='learning_rate')


def _fixed(s, step, total):
    return tf.constant(float(s.learning_rate), tf.float32)


def _poly(s, step, total):
    remaining = 1.0 - _progress(step, total)
    return (s.learning_rate - s.end_learning_rate) * tf.pow(remaining, s.lr_power) + s.end_learning_rate


def _step(s, step, total):
    return s.learning_rate * tf.pow(float(s.decay_rate), tf.floor(step / float(s.decay_steps)))


def _exponential(s, step, total):
    return s.learning_rate * tf.pow(float(s.decay_rate), step / float(s.decay_steps))


def _cosine(s, step, total):
    cosine = 0.5 * (1.0 + tf.cos(math.pi * _progress(step, total)))
    return s.end_learning_rate + (s.learning_rate - s.end_learning_rate) * cosine


_SCHEDULE_FNS = {'fixed': _fixed, 'poly': _poly, 'step': _step, 'exponential': _exponential, 'cosine': _cosine}


def _progress(step, total):
    """step / total clipped to [0, 1]."""
    return tf.clip_by_value(step / max(total, 1.0), 0.0, 1.0)


def _warmup_factor(schedule, step):
    if schedule.warmup_steps <= 0:
        return tf.constant(1.0, tf.float32)
    start = float(schedule.warmup_start_factor)
    ramp = tf.minimum(step / float(schedule.warmup_steps), 1.0)
    return start + (1.0 - start) * ramp


# --- optimizer -----------------------------------------------------------------------------

def make_optimizer(options, learning_rate, gradients=None):
    """A tf.compat.v1 optimizer for `OptimizerOptions` (name one of OPTIMIZERS).

    momentum uses options.momentum; adam and rmsprop use TensorFlow's defaults. `gradients`
    (GradientOptions): under adam and rmsprop, its lr_multipliers and bias_lr_multiplier
    multiply each variable's learning rate (fcn.multipliers); under momentum and sgd they are
    `transform_gradients`' and the optimizer is the plain one.
    """
    if (gradients is not None and options.name in multipliers.RATE_SCALED
            and multipliers.has_factors(gradients.lr_multipliers, gradients.bias_lr_multiplier)):
        return multipliers.optimizer_with_rates(options.name, learning_rate, gradients.lr_multipliers,
                                                gradients.bias_lr_multiplier)
    return _OPTIMIZER_FNS[options.name](options, learning_rate)


_OPTIMIZER_FNS = {
    'momentum': lambda options, rate: tf1.train.MomentumOptimizer(rate, momentum=options.momentum),
    'sgd': lambda options, rate: tf1.train.GradientDescentOptimizer(rate),
    'adam': lambda options, rate: tf1.train.AdamOptimizer(rate),
    'rmsprop': lambda options, rate: tf1.train.RMSPropOptimizer(rate),
}


# --- gradients -----------------------------------------------------------------------------

def transform_gradients(options, grads_and_vars, optimizer_name):
    """Clips by `GradientOptions` clip_norm, then, when `optimizer_name` is momentum or sgd,
    scales by its lr_multipliers and bias_lr_multiplier (the order of Caffe, which clips
    before applying lr_mult). Under adam and rmsprop the gradients are only clipped: the
    optimizer from `make_optimizer(..., gradients=options)` applies the multipliers."""
    grads_and_vars = clip_gradients(grads_and_vars, options.clip_norm)
    if optimizer_name not in multipliers.GRADIENT_SCALED:
        return grads_and_vars
    return lr_multipliers(grads_and_vars, options.lr_multipliers, options.bias_lr_multiplier)


def clip_gradients(grads_and_vars, max_norm):
    """Rescales all gradients together so that their global norm is at most `max_norm`.

    Gradients already within the norm are unchanged; None gradients pass through;
    IndexedSlices are supported. `max_norm` 0 or None returns the list unchanged.
    """
    grads_and_vars = list(grads_and_vars)
    if not max_norm:
        return grads_and_vars
    present = [i for i, (g, _) in enumerate(grads_and_vars) if g is not None]
    if not present:
        return grads_and_vars
    clipped, _ = tf.clip_by_global_norm([grads_and_vars[i][0] for i in present], float(max_norm))
    result = list(grads_and_vars)
    for i, grad in zip(present, clipped):
        result[i] = (grad, grads_and_vars[i][1])
    return result


lr_multipliers = multipliers.scale_gradients  # the multipliers of momentum and sgd


# --- moving average ------------------------------------------------------------------------

def moving_average(decay, global_step, var_list=None):
    """An ExponentialMovingAverage of `var_list` (default: all trainable variables).

    Returns (ema, update_op), or None when `decay` is null or 0. The global step is the
    EMA's num_updates, so the effective decay is min(decay, (1 + step) / (10 + step)):
    early shadows follow the weights quickly. Run `update_op` after each optimizer step.
    """
    if not decay:
        return None
    ema = tf1.train.ExponentialMovingAverage(float(decay), num_updates=global_step)
    variables = tf1.trainable_variables() if var_list is None else var_list
    return ema, ema.apply(variables)


def ema_variables_to_restore(ema):
    """{checkpoint name: variable} for a Saver that loads the EMA shadows into the model.

    `ema` is the ExponentialMovingAverage from `moving_average` or, in eval/export graphs
    that never apply one, the configured decay (shadow names do not depend on its value).
    Variables without a shadow (e.g. the global step) restore under their own names.
    """
    if not isinstance(ema, tf1.train.ExponentialMovingAverage):
        ema = tf1.train.ExponentialMovingAverage(float(ema))
    return ema.variables_to_restore()
