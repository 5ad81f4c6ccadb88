"""fcn.optim: schedules against closed forms, optimizers, gradient transforms, EMA."""
import copy
import dataclasses
import math

import numpy as np
import pytest

from fcn import optim, options
from fcn.compat import tf, tf1
from fcn.config import load_config

BASE, END, STEPS = 0.01, 0.001, 1000


@pytest.fixture(scope='module')
def base_cfg(tmp_path_factory):
    """configs/base.yaml as loaded by the real loader (checks the new keys and their types)."""
    path = tmp_path_factory.mktemp('cfg') / 'empty.yaml'
    path.write_text('{}\n')
    return load_config(str(path))


def _train_cfg(base_cfg, **overrides):
    """base.yaml with these train.* values, through the real conversion to option values."""
    cfg = copy.deepcopy(base_cfg)
    cfg.train.update(learning_rate=BASE, end_learning_rate=END, steps=STEPS, lr_power=0.9,
                     decay_steps=100, decay_rate=0.5)
    cfg.train.update(overrides)
    return cfg


def _rates(cfg, steps, total_steps=None):
    schedule = options.schedule(cfg)
    if total_steps is not None:
        schedule = dataclasses.replace(schedule, total_steps=total_steps)
    with tf.Graph().as_default():
        global_step = tf1.placeholder(tf.int64, [])
        rate = optim.learning_rate(schedule, global_step)
        with tf1.Session() as sess:
            return [float(sess.run(rate, {global_step: s})) for s in steps]


def test_base_yaml_declares_the_new_keys(base_cfg):
    train = base_cfg.train
    assert train.optimizer == 'momentum' and train.warmup_steps == 0
    assert isinstance(train.warmup_start_factor, float) and isinstance(train.ema_decay, float)
    assert train.lr_multipliers == [] and train.bias_lr_multiplier == 1.0
    assert train.clip_gradient_norm == 0.0 and train.decay_steps == 2000 and train.decay_rate == 0.1
    assert base_cfg.loss == {'terms': [{'name': 'cross_entropy', 'weight': 1.0}], 'class_weights': None,
                             'top_k_percent': 1.0, 'hard_mining_anneal_steps': 0, 'normalization': 'valid_pixels'}


CLOSED_FORMS = {
    'fixed': lambda s: BASE,
    'poly': lambda s: (BASE - END) * (1 - min(s, STEPS) / STEPS) ** 0.9 + END,
    'step': lambda s: BASE * 0.5 ** (s // 100),
    'exponential': lambda s: BASE * 0.5 ** (s / 100),
    'cosine': lambda s: END + (BASE - END) * 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS)),
}
PROBE_STEPS = [0, 1, 99, 100, 250, 500, 999, 1000, 1500]


@pytest.mark.parametrize('schedule', sorted(CLOSED_FORMS))
def test_schedule_matches_closed_form(base_cfg, schedule):
    rates = _rates(_train_cfg(base_cfg, lr_schedule=schedule), PROBE_STEPS)
    np.testing.assert_allclose(rates, [CLOSED_FORMS[schedule](s) for s in PROBE_STEPS], rtol=1e-5)


@pytest.mark.parametrize('schedule', sorted(CLOSED_FORMS))
def test_warmup_rises_linearly_from_start_factor_to_schedule(base_cfg, schedule):
    cfg = _train_cfg(base_cfg, lr_schedule=schedule, warmup_steps=200, warmup_start_factor=0.1)
    rates = _rates(cfg, PROBE_STEPS)
    expected = [CLOSED_FORMS[schedule](s) * min(0.1 + 0.9 * s / 200, 1.0) for s in PROBE_STEPS]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert rates[0] == pytest.approx(0.1 * BASE)


def test_total_steps_is_the_schedules_own_value(base_cfg):
    rates = _rates(_train_cfg(base_cfg, lr_schedule='poly', lr_power=1.0), [50], total_steps=100)
    assert rates[0] == pytest.approx((BASE - END) * 0.5 + END)


