"""train.lr_multipliers and train.bias_lr_multiplier are learning rates under every optimizer
(fcn.multipliers): adam and rmsprop against their own update formulas in NumPy, momentum and
sgd bit-identical to scaling the gradients, checkpoints of before still load, and the whole
training graph (clones, accumulation, clipping, the mixed-precision wrapper) with them."""
import copy

import numpy as np
import pytest

from fcn import multipliers, optim, options, train_lib
from fcn.compat import tf, tf1
from fcn.config import load_config
from pipeline_fixtures import build_synthetic, tiny_config

LR = 0.01
NAMES = ('vgg_16/fc8/weights', 'vgg_16/fc8/biases', 'vgg_16/fc7/weights', 'vgg_16/fc7/biases')
FACTORS = {'vgg_16/fc8/weights': 10.0, 'vgg_16/fc8/biases': 20.0, 'vgg_16/fc7/weights': 1.0,
           'vgg_16/fc7/biases': 2.0}  # [[vgg_16/fc8, 10]] and bias_lr_multiplier 2


@pytest.fixture(scope='module')
def base_cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'empty.yaml'
    path.write_text('{}\n')
    return load_config(str(path))


def _options(base_cfg, optimizer, lr_multipliers=(('vgg_16/fc8', 10.0),), bias=2.0, clip=0.0, momentum=0.9):
    cfg = copy.deepcopy(base_cfg)
    cfg.train.update(optimizer=optimizer, momentum=momentum, clip_gradient_norm=clip, bias_lr_multiplier=bias,
                     lr_multipliers=[list(pair) for pair in lr_multipliers])
    return options.optimizer(cfg), options.gradients(cfg)


# --- NumPy: the optimizers' own update formulas (TensorFlow's defaults) --------------------------

