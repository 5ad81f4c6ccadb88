"""Training modes: non-square crops, reproducible runs (train.deterministic), gradient
accumulation (train.accumulate_steps), and the device placement of a 4-GPU graph, checked
without a GPU."""
import re

import numpy as np
import pytest

from fcn import options, train_lib
from fcn.cluster import runtime
from fcn.cluster.roles import ClusterInfo
from fcn.compat import tf, tf1
from pipeline_fixtures import build_synthetic, scalar_series, tiny_config

WITH_PS = {'chief': ['c0:2222'], 'worker': ['w0:2222'], 'ps': ['p0:2222', 'p1:2222']}


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=64)


def _checkpoint_tensors(run_dir):
    checkpoint = tf1.train.latest_checkpoint(run_dir)
    reader = tf.train.load_checkpoint(checkpoint)
    return checkpoint, {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoint)}


# --- non-square crops ---------------------------------------------------------------------------

@pytest.mark.parametrize('num_clones', [1, 2])
def test_a_non_square_crop_gives_h_by_w_batches_and_trains(records, tmp_path, num_clones):
    cfg = tiny_config(records, str(tmp_path), extra=['train.crop_size=[32, 64]', 'train.batch_size=4',
                                                     'deploy.num_clones=%d' % num_clones, 'deploy.clone_on_cpu=true'])
    graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
    per_clone = 4 // num_clones
    with graph.graph.as_default():
        images = [clone.outputs['images'] for clone in graph.clones]
        assert [t.shape.as_list() for t in images] == [[per_clone, 32, 64, 3]] * num_clones
        weights = [v for v in tf1.trainable_variables() if v.op.name == 'vgg_16/fc8/weights'][0]
        with tf1.train.SingularMonitoredSession() as sess:
            before = sess.run(weights)
            for _ in range(3):
                outputs, loss, _ = sess.run([graph.clones[-1].outputs, graph.total_loss, graph.train_op])
                assert outputs['images'].shape == (per_clone, 32, 64, 3)
                assert outputs['labels'].shape == outputs['logits'].shape[:3] == (per_clone, 32, 64)
                assert np.isfinite(loss)
            assert not np.array_equal(sess.run(weights), before)


# --- reproducible runs --------------------------------------------------------------------------

LOSS_IN_LOG = re.compile(r'^step (\d+)/\d+  loss (\S+)  lr (\S+)')


def _deterministic_run(records, run_dir, seed, extra=()):
    """6 steps of 2 CPU clones, with random scaling, flips and dropout all in play."""
    lines = []
    cfg = tiny_config(records, str(run_dir), steps=6, extra=[
        'train.deterministic=true', 'train.seed=%d' % seed, 'deploy.num_clones=2', 'deploy.clone_on_cpu=true',
        'augment.min_scale=0.75', 'augment.max_scale=1.5', 'augment.flip=true', 'model.dropout_keep_prob=0.5',
        'train.log_every_steps=1', 'train.summary_every_steps=1', 'train.save_every_steps=100'] + list(extra))
    train_lib.train(cfg, log=lines.append)
    logged = [LOSS_IN_LOG.match(line).groups() for line in lines if LOSS_IN_LOG.match(line)]
    checkpoint, tensors = _checkpoint_tensors(str(run_dir))
    return logged, scalar_series(str(run_dir), 'loss/total'), checkpoint, tensors


def test_deterministic_runs_with_the_same_seed_are_bit_identical(records, tmp_path):
    first = _deterministic_run(records, tmp_path / 'a', seed=5)
    second = _deterministic_run(records, tmp_path / 'b', seed=5)
    other_seed = _deterministic_run(records, tmp_path / 'c', seed=6)
    logged, summaries, checkpoint, tensors = first
    assert checkpoint.endswith('model.ckpt-6')
    assert len(logged) == 6 and len(summaries) >= 5  # the monitor logs every step, from the first
    assert second[0] == logged and second[1] == summaries  # the same losses, step by step
    assert sorted(second[3]) == sorted(tensors) and len(tensors) > 30  # weights, slots, step
    for name, value in tensors.items():
        assert value.dtype == second[3][name].dtype
        assert value.tobytes() == second[3][name].tobytes(), name  # bit for bit
    # the comparison can fail: another seed gives other crops, flips, dropout and initial weights
    assert other_seed[1] != summaries
    assert not np.array_equal(other_seed[3]['vgg_16/fc8/weights'], tensors['vgg_16/fc8/weights'])