@pytest.mark.parametrize('name, cls', [
    ('momentum', tf1.train.MomentumOptimizer),
    ('sgd', tf1.train.GradientDescentOptimizer),
    ('adam', tf1.train.AdamOptimizer),
    ('rmsprop', tf1.train.RMSPropOptimizer),
])
def test_optimizer_names_map_to_classes(base_cfg, name, cls):
    with tf.Graph().as_default():
        optimizer = optim.make_optimizer(options.optimizer(_train_cfg(base_cfg, optimizer=name, momentum=0.99)), 0.1)
    assert type(optimizer) is cls
    if name == 'momentum':
        assert optimizer._momentum == 0.99


def _variables(*names):
    return [tf1.get_variable(name, initializer=np.ones(2, np.float32)) for name in names]


def _global_norm(grads):
    return math.sqrt(sum(float(np.sum(np.square(g))) for g in grads))


def test_clipping_bounds_global_norm_and_keeps_none():
    with tf.Graph().as_default():
        a, b, c = _variables('a', 'b', 'c')
        pairs = [(tf.constant([3.0, 0.0]), a), (None, b), (tf.constant([0.0, 4.0]), c)]  # norm 5
        clipped = optim.clip_gradients(pairs, 1.0)
        assert clipped[1] == (None, b) and [v for _, v in clipped] == [a, b, c]
        with tf1.Session() as sess:
            values = sess.run([clipped[0][0], clipped[2][0]])
    assert _global_norm(values) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(values, [[0.6, 0.0], [0.0, 0.8]], rtol=1e-6)


def test_clipping_leaves_small_gradients_alone_and_handles_indexed_slices():
    with tf.Graph().as_default():
        a, b = _variables('a', 'b')
        sparse = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([0]), tf.constant([2, 2]))
        clipped = optim.clip_gradients([(tf.constant([3.0, 4.0]), a), (sparse, b)], 100.0)
        with tf1.Session() as sess:
            dense, sparse_values = sess.run([clipped[0][0], clipped[1][0].values])
    np.testing.assert_allclose(dense, [3.0, 4.0])
    np.testing.assert_allclose(sparse_values, [[1.0, 2.0]])


@pytest.mark.parametrize('max_norm', [0, 0.0, None])
def test_clipping_disabled_is_identity(max_norm):
    with tf.Graph().as_default():
        (a,) = _variables('a')
        pairs = [(tf.constant([3.0, 4.0]), a)]
        assert optim.clip_gradients(pairs, max_norm) == pairs


SCOPED_NAMES = ['vgg_16/fc8/weights', 'vgg_16/fc8/biases', 'vgg_16/fc7/weights', 'vgg_16/fc7/biases',
                'vgg_16/fc80/weights', 'fcn/upsample/weights']


def _scaled_gradients(scope_multipliers, bias_multiplier):
    with tf.Graph().as_default():
        variables = _variables(*SCOPED_NAMES)
        pairs = [(tf.ones([2]), v) for v in variables] + [(None, variables[0])]
        scaled = optim.lr_multipliers(pairs, scope_multipliers, bias_multiplier)
        assert scaled[-1] == (None, variables[0])
        with tf1.Session() as sess:
            values = sess.run([g for g, _ in scaled[:-1]])
    return {name: float(value[0]) for name, value in zip(SCOPED_NAMES, values)}


def test_lr_multipliers_scale_exactly_the_chosen_variables():
    factors = _scaled_gradients({'vgg_16/fc8': 10.0}, 2.0)
    assert factors == {'vgg_16/fc8/weights': 10.0, 'vgg_16/fc8/biases': 20.0,
                       'vgg_16/fc7/weights': 1.0, 'vgg_16/fc7/biases': 2.0,
                       'vgg_16/fc80/weights': 1.0, 'fcn/upsample/weights': 1.0}


