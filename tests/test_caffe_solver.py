"""Caffe's FCN solver, literally: which variables get weight decay (none of the biases, none of
the upsampling kernels), and two training steps of a Caffe-style run (batch 1, whole image,
momentum 0.99, loss.normalization sum, biases at 2x lr without decay) against the written update
formula, computed in NumPy from the gradient TensorFlow reports:

    weights: v = m v - lr (grad + wd w);   biases: v = m v - 2 lr grad;   w += v
"""
import numpy as np
import pytest

from fcn import options, train_lib
from fcn.compat import tf, tf1
from fcn.nets.fcn import ModelOptions, build_model
from pipeline_fixtures import build_synthetic, tiny_config

IMAGE, CROP = 48, 64  # the crop covers the whole image
LR, MOMENTUM, WEIGHT_DECAY = 1e-7, 0.99, 5e-4  # lr on the summed loss: 2304 pixels x 1e-7 ~ 2e-4 on the mean


def _regularised(name, upsample):
    """{variable name: its regularisation loss tensor} of a small net `name`."""
    with tf.Graph().as_default():
        options = ModelOptions(name=name, width=1 / 16, weight_decay=WEIGHT_DECAY, upsample=upsample)
        build_model(tf.zeros([1, 64, 64, 3]), options, num_classes=3, is_training=True)
        variables = {v.op.name: v for v in tf1.global_variables()}
        losses = tf1.losses.get_regularization_losses()
        by_variable = {_variable_of(loss): loss for loss in losses}
        assert len(by_variable) == len(losses)
        rng = np.random.RandomState(0)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for var in variables.values():
                var.load(rng.normal(0, 0.1, var.shape.as_list()).astype(np.float32), sess)
            values = sess.run(variables)
            loss_values = sess.run(by_variable)
        return sorted(variables), loss_values, values


def _variable_of(loss):
    """The name of the one variable a regularisation loss reads (its VarHandleOp upstream)."""
    pending, handles = [loss.op], set()
    while pending:
        op = pending.pop()
        if op.type == 'VarHandleOp':
            handles.add(op.name)
        pending.extend(tensor.op for tensor in op.inputs)
    assert len(handles) == 1, (loss.op.name, handles)
    return handles.pop()


@pytest.mark.parametrize('upsample', ['learnable', 'per_class', 'fixed'])
def test_weight_decay_is_on_conv_and_score_weights_only_never_biases_or_upsampling(upsample):
    names, losses, values = _regularised('fcn8s', upsample)
    biases = [n for n in names if n.endswith('/biases')]
    upsampling = [n for n in names if n.startswith('fcn/upscore')]
    assert len(biases) == 18 and upsampling == ([] if upsample == 'fixed' else  # fixed: a constant kernel
                                                ['fcn/upscore2/weights', 'fcn/upscore8/weights',
                                                 'fcn/upscore_pool4/weights'])
    # every convolution's weights: the 13 of the trunk, fc6, fc7, fc8 and the two skip score layers
    expected = sorted(n for n in names if n.endswith('/weights') and n not in upsampling)
    assert sorted(losses) == expected and len(expected) == 18
    assert {'vgg_16/fc8/weights', 'fcn/score_pool4/weights', 'fcn/score_pool3/weights'} <= set(losses)
    for name, loss in losses.items():  # slim's l2_regularizer: wd * sum(w^2) / 2, gradient wd * w
        assert loss == pytest.approx(WEIGHT_DECAY * np.sum(values[name].astype(np.float64) ** 2) / 2, rel=1e-5)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=2, num_val=1, size=IMAGE)


CAFFE_STYLE = ['train.batch_size=1', 'train.crop_size=%d' % CROP, 'augment.min_scale=1.0', 'augment.max_scale=1.0',
               'augment.flip=false', 'train.optimizer=momentum', 'train.momentum=%r' % MOMENTUM,
               'train.lr_schedule=fixed', 'train.learning_rate=%r' % LR, 'loss.normalization=sum',
               'train.bias_lr_multiplier=2.0', 'model.weight_decay=%r' % WEIGHT_DECAY, 'model.upsample=fixed',
               'train.clip_gradient_norm=0.0', 'train.warmup_steps=0', 'model.width=0.0625', 'model.dropout_keep_prob=0.5', 'train.seed=3', 'deploy.clone_on_cpu=true']