def _numpy_adam(w, grads, lr, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """tf.compat.v1.train.AdamOptimizer: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t);
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr_t m / (sqrt(v) + eps)."""
    w, m, v = w.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (np.sqrt(v) + epsilon)
    return w


def _numpy_rmsprop(w, grads, lr, decay=0.9, epsilon=1e-10):
    """tf.compat.v1.train.RMSPropOptimizer (momentum 0, not centered; ms starts at 1):
    ms = decay ms + (1 - decay) g^2; w -= lr g / sqrt(ms + eps)."""
    w, ms = w.astype(np.float64), 1.0
    for g in grads:
        ms = decay * ms + (1 - decay) * g * g
        w = w - lr * g / np.sqrt(ms + epsilon)
    return w


FORMULAS = {'adam': _numpy_adam, 'rmsprop': _numpy_rmsprop}


def _updates(optimizer_options, gradient_options, initial, grads, sparse=False):
    """The variables NAMES after one update per entry of `grads` ({name: gradient} each) by
    the trainer's pair make_optimizer + transform_gradients."""
    with tf.Graph().as_default():
        variables = [tf1.get_variable(name, initializer=initial[name]) for name in NAMES]
        fed = [tf1.placeholder(tf.float32, initial[name].shape) for name in NAMES]
        pairs = list(zip(fed, variables))
        if sparse:  # every row as an IndexedSlices: the sparse apply methods
            pairs = [(tf.IndexedSlices(g, tf.range(tf.shape(g)[0]), tf.shape(g)), v) for g, v in pairs]
        optimizer = optim.make_optimizer(optimizer_options, LR, gradient_options)
        train_op = optimizer.apply_gradients(
            optim.transform_gradients(gradient_options, pairs, optimizer_options.name))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for step_grads in grads:
                sess.run(train_op, {placeholder: step_grads[name] for placeholder, name in zip(fed, NAMES)})
            return dict(zip(NAMES, sess.run(variables))), optimizer


def _random_problem(seed=0, steps=2):
    rng = np.random.RandomState(seed)
    initial = {name: rng.randn(3, 2).astype(np.float32) for name in NAMES}
    grads = [{name: rng.randn(3, 2).astype(np.float32) for name in NAMES} for _ in range(steps)]
    return initial, grads


@pytest.mark.parametrize('sparse', [False, True], ids=['dense', 'sparse'])
@pytest.mark.parametrize('name', ['adam', 'rmsprop'])
def test_a_factor_multiplies_the_learning_rate_in_the_optimizers_own_formula(base_cfg, name, sparse):
    initial, grads = _random_problem()
    with_factors, optimizer = _updates(*_options(base_cfg, name), initial, grads, sparse)
    without, plain = _updates(*_options(base_cfg, name, lr_multipliers=(), bias=1.0), initial, grads, sparse)
    assert isinstance(optimizer, type(plain)) and optimizer.get_name() == plain.get_name()
    for var in NAMES:
        history = [g[var].astype(np.float64) for g in grads]
        np.testing.assert_allclose(without[var], FORMULAS[name](initial[var], history, LR), rtol=1e-5, err_msg=var)
        expected = FORMULAS[name](initial[var], history, LR * FACTORS[var])
        np.testing.assert_allclose(with_factors[var], expected, rtol=1e-5, atol=1e-6, err_msg=var)
    # one update: 10 (20 for fc8's biases) times the step of the same gradient without a factor
    one, _ = _updates(*_options(base_cfg, name), initial, grads[:1], sparse)
    one_plain, _ = _updates(*_options(base_cfg, name, lr_multipliers=(), bias=1.0), initial, grads[:1], sparse)
    for var in NAMES:
        np.testing.assert_allclose(one[var] - initial[var], FACTORS[var] * (one_plain[var] - initial[var]),
                                   rtol=1e-4, err_msg=var)


def test_under_adam_scaling_the_gradient_would_not_change_the_step(base_cfg):
    """Why the gradient cannot carry the factor under adam: its first step is about lr per
    coordinate whatever the gradient's scale (the old behaviour: 10x trained like 1x)."""
    initial, grads = _random_problem(steps=1)
    scaled = [{var: g[var] * np.float32(FACTORS[var]) for var in NAMES} for g in grads]
    plain = _options(base_cfg, 'adam', lr_multipliers=(), bias=1.0)
    after_scaled, _ = _updates(*plain, initial, scaled)
    after_plain, _ = _updates(*plain, initial, grads)
    for var in NAMES:
        np.testing.assert_allclose(after_scaled[var], after_plain[var], rtol=1e-5)


# --- momentum and sgd: exactly the gradient scaling of before -------------------------------------

def _momentum_path(optimizer_options, gradient_options, explicit, steps=3):
    """Variables after `steps` updates on a small nonlinear loss; `explicit`: the reference
    path (clip_by_global_norm, then gradient x factor, written out, into the plain optimizer)."""
    initial, _ = _random_problem(seed=1)
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        variables = [tf1.get_variable(name, initializer=initial[name]) for name in NAMES]
        data = tf.constant(np.random.RandomState(2).randn(4, 3).astype(np.float32))
        loss = tf.add_n([tf.reduce_sum(tf.tanh(tf.matmul(data, v)) ** 2) for v in variables])
        grads = tf.gradients(loss, variables)
        if explicit:
            optimizer = {'momentum': tf1.train.MomentumOptimizer(LR, momentum=optimizer_options.momentum),
                         'sgd': tf1.train.GradientDescentOptimizer(LR)}[optimizer_options.name]
            if gradient_options.clip_norm:
                grads, _ = tf.clip_by_global_norm(grads, gradient_options.clip_norm)
            pairs = [(g if FACTORS[v.op.name] == 1.0 else g * FACTORS[v.op.name], v) for g, v in zip(grads, variables)]
        else:
            optimizer = optim.make_optimizer(optimizer_options, LR, gradient_options)
            pairs = optim.transform_gradients(gradient_options, list(zip(grads, variables)), optimizer_options.name)
        train_op = optimizer.apply_gradients(pairs)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(steps):
                sess.run(train_op)
            return sess.run(variables), [v.op.name for v in tf1.global_variables()]


@pytest.mark.parametrize('clip', [0.0, 0.5])
@pytest.mark.parametrize('name', ['momentum', 'sgd'])
def test_momentum_and_sgd_are_bit_identical_to_scaling_the_gradients(base_cfg, name, clip):
    opts = _options(base_cfg, name, clip=clip, momentum=0.99)
    ours, our_variables = _momentum_path(*opts, explicit=False)
    reference, reference_variables = _momentum_path(*opts, explicit=True)
    assert our_variables == reference_variables  # the same slots (var/Momentum)
    for var, a, b in zip(NAMES, ours, reference):
        assert a.tobytes() == b.tobytes(), var
    unscaled, _ = _momentum_path(*_options(base_cfg, name, lr_multipliers=(), bias=1.0, clip=clip), explicit=False)
    assert not np.array_equal(unscaled[0], ours[0])  # the control: the factors did act


# --- checkpoints of before ------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['adam', 'rmsprop'])
def test_a_checkpoint_of_the_plain_optimizer_loads_into_the_one_with_factors(base_cfg, tmp_path, name):
    """The optimizer with factors has the same variables (slots, beta powers) under the same
    names and shapes as the plain one the trainer built before: a run resumes as it was."""
    initial, grads = _random_problem()
    checkpoint = str(tmp_path / 'model.ckpt')

    def build(opts):
        variables = [tf1.get_variable(name_, initializer=initial[name_]) for name_ in NAMES]
        optimizer = optim.make_optimizer(opts[0], LR, opts[1])
        train_op = optimizer.apply_gradients(
            optim.transform_gradients(opts[1], [(tf.constant(grads[0][v.op.name]), v) for v in variables], name))
        return train_op, {v.op.name: v.shape.as_list() for v in tf1.global_variables()}

    with tf.Graph().as_default():
        train_op, before = build(_options(base_cfg, name, lr_multipliers=(), bias=1.0))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train_op)
            saved = {v.op.name: sess.run(v) for v in tf1.global_variables()}
            tf1.train.Saver().save(sess, checkpoint)
    with tf.Graph().as_default():
        train_op, after = build(_options(base_cfg, name))
        assert after == before and any('/%s' % ('Adam' if name == 'adam' else 'RMSProp') in n for n in after)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, checkpoint)
            for var in tf1.global_variables():
                np.testing.assert_array_equal(sess.run(var), saved[var.op.name])
            sess.run(train_op)  # and trains on from there