def test_deterministic_reading_uses_one_reader_one_thread_and_no_shuffling_queue(records, tmp_path):
    cfg = tiny_config(records, str(tmp_path), extra=['train.deterministic=true', 'train.seed=1',
                                                     'data.num_readers=4', 'data.num_preprocess_threads=4'])
    graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
    ops = graph.graph.get_operations()
    assert not [op.name for op in ops if op.type.startswith('RandomShuffleQueue')]
    assert len([op for op in ops if op.type == 'ReaderReadV2']) == 1
    runners = {runner.name: len(runner.enqueue_ops) for runner in graph.graph.get_collection(tf1.GraphKeys.QUEUE_RUNNERS)}
    assert [count for name, count in runners.items() if name.startswith('batch')] == [1]
    default = train_lib.TrainGraph(*(lambda c: (c, options.deployment(c)))(tiny_config(
        records, str(tmp_path), extra=['data.num_readers=4', 'data.num_preprocess_threads=4'])))
    default_ops = default.graph.get_operations()
    assert [op for op in default_ops if op.type.startswith('RandomShuffleQueue')]  # the control
    assert len([op for op in default_ops if op.type == 'ReaderReadV2']) == 4


def test_a_cluster_job_refuses_deterministic(records, tmp_path):
    from fcn.config import ConfigError
    cfg = tiny_config(records, str(tmp_path), extra=['train.deterministic=true', 'train.seed=1'])
    with pytest.raises(ConfigError, match='train.deterministic makes one process reproducible'):
        train_lib.train(cfg, ClusterInfo('worker', 0, WITH_PS))


# --- gradient accumulation ----------------------------------------------------------------------

SIZE = 32
NUM_EXAMPLES = 4


