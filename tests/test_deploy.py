"""fcn.deploy: device placement, shared variables across clones, averaged gradients."""
import numpy as np
import pytest

from fcn import deploy, options
from fcn.cluster.roles import ClusterInfo
from fcn.compat import slim, tf, tf1
from fcn.config import Config

pytestmark = pytest.mark.tf_subset  # the pipeline subset .ci/run also runs on TensorFlow 2.12 and 2.15

BATCH = 4
NUM_CLASSES = 3
WEIGHT_DECAY = 0.05
LEARNING_RATE = 0.5


def _examples():
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, size=(BATCH, 8, 8, 3)).astype(np.float32)
    labels = rng.randint(0, NUM_CLASSES, size=(BATCH, 8, 8)).astype(np.int32)
    weights = {'conv1': rng.normal(0, 0.5, size=(3, 3, 3, 4)).astype(np.float32),
               'conv2': rng.normal(0, 0.5, size=(1, 1, 4, NUM_CLASSES)).astype(np.float32)}
    return images, labels, weights


def _model_fn(batches, weights):
    """A clone: two convolutions, per-pixel softmax loss. `batches` yields one (images,
    labels) pair per clone, standing in for a batch queue's dequeue()."""
    images, labels = next(batches)
    net = images
    for name, depth, size, activation in (('conv1', 4, 3, tf.nn.relu), ('conv2', NUM_CLASSES, 1, None)):
        net = slim.conv2d(net, depth, size, activation_fn=activation, scope=name,
                          weights_initializer=tf1.constant_initializer(weights[name]),
                          weights_regularizer=slim.l2_regularizer(WEIGHT_DECAY))
    tf1.losses.sparse_softmax_cross_entropy(labels, net)
    tf1.summary.scalar('mean_logit', tf.reduce_mean(net))
    return net


def _train_one_step(num_clones):
    """One GradientDescent step on the same 4 examples split over `num_clones` CPU clones
    -> (total loss, regularisation loss, {variable: value after the step}, {variable: before})."""
    images, labels, weights = _examples()
    with tf.Graph().as_default():
        config = deploy.DeploymentConfig(num_clones=num_clones, clone_on_cpu=True)
        batches = zip(np.split(images, num_clones), np.split(labels, num_clones))
        clones = deploy.create_clones(config, _model_fn, [iter(batches), weights])
        optimizer = tf1.train.GradientDescentOptimizer(LEARNING_RATE)
        total_loss, grads_and_vars = deploy.optimize_clones(clones, optimizer)
        train_op = optimizer.apply_gradients(grads_and_vars)
        regularization = tf.add_n(tf1.losses.get_regularization_losses())
        variables = {v.op.name: v for v in tf1.trainable_variables()}
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            before = sess.run(variables)
            loss, reg = sess.run([total_loss, regularization])
            sess.run(train_op)
            after = sess.run(variables)
    return loss, reg, after, before