def test_factors_are_looked_up_by_the_longest_scope():
    scopes = multipliers.scope_factors([['vgg_16', 0.5], ['vgg_16/fc8/', 10.0]])
    assert multipliers.factor_for('vgg_16/fc8/weights', scopes, 2.0) == 10.0
    assert multipliers.factor_for('vgg_16/fc8/biases', scopes, 2.0) == 20.0
    assert multipliers.factor_for('vgg_16/fc80/weights', scopes, 2.0) == 0.5
    assert multipliers.factor_for('fcn/upscore32/weights', scopes, 2.0) == 1.0
    assert not multipliers.has_factors([], 1.0) and multipliers.has_factors([], 2.0)


# --- the training graph: clones, accumulation, clipping, mixed precision ---------------------------

SIZE = 32


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=2, size=SIZE)


class _FixedInputGraph(train_lib.TrainGraph):
    """The training graph fed 4 fixed examples in order instead of the shuffling reader."""

    def _input_queue(self):
        rng = np.random.RandomState(3)
        images = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
        labels = rng.randint(0, 3, (4, SIZE, SIZE)).astype(np.int32)
        queue = tf1.FIFOQueue(16, [tf.float32, tf.int32], shapes=[[SIZE, SIZE, 3], [SIZE, SIZE]])
        self.enqueue = queue.enqueue_many([tf.constant(images), tf.constant(labels)])
        size = self.options.batch_size // self.deploy_config.num_clones
        return type('Batches', (), {'dequeue': lambda _: queue.dequeue_many(size)})()


