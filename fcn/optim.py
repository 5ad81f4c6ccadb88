"""Learning-rate schedules, optimizers and gradient transforms for the trainer.

All functions build graph-mode ops from option values (`Schedule`, `OptimizerOptions`,
`GradientOptions`; fcn.options turns the `train:` config section into them):

- `learning_rate`: fixed | poly | step | exponential | cosine, each with a linear warmup.
- `make_optimizer`: momentum | sgd | adam | rmsprop.
- `transform_gradients` = `clip_gradients` (global norm; tf-slim 1.1.0's
  create_train_op(clip_gradient_norm=...) is broken) then `lr_multipliers` (Caffe's
  per-layer lr_mult, e.g. 10x for the new fc8 and 2x for biases, as in FCN's recipe).
- `moving_average` / `ema_variables_to_restore`: an optional EMA of the weights.
"""
import dataclasses
import math

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

def make_optimizer(options, learning_rate):
    """A tf.compat.v1 optimizer for `OptimizerOptions` (name one of OPTIMIZERS).

    momentum uses options.momentum; adam and rmsprop use TensorFlow's defaults.
    """
    return _OPTIMIZER_FNS[options.name](options, learning_rate)


_OPTIMIZER_FNS = {
    'momentum': lambda options, rate: tf1.train.MomentumOptimizer(rate, momentum=options.momentum),
    'sgd': lambda options, rate: tf1.train.GradientDescentOptimizer(rate),
    'adam': lambda options, rate: tf1.train.AdamOptimizer(rate),
    'rmsprop': lambda options, rate: tf1.train.RMSPropOptimizer(rate),
}


# --- gradients -----------------------------------------------------------------------------

def transform_gradients(options, grads_and_vars):
    """Clips by `GradientOptions` clip_norm, then applies its lr_multipliers and
    bias_lr_multiplier; the order of Caffe, which clips before scaling by lr_mult."""
    grads_and_vars = clip_gradients(grads_and_vars, options.clip_norm)
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


def lr_multipliers(grads_and_vars, scope_multipliers, bias_multiplier=1.0):
    """Scales the gradients of chosen variables: a per-layer learning-rate multiplier.

    Args:
      grads_and_vars: (gradient, variable) pairs as from `Optimizer.compute_gradients`.
      scope_multipliers: {scope: factor} or the config's list of [scope, factor] pairs,
        e.g. {'vgg_16/fc8': 10.0}. A variable is in a scope when its name equals it or
        starts with scope + '/'; the longest matching scope wins.
      bias_multiplier: extra factor for variables whose name ends in 'biases' (Caffe's
        FCN recipe uses 2.0); it multiplies the scope factor.
    Gradients whose factor is 1, and None gradients, are returned unchanged.
    """
    scopes = _scope_factors(scope_multipliers)
    result = []
    for grad, var in grads_and_vars:
        factor = _factor_for(var.op.name, scopes, bias_multiplier)
        result.append((grad if grad is None or factor == 1.0 else _scale(grad, factor), var))
    return result


def _scope_factors(scope_multipliers):
    pairs = scope_multipliers.items() if isinstance(scope_multipliers, dict) else (scope_multipliers or [])
    factors = {}
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], (int, float)):
            raise ValueError('train.lr_multipliers must be a list of [scope, factor] pairs, got %r' % (pair,))
        factors[pair[0].rstrip('/')] = float(pair[1])
    return factors


def _factor_for(name, scopes, bias_multiplier):
    matches = [scope for scope in scopes if name == scope or name.startswith(scope + '/')]
    factor = scopes[max(matches, key=len)] if matches else 1.0
    if name.endswith('biases'):
        factor *= float(bias_multiplier)
    return factor


def _scale(grad, factor):
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor


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