def _two_caffe_steps(records, run_dir):
    """(weights before, after step 1, after step 2, the data-loss gradients of step 1 and 2,
    (label, logits, data loss) of step 1). The gradients are fetched in the same session run as the
    update, from the same forward pass (the same image and dropout masks)."""
    cfg = tiny_config(records, str(run_dir), extra=CAFFE_STYLE)
    graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
    with graph.graph.as_default():
        trained = {v.op.name: v for v in tf1.trainable_variables()}
        names = sorted(trained)
        clone = graph.clones[0].outputs
        data_gradients = dict(zip(names, tf.gradients(clone['loss'], [trained[n] for n in names])))
        rng = np.random.RandomState(0)
        with tf1.Session() as sess:
            sess.run([tf1.global_variables_initializer(), tf1.local_variables_initializer()])
            for name in names:  # He-initialised, so that every layer's gradient flows from the first step
                shape = trained[name].shape.as_list()
                scale = np.sqrt(2.0 / np.prod(shape[:-1])) if len(shape) > 1 else 0.1
                trained[name].load(rng.normal(0, scale, shape).astype(np.float32), sess)
            coordinator = tf1.train.Coordinator()
            threads = tf1.train.start_queue_runners(sess, coordinator)
            try:
                weights = [sess.run(trained)]
                gradients, first = [], None
                for _ in range(2):
                    grads, seen, _ = sess.run([data_gradients, (clone['labels'], clone['logits'], clone['loss']),
                                               graph.step_after_update])
                    gradients.append(grads)
                    first = first or seen
                    weights.append(sess.run(trained))
            finally:
                coordinator.request_stop()
                coordinator.join(threads)
    return weights, gradients, first


def test_two_caffe_style_steps_follow_the_written_update_formula(records, tmp_path):
    weights, gradients, (labels, logits, loss) = _two_caffe_steps(records, tmp_path)
    w0, w1, w2 = weights
    assert labels.shape == (1, CROP, CROP)  # batch 1, the whole 48x48 image in a 64x64 crop
    assert (labels[0, IMAGE:] == 255).all() and (labels[0, :, IMAGE:] == 255).all()
    assert (labels[0, :IMAGE, :IMAGE] != 255).mean() > 0.5
    # the loss is the cross-entropy summed over the image's labelled pixels (one image: / 1)
    valid = labels != 255
    z = logits[valid].astype(np.float64)
    log_norm = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    assert loss == pytest.approx(np.sum(log_norm - z[np.arange(len(z)), labels[valid]]), rel=1e-4)
    assert not any(name.startswith('fcn/upscore') for name in w0)  # fixed upsampling: not trained
    for name in sorted(w0):
        bias = name.endswith('/biases')
        rate, decay = (2 * LR, 0.0) if bias else (LR, WEIGHT_DECAY)
        before, g1, g2 = w0[name].astype(np.float64), gradients[0][name], gradients[1][name]
        v1 = -rate * (g1 + decay * before)
        v2 = MOMENTUM * v1 - rate * (g2 + decay * w1[name])
        spacing = np.spacing(np.abs(w0[name]).max())
        # a float32 variable holds w + v to its own spacing: the formula within a few of them
        np.testing.assert_allclose(w1[name], before + v1, rtol=0, atol=4 * spacing + 1e-4 * np.abs(v1).max(),
                                   err_msg=name)
        np.testing.assert_allclose(w2[name], w1[name] + v2, rtol=0, atol=4 * spacing + 1e-4 * np.abs(v2).max(),
                                   err_msg=name)
        if name.startswith('vgg_16/fc') or name.startswith('vgg_16/conv5'):
            assert np.abs(v2).max() > 100 * spacing, name  # the steps are far above rounding
    # the controls: a bias without the 2x, or a weight without decay, would be another step
    name = 'vgg_16/fc7/biases'
    assert not np.allclose(w1[name], w0[name] - LR * gradients[0][name], rtol=0, atol=1e-3 * np.abs(w1[name] - w0[name]).max())