def _one_update(records, run_dir, optimizer, extra):
    """({trained variable: its change}, {its float32 spacing}) after one update from fixed
    random weights (He-initialised, so that every layer's gradient flows)."""
    cfg = tiny_config(records, str(run_dir), extra=[
        'train.optimizer=%s' % optimizer, 'train.crop_size=%d' % SIZE, 'model.dropout_keep_prob=1.0',
        'train.lr_schedule=fixed', 'deploy.clone_on_cpu=true'] + list(extra))
    graph = _FixedInputGraph(cfg, options.deployment(cfg))
    with graph.graph.as_default():
        trained = {v.op.name: v for v in tf1.trainable_variables()}
        rng = np.random.RandomState(0)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer(), graph.enqueue])
            for name in sorted(trained):
                shape = trained[name].shape.as_list()
                scale = np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) > 1 else 0.1
                trained[name].load(rng.normal(0, scale, shape).astype(np.float32), sess)
            before = sess.run(trained)
            for _ in range(cfg.train.accumulate_steps - 1):
                sess.run(graph.accumulate_op)
            sess.run(graph.step_after_update)
            after = sess.run(trained)
            return ({name: value - before[name] for name, value in after.items()},
                    {name: np.spacing(np.abs(value).max()) for name, value in before.items()})


TRAINING_CASES = {
    'adam, 2 clones, 2 accumulated, clipped, mixed precision': (
        'adam', ['train.learning_rate=0.001', 'deploy.num_clones=2', 'train.batch_size=2', 'train.accumulate_steps=2',
                 'train.clip_gradient_norm=0.5', 'train.mixed_precision=true']),
    'rmsprop': ('rmsprop', ['train.learning_rate=1.0', 'train.batch_size=2']),
    'momentum, 2 clones, 2 accumulated, clipped': (
        'momentum', ['train.learning_rate=1.0', 'deploy.num_clones=2', 'train.batch_size=2', 'train.accumulate_steps=2',
                     'train.clip_gradient_norm=0.5']),
}


@pytest.mark.parametrize('case', sorted(TRAINING_CASES))
def test_the_trainer_gives_fc8_ten_times_the_step_and_biases_twice(records, tmp_path, case):
    optimizer, extra = TRAINING_CASES[case]
    plain, spacing = _one_update(records, tmp_path / 'plain', optimizer, extra)
    factored, _ = _one_update(records, tmp_path / 'factors', optimizer, extra + [
        'train.lr_multipliers=[[vgg_16/fc8, 10.0]]', 'train.bias_lr_multiplier=2.0'])
    assert sorted(plain) == sorted(factored) and len(plain) > 20
    for name in NAMES:  # fc8 (10x, biases 20x) and fc7 (biases 2x): steps well above float32 rounding
        assert np.abs(plain[name]).max() > 100 * spacing[name], name
    for name, delta in plain.items():
        factor = multipliers.factor_for(name, {'vgg_16/fc8': 10.0}, 2.0)
        # w + step rounds to the variable's float32 spacing: a few of them apart at most
        np.testing.assert_allclose(factored[name], factor * delta, rtol=1e-3, atol=4 * factor * spacing[name],
                                   err_msg=name)


def test_large_and_zero_factors_build_and_zero_freezes_the_variable(base_cfg):
    initial, grads = _random_problem(steps=1)
    after, _ = _updates(*_options(base_cfg, 'adam', lr_multipliers=(('vgg_16/fc8', 1e6), ('vgg_16/fc7', 0.0)),
                                  bias=1.0), initial, grads)
    np.testing.assert_array_equal(after['vgg_16/fc7/weights'], initial['vgg_16/fc7/weights'])
    assert not np.array_equal(after['vgg_16/fc8/weights'], initial['vgg_16/fc8/weights'])