def test_lr_multipliers_accept_config_pairs_and_prefer_the_longest_scope():
    factors = _scaled_gradients([['vgg_16', 0.5], ['vgg_16/fc8/', 10.0]], 1.0)
    assert factors == {'vgg_16/fc8/weights': 10.0, 'vgg_16/fc8/biases': 10.0,
                       'vgg_16/fc7/weights': 0.5, 'vgg_16/fc7/biases': 0.5,
                       'vgg_16/fc80/weights': 0.5, 'fcn/upsample/weights': 1.0}


def test_lr_multipliers_reject_malformed_pairs():
    with pytest.raises(ValueError, match=r'train\.lr_multipliers'):
        optim.lr_multipliers([], [['vgg_16/fc8']], 1.0)


def test_transform_gradients_clips_before_scaling(base_cfg):
    cfg = _train_cfg(base_cfg, clip_gradient_norm=1.0, lr_multipliers=[['vgg_16/fc8', 10.0]], bias_lr_multiplier=1.0)
    with tf.Graph().as_default():
        (w,) = _variables('vgg_16/fc8/weights')
        (grad, _), = optim.transform_gradients(options.gradients(cfg), [(tf.constant([3.0, 4.0]), w)], 'momentum')
        # adam and rmsprop: clipped only; their optimizer applies the multipliers to the learning rate
        (unscaled, _), = optim.transform_gradients(options.gradients(cfg), [(tf.constant([3.0, 4.0]), w)], 'adam')
        with tf1.Session() as sess:
            np.testing.assert_allclose(sess.run(grad), [6.0, 8.0], rtol=1e-6)
            np.testing.assert_allclose(sess.run(unscaled), [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize('decay', [None, 0, 0.0])
def test_moving_average_off(decay):
    with tf.Graph().as_default():
        assert optim.moving_average(decay, tf1.train.get_or_create_global_step()) is None


def _train_with_ema(decay, weight_values, checkpoint=None):
    """Sets w to each value, then applies the EMA at global steps 0, 1, ...; returns the shadow."""
    with tf.Graph().as_default():
        global_step = tf1.train.get_or_create_global_step()
        w = tf1.get_variable('w', initializer=np.float32(1.0))
        ema, update = optim.moving_average(decay, global_step)
        new_value = tf1.placeholder(tf.float32, [])
        assign, increment = w.assign(new_value), global_step.assign_add(1)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for value in weight_values:
                sess.run(assign, {new_value: value})
                sess.run(update)
                sess.run(increment)
            if checkpoint:
                tf1.train.Saver().save(sess, checkpoint)
            return float(sess.run(ema.average(w)))


def _closed_form_ema(decay, weight_values, initial=1.0):
    shadow = initial
    for step, value in enumerate(weight_values):
        d = min(decay, (1.0 + step) / (10.0 + step))
        shadow = d * shadow + (1 - d) * value
    return shadow


def test_moving_average_shadow_matches_closed_form():
    values = [2.0, -1.0, 5.0, 3.0, 0.5]
    assert _train_with_ema(0.3, values) == pytest.approx(_closed_form_ema(0.3, values), rel=1e-6)


def test_ema_variables_restore_shadows_into_the_model(tmp_path):
    values = [2.0, -1.0, 5.0]
    checkpoint = str(tmp_path / 'model.ckpt')
    shadow = _train_with_ema(0.3, values, checkpoint)
    with tf.Graph().as_default():
        global_step = tf1.train.get_or_create_global_step()
        w = tf1.get_variable('w', initializer=np.float32(0.0))
        saver = tf1.train.Saver(optim.ema_variables_to_restore(0.3))
        with tf1.Session() as sess:
            saver.restore(sess, checkpoint)
            assert float(sess.run(w)) == pytest.approx(shadow, rel=1e-6)
            assert sess.run(global_step) == len(values)
