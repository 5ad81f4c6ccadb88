"""Train options on tiny runs: trainable / excluded scopes, fixed upsampling, checkpoints kept,
mixed precision and XLA (GPU features that must be harmless on a CPU-only machine)."""
import glob
import os

import numpy as np
import pytest

from fcn import options, train_lib
from fcn.cluster import runtime
from fcn.compat import tf, tf1
from pipeline_fixtures import build_synthetic, scalar_series, tiny_config

QUIET = {'log': lambda *_: None}


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=64)


def _model_tensors(checkpoint):
    """{name: value} of the model's weights and biases (no optimizer slots, no EMA shadows)."""
    reader = tf.train.load_checkpoint(checkpoint)
    names = [name for name, _ in tf.train.list_variables(checkpoint) if name.endswith(('/weights', '/biases'))]
    return {name: reader.get_tensor(name) for name in names}


@pytest.fixture(scope='module')
def base_run(records, tmp_path_factory):
    """20 steps, every variable trained but the fixed upsampling; checkpoints every 5 steps, 2 kept."""
    run_dir = str(tmp_path_factory.mktemp('base') / 'run')
    cfg = tiny_config(records, run_dir, steps=20, extra=['model.upsample=fixed', 'train.save_every_steps=5',
                                                         'train.keep_checkpoints=2'])
    train_lib.train(cfg, **QUIET)
    return cfg


def test_keep_checkpoints_keeps_the_last_k(base_run):
    run_dir = base_run.train.run_dir
    state = tf1.train.get_checkpoint_state(run_dir)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ['model.ckpt-15', 'model.ckpt-20']
    on_disk = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, 'model.ckpt-*.index')))
    assert on_disk == ['model.ckpt-15.index', 'model.ckpt-20.index']  # 0, 5 and 10 were written, then deleted


def test_fixed_upsampling_is_no_variable_and_the_rest_trains(base_run):
    checkpoint = tf1.train.latest_checkpoint(base_run.train.run_dir)
    tensors = _model_tensors(checkpoint)
    assert np.abs(tensors['vgg_16/fc8/weights']).max() > 0  # zero-initialised, so the rest did train
    # fixed: the bilinear kernel is a constant of the graph, not a variable (nor optimizer slots)
    assert not any(name.startswith('fcn/') for name, _ in tf.train.list_variables(checkpoint))


@pytest.fixture(scope='module')
def scoped_run(base_run, tmp_path_factory):
    """From base_run's final weights minus fc8, training only fc7 and fc8; checkpoints at 0 and 10."""
    run_dir = str(tmp_path_factory.mktemp('scoped') / 'run')
    init = tf1.train.latest_checkpoint(base_run.train.run_dir)
    cfg = tiny_config(base_run.data.dir, run_dir, steps=10, extra=[
        'model.upsample=fixed', 'init.checkpoint=%s' % init, 'init.exclude_scopes=[vgg_16/fc8]',
        'train.trainable_scopes=[vgg_16/fc7, vgg_16/fc8]'])
    train_lib.train(cfg, **QUIET)
    return init, os.path.join(run_dir, 'model.ckpt-0'), os.path.join(run_dir, 'model.ckpt-10')


def test_exclude_scopes_are_not_restored(scoped_run):
    init, start, _ = scoped_run
    init_values, start_values = _model_tensors(init), _model_tensors(start)
    assert set(start_values) == set(init_values)
    for name, value in start_values.items():
        if name.startswith('vgg_16/fc8/'):
            assert not np.array_equal(value, init_values[name]), name  # freshly initialised (zeros)
            assert not value.any(), name
        else:
            np.testing.assert_array_equal(value, init_values[name], err_msg=name)


def test_trainable_scopes_leave_every_other_variable_bit_identical(scoped_run):
    _, start, end = scoped_run
    start_values, end_values = _model_tensors(start), _model_tensors(end)
    trained = [name for name in start_values if name.startswith(('vgg_16/fc7/', 'vgg_16/fc8/'))]
    assert len(trained) == 4 and len(start_values) > 20
    for name, value in end_values.items():
        if name in trained:
            assert not np.array_equal(value, start_values[name]), name
        else:
            np.testing.assert_array_equal(value, start_values[name], err_msg=name)
    slots = [name for name, _ in tf.train.list_variables(end) if name.endswith('/Adam')]
    assert sorted(slot[:-len('/Adam')] for slot in slots) == sorted(trained)  # optimizer state: scopes only


def _all_finite(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    dtypes = reader.get_variable_to_dtype_map()
    return all(np.isfinite(reader.get_tensor(name)).all() for name, dtype in dtypes.items() if dtype.is_floating)


@pytest.mark.parametrize('option', ['mixed_precision', 'xla'])
def test_gpu_option_trains_on_cpu(records, tmp_path, option, monkeypatch):
    run_dir = str(tmp_path / 'run')
    session_configs = []
    session_kwargs = runtime.session_kwargs
    monkeypatch.setattr(runtime, 'session_kwargs',
                        lambda info, base: session_configs.append(base) or session_kwargs(info, base))
    train_lib.train(tiny_config(records, run_dir, steps=10, extra=['train.%s=true' % option]), **QUIET)
    checkpoint = tf1.train.latest_checkpoint(run_dir)
    assert checkpoint.endswith('model.ckpt-10')  # a step skipped for non-finite gradients would show here
    assert _all_finite(checkpoint)
    losses = [value for _, value in scalar_series(run_dir, 'loss/total')]
    assert losses and np.isfinite(losses).all()
    names = {name for name, _ in tf.train.list_variables(checkpoint)}
    assert ('current_loss_scale' in names) == (option == 'mixed_precision')  # dynamic loss scaling
    graph_options = session_configs[0].graph_options  # the option reached the training session
    jit_on = graph_options.optimizer_options.global_jit_level == tf1.OptimizerOptions.ON_1
    assert (jit_on, graph_options.rewrite_options.auto_mixed_precision == 1) == (
        option == 'xla', option == 'mixed_precision')


def test_session_config_turns_on_xla_and_float16_rewrite_and_runs_on_cpu(records, tmp_path):
    default = train_lib.session_config(tiny_config(records, str(tmp_path)))
    assert default.allow_soft_placement
    assert default.graph_options.optimizer_options.global_jit_level == tf1.OptimizerOptions.DEFAULT
    cfg = tiny_config(records, str(tmp_path), extra=['train.xla=true', 'train.mixed_precision=true'])
    config = train_lib.session_config(cfg)
    assert config.allow_soft_placement
    assert config.graph_options.optimizer_options.global_jit_level == tf1.OptimizerOptions.ON_1
    assert config.graph_options.rewrite_options.auto_mixed_precision == 1  # RewriterConfig.ON
    graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
    with graph.graph.as_default():
        with tf1.train.SingularMonitoredSession(config=config) as sess:
            for _ in range(3):
                _, loss = sess.run([graph.train_op, graph.total_loss])
                assert np.isfinite(loss)
