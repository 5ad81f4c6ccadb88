"""Per-layer learning-rate multipliers (Caffe's lr_mult) that are learning rates under every optimizer.

`train.lr_multipliers` ([[scope, factor], ...]) and `train.bias_lr_multiplier` give each trained
variable a factor (`factor_for`): the longest matching scope's factor, times the bias factor for
variables named ...biases. A factor f must give that variable f times the step it would take
with the same gradients. How depends on the optimizer:

- momentum and sgd: the update is linear in learning rate x gradient (v = m v - lr g; w += v),
  so the gradient is scaled by f (`scale_gradients`) before the optimizer sees it. This is what
  the trainer always did: these runs are bit-identical to before.
- adam and rmsprop normalise the gradient (m / sqrt(v), g / sqrt(ms)): a scaled gradient gives
  nearly the same step, so f would do nothing. There the optimizer applies each variable's
  update with learning rate lr x f (`optimizer_with_rates`); the gradient is left alone. The optimizer
  keeps its class, its name and its slots (var/Adam, var/Adam_1, beta1_power, ...; var/RMSProp,
  var/RMSProp_1): a checkpoint written before loads as it was, and only the step sizes of the
  variables with a factor change (10x for a factor of 10, where before it was about 1x).

Weight decay is part of the loss, so its gradient is scaled with the rest, as Caffe's local rate
lr x lr_mult multiplies the decayed gradient. Clipping (train.clip_gradient_norm) acts on the
unscaled gradients in both cases, as Caffe clips before applying lr_mult.
"""
from fcn.compat import tf, tf1

# optimizers whose step is linear in lr x gradient: a factor scales the gradient
GRADIENT_SCALED = ('momentum', 'sgd')
# optimizers that normalise the gradient: a factor scales the variable's learning rate
RATE_SCALED = ('adam', 'rmsprop')


def scope_factors(scope_multipliers):
    """{scope: factor} from {scope: factor} or the config's list of [scope, factor] pairs."""
    pairs = scope_multipliers.items() if isinstance(scope_multipliers, dict) else (scope_multipliers or [])
    factors = {}
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not isinstance(pair[1], (int, float)):
            raise ValueError('train.lr_multipliers must be a list of [scope, factor] pairs, got %r' % (pair,))
        factors[pair[0].rstrip('/')] = float(pair[1])
    return factors


def factor_for(name, scopes, bias_multiplier=1.0):
    """The factor of the variable `name`: the longest scope of `scopes` ({scope: factor}) it
    equals or lies under (1.0 if none), times `bias_multiplier` when the name ends in 'biases'."""
    matches = [scope for scope in scopes if name == scope or name.startswith(scope + '/')]
    factor = scopes[max(matches, key=len)] if matches else 1.0
    if name.endswith('biases'):
        factor *= float(bias_multiplier)
    return factor


def scale_gradients(grads_and_vars, scope_multipliers, bias_multiplier=1.0):
    """Scales the gradients of chosen variables by their factor: the multipliers of momentum and sgd.

    Args:
      grads_and_vars: (gradient, variable) pairs as from `Optimizer.compute_gradients`.
      scope_multipliers: {scope: factor} or the config's list of [scope, factor] pairs,
        e.g. {'vgg_16/fc8': 10.0}. A variable is in a scope when its name equals it or
        starts with scope + '/'; the longest matching scope wins.
      bias_multiplier: extra factor for variables whose name ends in 'biases' (Caffe's
        FCN recipe uses 2.0); it multiplies the scope factor.
    Gradients whose factor is 1, and None gradients, are returned unchanged.
    """
    scopes = scope_factors(scope_multipliers)
    result = []
    for grad, var in grads_and_vars:
        factor = factor_for(var.op.name, scopes, bias_multiplier)
        result.append((grad if grad is None or factor == 1.0 else _scale(grad, factor), var))
    return result


def _scale(grad, factor):
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor


def has_factors(scope_multipliers, bias_multiplier=1.0):
    """Whether any variable can get a factor other than 1."""
    return bool(scope_factors(scope_multipliers)) or float(bias_multiplier) != 1.0


def optimizer_with_rates(name, learning_rate, scope_multipliers, bias_multiplier=1.0):
    """A tf.compat.v1 Adam (`name` 'adam') or RMSProp ('rmsprop') optimizer with TensorFlow's
    defaults that updates each variable with learning rate `learning_rate` x its factor.

    It is an instance of a subclass of AdamOptimizer / RMSPropOptimizer that only swaps the
    learning-rate tensor while one variable's update is built: same name, slots and update ops.
    """
    scopes = scope_factors(scope_multipliers)
    return _RATE_SUBCLASSES[name](lambda var_name: factor_for(var_name, scopes, bias_multiplier), learning_rate)


class _PerVariableRate:
    """Mixin for a tf.compat.v1 optimizer whose `_prepare` stores the learning rate as a tensor
    in the attribute `_RATE`: each variable's update is built with that tensor times the
    variable's factor (self._factor_of(name)). The four apply methods are all the places the
    rate is read (dense and sparse, ref and resource variables)."""
    _RATE = None

    def __init__(self, factor_of, *args, **kwargs):
        super(_PerVariableRate, self).__init__(*args, **kwargs)
        if not hasattr(self, self._RATE):  # a private attribute of TensorFlow's v1 optimizers (2.12 to 2.21)
            raise RuntimeError('this TensorFlow\'s %s keeps its learning rate elsewhere than %s: per-variable '
                               'learning rates (train.lr_multipliers under adam / rmsprop) need fcn/multipliers.py '
                               'updated' % (type(self).__mro__[2].__name__, self._RATE))
        self._factor_of = factor_of

    def _at_rate(self, var, apply, *args):
        factor = self._factor_of(var.op.name)
        if factor == 1.0:
            return apply(*args)
        rate = getattr(self, self._RATE)
        setattr(self, self._RATE, tf.multiply(rate, factor, name='scaled_learning_rate'))
        try:
            return apply(*args)
        finally:
            setattr(self, self._RATE, rate)

    def _apply_dense(self, grad, var):
        return self._at_rate(var, super(_PerVariableRate, self)._apply_dense, grad, var)

    def _resource_apply_dense(self, grad, var):
        return self._at_rate(var, super(_PerVariableRate, self)._resource_apply_dense, grad, var)

    def _apply_sparse(self, grad, var):
        return self._at_rate(var, super(_PerVariableRate, self)._apply_sparse, grad, var)

    def _resource_apply_sparse(self, grad, var, indices):
        return self._at_rate(var, super(_PerVariableRate, self)._resource_apply_sparse, grad, var, indices)


class _AdamWithRates(_PerVariableRate, tf1.train.AdamOptimizer):
    _RATE = '_lr_t'


class _RMSPropWithRates(_PerVariableRate, tf1.train.RMSPropOptimizer):
    _RATE = '_learning_rate_tensor'


_RATE_SUBCLASSES = {'adam': _AdamWithRates, 'rmsprop': _RMSPropWithRates}  # the names of RATE_SCALED