def test_two_clones_of_batch_2_step_like_one_clone_of_batch_4():
    loss_1, reg_1, after_1, before = _train_one_step(num_clones=1)
    loss_2, reg_2, after_2, _ = _train_one_step(num_clones=2)
    assert sorted(after_2) == sorted(after_1) == ['conv1/biases', 'conv1/weights', 'conv2/biases', 'conv2/weights']
    np.testing.assert_allclose(loss_2, loss_1, rtol=1e-5)
    for name in after_1:
        assert np.abs(after_1[name] - before[name]).max() > 1e-3, 'the step must move %s' % name
        np.testing.assert_allclose(after_2[name], after_1[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_regularisation_is_added_once_not_per_clone():
    loss, reg, _, _ = _train_one_step(num_clones=2)
    assert reg > 0.1  # large enough that counting it twice would show
    images, labels, weights = _examples()
    with tf.Graph().as_default():  # the data loss alone, no clones
        logits = _model_fn(iter([(images, labels)]), weights)
        data_loss = tf1.losses.sparse_softmax_cross_entropy(labels, logits)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            data_loss = sess.run(data_loss)
    np.testing.assert_allclose(loss, data_loss + reg, rtol=1e-5)


def test_clones_share_variables_and_scope_their_ops():
    images, labels, weights = _examples()
    with tf.Graph().as_default():
        config = deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
        batches = iter(zip(np.split(images, 2), np.split(labels, 2)))
        clones = deploy.create_clones(config, _model_fn, [batches, weights])
        assert [v.op.name for v in tf1.global_variables()] == [
            'conv1/weights', 'conv1/biases', 'conv2/weights', 'conv2/biases']
        assert len(tf1.losses.get_regularization_losses()) == 2
        assert [c.scope for c in clones] == ['clone_0/', 'clone_1/']
        assert [c.outputs.op.name for c in clones] == ['clone_0/conv2/BiasAdd', 'clone_1/conv2/BiasAdd']
        assert [s.op.name for s in deploy.first_clone_summaries(clones)] == ['clone_0/mean_logit']
        assert len(tf1.get_collection(tf1.GraphKeys.SUMMARIES)) == 2


def test_a_clone_without_loss_is_an_error():
    with tf.Graph().as_default():
        config = deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
        clones = deploy.create_clones(config, lambda: tf1.get_variable('w', [1]) * 2.0)
        with pytest.raises(ValueError, match='clone_0.*add_loss'):
            deploy.optimize_clones(clones, tf1.train.GradientDescentOptimizer(0.1))


def test_single_process_devices():
    config = deploy.DeploymentConfig(num_clones=2)
    assert [config.clone_device(i) for i in range(2)] == ['/device:GPU:0', '/device:GPU:1']
    assert [config.clone_scope(i) for i in range(2)] == ['clone_0', 'clone_1']
    assert config.variables_device() == config.optimizer_device() == config.inputs_device() == '/device:CPU:0'
    assert config.caching_device() is None
    one = deploy.DeploymentConfig(clone_on_cpu=True)
    assert (one.clone_device(0), one.clone_scope(0)) == ('/device:CPU:0', '')
    with pytest.raises(ValueError, match='clone index 2'):
        config.clone_device(2)


def test_parameter_server_devices_place_variables_round_robin():
    config = deploy.DeploymentConfig(num_clones=2, replica_id=1, num_replicas=3, num_ps_tasks=2)
    assert config.clone_device(1) == '/job:worker/task:1/device:GPU:1'
    assert config.optimizer_device() == config.inputs_device() == '/job:worker/task:1/device:CPU:0'
    images, labels, weights = _examples()
    with tf.Graph().as_default() as graph:
        with tf1.device(config.variables_device()):
            tf1.train.get_or_create_global_step()
        batches = iter(zip(np.split(images, 2), np.split(labels, 2)))
        deploy.create_clones(config, _model_fn, [batches, weights])
        handles = {op.name: op.device for op in graph.get_operations() if op.type == 'VarHandleOp'}
        convs = {op.name: op.device for op in graph.get_operations() if op.type == 'Conv2D'}
        assert config.caching_device()(graph.get_operation_by_name('clone_1/conv1/Conv2D')) == convs[
            'clone_1/conv1/Conv2D']
    assert handles == {'global_step': '/job:ps/task:0/device:CPU:0',
                       'conv1/weights': '/job:ps/task:1/device:CPU:0',
                       'conv1/biases': '/job:ps/task:0/device:CPU:0',
                       'conv2/weights': '/job:ps/task:1/device:CPU:0',
                       'conv2/biases': '/job:ps/task:0/device:CPU:0'}
    assert convs == {'clone_0/conv1/Conv2D': '/job:worker/task:1/device:GPU:0',
                     'clone_0/conv2/Conv2D': '/job:worker/task:1/device:GPU:0',
                     'clone_1/conv1/Conv2D': '/job:worker/task:1/device:GPU:1',
                     'clone_1/conv2/Conv2D': '/job:worker/task:1/device:GPU:1'}


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_clones=0), 'num_clones'),
    (dict(replica_id=2, num_replicas=2, num_ps_tasks=1), 'replica_id 2'),
    (dict(num_replicas=2), 'parameter servers'),
])
def test_bad_deployment_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deploy.DeploymentConfig(**kwargs)


def _cfg(num_clones=2, clone_on_cpu=True):
    return Config(deploy=Config(num_clones=num_clones, clone_on_cpu=clone_on_cpu))


def test_from_config_single_process_and_cluster_tasks():
    local = options.deployment(_cfg())
    assert (local.num_clones, local.clone_on_cpu, local.num_ps_tasks) == (2, True, 0)
    spec = {'chief': ['h:1'], 'worker': ['h:2', 'h:3'], 'ps': ['h:4']}
    worker = options.deployment(_cfg(), ClusterInfo('worker', 1, spec))
    assert (worker.replica_id, worker.num_replicas, worker.num_ps_tasks) == (1, 3, 1)
    assert worker.clone_device(0) == '/job:worker/task:1/device:CPU:0'
    chief = options.deployment(_cfg(clone_on_cpu=False), ClusterInfo('chief', 0, spec))
    assert chief.clone_device(1) == '/job:chief/task:0/device:GPU:1'
    with pytest.raises(ValueError, match='ps:0'):
        options.deployment(_cfg(), ClusterInfo('ps', 0, spec))