def _fixed_examples():
    """4 images with labels that have no ignored pixel: every batch has as many valid pixels."""
    rng = np.random.RandomState(3)
    images = rng.uniform(0, 255, (NUM_EXAMPLES, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.randint(0, 3, (NUM_EXAMPLES, SIZE, SIZE)).astype(np.int32)
    return images, labels


class _FixedBatches:
    """dequeue() -> the next `size` of the fixed examples, in order (a FIFO of examples)."""

    def __init__(self, size):
        images, labels = _fixed_examples()
        self.queue = tf1.FIFOQueue(16, [tf.float32, tf.int32], shapes=[[SIZE, SIZE, 3], [SIZE, SIZE]])
        self.enqueue = self.queue.enqueue_many([tf.constant(images), tf.constant(labels)])
        self.size = size

    def dequeue(self):
        return self.queue.dequeue_many(self.size)


class FixedInputGraph(train_lib.TrainGraph):
    """The training graph, fed the fixed examples in order instead of the shuffling reader."""

    def _input_queue(self):
        self.fixed = _FixedBatches(self.options.batch_size // self.deploy_config.num_clones)
        return self.fixed


def _one_update(records, tmp_path, initial, batch_size, accumulate_steps, num_clones=1, extra=()):
    """Trained variables after one update from `initial` (a checkpoint), and the global step."""
    cfg = tiny_config(records, str(tmp_path), extra=[
        'train.batch_size=%d' % batch_size, 'train.accumulate_steps=%d' % accumulate_steps,
        'deploy.num_clones=%d' % num_clones, 'deploy.clone_on_cpu=true', 'train.crop_size=%d' % SIZE,
        'model.dropout_keep_prob=1.0', 'model.weight_decay=0.01', 'train.optimizer=momentum',
        'train.learning_rate=0.5', 'train.lr_schedule=fixed'] + list(extra))
    graph = FixedInputGraph(cfg, options.deployment(cfg))
    with graph.graph.as_default():
        model = {v.op.name: v for v in tf1.global_variables() if v.op.name.startswith(('vgg_16/', 'fcn/'))
                 and '/Momentum' not in v.op.name}
        saver = tf1.train.Saver(model)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            if initial is None:  # zero-initialised score layers would stop every gradient below them
                rng = np.random.RandomState(0)
                for name, value in sess.run(model).items():
                    if not value.any() and name.endswith('weights'):
                        model[name].load(rng.normal(0, 0.05, value.shape).astype(np.float32), sess)
                return saver.save(sess, str(tmp_path / 'initial'))
            saver.restore(sess, initial)
            sess.run(graph.fixed.enqueue)
            for _ in range(accumulate_steps - 1):
                sess.run(graph.accumulate_op)
            step, loss = sess.run([graph.step_after_update, graph.total_loss])
            trained = sess.run({name: v for name, v in model.items() if v.trainable})
            initial_values = tf.train.load_checkpoint(initial)
            moved = {name: value - initial_values.get_tensor(name) for name, value in trained.items()}
            return step, loss, moved


@pytest.fixture(scope='module')
def initial(records, tmp_path_factory):
    return _one_update(records, tmp_path_factory.mktemp('initial'), None, 4, 1)


@pytest.mark.parametrize('num_clones, extra', [(1, []), (2, []), (1, ['train.mixed_precision=true'])],
                         ids=['one clone', 'two clones', 'mixed precision'])
def test_two_accumulated_batches_of_2_make_the_update_of_one_batch_of_4(records, tmp_path, initial, num_clones,
                                                                       extra):
    step, loss, reference = _one_update(records, tmp_path / 'k1', initial, 4, 1, extra=extra)
    step_k2, loss_k2, accumulated = _one_update(records, tmp_path / 'k2', initial, 2, 2, num_clones, extra)
    assert step == step_k2 == 1  # the global step counts updates
    assert loss_k2 == pytest.approx(loss, rel=1e-5)  # the reported loss: the mean over the 2 batches
    assert sorted(accumulated) == sorted(reference) and len(reference) > 20
    for name, delta in reference.items():
        assert np.abs(delta).max() > 0, name  # every variable moved
        # float32 sums in another order: equal to a few ulps of the variable's largest change
        np.testing.assert_allclose(accumulated[name], delta, rtol=2e-3, atol=1e-4 * np.abs(delta).max(), err_msg=name)


def test_a_single_batch_of_2_is_another_update(records, tmp_path, initial):
    """The control: the comparison above can fail (half the examples give another step)."""
    _, _, reference = _one_update(records, tmp_path / 'k1', initial, 4, 1)
    _, _, half = _one_update(records, tmp_path / 'half', initial, 2, 1)
    assert not np.allclose(half['vgg_16/fc8/weights'], reference['vgg_16/fc8/weights'], rtol=2e-3)


def test_accumulating_training_counts_updates(records, tmp_path):
    run_dir = str(tmp_path / 'run')
    lines = []
    cfg = tiny_config(records, run_dir, steps=4, extra=['train.accumulate_steps=3', 'train.log_every_steps=1',
                                                        'train.save_every_steps=2', 'train.summary_every_steps=1'])
    assert train_lib.train(cfg, log=lines.append) == 4
    logged = [int(LOSS_IN_LOG.match(line).group(1)) for line in lines if LOSS_IN_LOG.match(line)]
    assert logged == [1, 2, 3, 4]  # one log line per update, from the first
    checkpoint, tensors = _checkpoint_tensors(run_dir)
    assert checkpoint.endswith('model.ckpt-4') and tensors['global_step'] == 4
    assert not [name for name in tensors if name.startswith('gradient_accumulation')]  # sums are not saved
    assert [step for step, _ in scalar_series(run_dir, 'loss/total')] == [1, 2, 3, 4]


# --- GPU readiness, checked without a GPU -------------------------------------------------------

INPUT_OP_TYPES = ('ReaderReadV2', 'TFRecordReaderV2', 'FIFOQueueV2', 'RandomShuffleQueueV2', 'QueueEnqueueV2',
                  'QueueEnqueueManyV2', 'QueueDequeueManyV2', 'DecodeImage', 'CropAndResize', 'ParseExampleV2')


def _gpu_graph(records, tmp_path, cluster_info=None, extra=()):
    # random scales: the resampling crop (CropAndResize; scale 1 is a plain pad and slice) among the input ops
    cfg = tiny_config(records, str(tmp_path), extra=['deploy.num_clones=4', 'train.batch_size=8',
                                                     'train.mixed_precision=true', 'train.xla=true',
                                                     'augment.min_scale=0.75', 'augment.max_scale=1.25'] + list(extra))
    return cfg, train_lib.TrainGraph(cfg, options.deployment(cfg, cluster_info), cluster_info)


def _device(op):
    return tf1.DeviceSpec.from_string(op.device)


def _reads_a_variable(op):
    """A ReadVariableOp of a variable handle: TensorFlow leaves its device to the placer, which
    puts every op that takes a resource on the resource's device (the variable's)."""
    return op.type == 'ReadVariableOp' and op.inputs[0].op.type == 'VarHandleOp'


@pytest.mark.parametrize('cluster_info', [None, ClusterInfo('worker', 0, WITH_PS)], ids=['one process', 'ps job'])
def test_four_gpu_graph_places_clones_variables_and_inputs(records, tmp_path, cluster_info):
    """deploy.num_clones=4 without clone_on_cpu, as built for a 4-GPU machine (none here).

    Ops after the clones that no device scope places (the sum of the clones' gradients,
    clipping, summaries) are left to TensorFlow's placer, which puts them on GPU:0 when
    there is one, as TF-Slim's model_deploy does; none of them names a GPU."""
    _, graph = _gpu_graph(records, tmp_path, cluster_info, extra=['deploy.sync_replicas=false'])
    ops = graph.graph.get_operations()
    worker = (None, None) if cluster_info is None else ('worker', 0)
    for i in range(4):
        clone_ops = [op for op in ops if op.name.startswith('clone_%d/' % i)]
        placed = [op for op in clone_ops if not _reads_a_variable(op)]
        assert len(placed) > 400  # forward, loss, gradients (and the clone's dequeue)
        wrong = [(op.name, op.device) for op in placed if (_device(op).device_type, _device(op).device_index,
                                                           _device(op).job, _device(op).task) != ('GPU', i) + worker]
        assert not wrong, wrong[:5]
        reads = [op for op in clone_ops if _reads_a_variable(op)]
        assert len(reads) >= 33 and all(op.device == '' for op in reads)  # read where the variable is
    outside = [op for op in ops if not op.name.startswith('clone_')]
    assert not [op.name for op in outside if _device(op).device_type == 'GPU']
    variables = [op for op in ops if op.type in ('VarHandleOp', 'VariableV2')]
    assert len(variables) > 60  # weights, Adam slots, global step, loss scale
    for op in variables:
        spec = _device(op)
        expected = ('CPU', None) if cluster_info is None else ('CPU', 'ps')
        assert (spec.device_type, spec.job) == expected, (op.name, op.device)
    if cluster_info is not None:
        assert {_device(op).task for op in variables} == {0, 1}  # round-robin over the 2 ps tasks
    inputs = [op for op in outside if op.type in INPUT_OP_TYPES]
    assert {'TFRecordReaderV2', 'ReaderReadV2', 'ParseExampleV2', 'DecodeImage', 'CropAndResize',
            'RandomShuffleQueueV2', 'FIFOQueueV2', 'QueueEnqueueV2', 'QueueDequeueManyV2'} <= {op.type for op in inputs}
    wrong = [(op.name, op.device) for op in inputs if (_device(op).device_type, _device(op).job, _device(op).task)
             != ('CPU',) + worker]
    assert not wrong, wrong[:5]
    # the update: with mixed precision, the loss-scale optimizer's conds hold the Adam updates
    updates = [graph.train_op] + [op for op in outside if op.type in ('If', 'StatelessIf') or 'Apply' in op.type]
    assert len(updates) >= 3
    wrong = [(op.name, op.device) for op in updates if (_device(op).device_type, _device(op).job) != ('CPU', worker[0])]
    assert not wrong, wrong[:5]


@pytest.mark.parametrize('role', ['chief', 'worker'])
def test_float16_rewrite_and_xla_reach_the_session_of_every_role(records, tmp_path, role, monkeypatch):
    cfg = tiny_config(records, str(tmp_path), extra=['train.mixed_precision=true', 'train.xla=true'])
    info = ClusterInfo(role, 0, WITH_PS)
    base = train_lib.session_config(cfg)
    if role == 'chief':
        config = runtime.session_kwargs(info, base)['config']
    else:
        created = []
        monkeypatch.setattr(tf1.train, 'MonitoredSession', lambda session_creator, **_: created.append(session_creator))
        with tf.Graph().as_default():
            tf1.train.get_or_create_global_step()
            runtime.worker_session(info, tf1.train.Scaffold(), [], base)
        config = created[0]._config
    options = config.graph_options
    assert options.rewrite_options.auto_mixed_precision == 1  # RewriterConfig.ON: the float16 rewrite
    assert options.optimizer_options.global_jit_level == tf1.OptimizerOptions.ON_1  # XLA auto-clustering
    assert config.allow_soft_placement
    assert list(config.device_filters) == ['/job:ps', '/job:%s/task:0' % role]
