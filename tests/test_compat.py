"""Each TF 2.21 / tf-slim 1.1.0 workaround in fcn/compat.py, and the gap it covers."""
import contextlib
import os
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
from tf_slim.data import tfexample_decoder

from fcn import compat
from fcn.compat import tf, tf1
from fcn.data import records


def _example(image, label):
    ok, jpeg = cv2.imencode('.png', image[:, :, ::-1])
    assert ok
    return records.make_example(jpeg.tobytes(), records.encode_label_png(label), 'x',
                                 image.shape[0], image.shape[1], image_format='png').SerializeToString()


def _decode(handler_factory, serialized):
    keys = {records.IMAGE_ENCODED: tf1.FixedLenFeature((), tf.string),
            records.IMAGE_FORMAT: tf1.FixedLenFeature((), tf.string),
            records.LABEL_ENCODED: tf1.FixedLenFeature((), tf.string)}
    decoder = tfexample_decoder.TFExampleDecoder(keys, {'image': handler_factory(records.IMAGE_ENCODED, 3),
                                                        'label': handler_factory(records.LABEL_ENCODED, 1)})
    return decoder.decode(tf.constant(serialized), ['image', 'label'])


def test_decoded_image_handler_decodes_images_and_labels():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (9, 11, 3)).astype(np.uint8)
    label = rng.randint(0, 5, (9, 11)).astype(np.uint8)
    label[0] = 255
    with tf.Graph().as_default():
        decoded_image, decoded_label = _decode(lambda key, ch: compat.DecodedImage(key, channels=ch),
                                               _example(image, label))
        assert decoded_image.shape.as_list() == [None, None, 3]
        with tf1.Session() as sess:
            got_image, got_label = sess.run([decoded_image, decoded_label])
    np.testing.assert_array_equal(got_image, image)
    np.testing.assert_array_equal(got_label[:, :, 0], label)


def test_slim_image_handler_is_still_broken():
    """If this starts passing, tf-slim fixed tfexample_decoder.Image and DecodedImage can go."""
    image = np.zeros((4, 4, 3), np.uint8)
    with tf.Graph().as_default():
        with pytest.raises(AttributeError):
            _decode(lambda key, ch: tfexample_decoder.Image(key, records.IMAGE_FORMAT, channels=ch),
                    _example(image, np.zeros((4, 4), np.uint8)))


def test_checkpoint_exists_and_latest_checkpoint(tmp_path):
    prefix = str(tmp_path / 'model.ckpt-3')
    assert not compat.checkpoint_exists(prefix)
    with tf.Graph().as_default():
        var = tf1.Variable(1.0, name='v')
        with tf1.Session() as sess:
            sess.run(var.initializer)
            tf1.train.Saver([var]).save(sess, prefix)
    assert compat.checkpoint_exists(prefix)
    assert compat.latest_checkpoint(str(tmp_path)) == prefix
    assert compat.latest_checkpoint(prefix) == prefix
    assert compat.latest_checkpoint(str(tmp_path / 'missing')) is None


def test_graph_mode_and_layer_apply_warning_filtered():
    """In a fresh interpreter (pytest resets warning filters per test) with warnings shown."""
    assert not tf.executing_eagerly()
    code = ('from fcn.compat import slim, tf, tf1\n'
            'slim.conv2d(tf1.placeholder(tf.float32, [1, 4, 4, 1]), 2, [3, 3])\n'
            'print("built")\n')
    run = subprocess.run([sys.executable, '-W', 'default', '-c', code], capture_output=True, text=True, timeout=120)
    assert 'built' in run.stdout, run.stderr
    assert 'layer.apply' not in run.stderr


def test_loss_scale_optimizer_skips_non_finite_steps_and_lowers_the_scale():
    with tf.Graph().as_default():
        x = tf1.Variable(1.0, name='x')
        factor = tf1.placeholder(tf.float32, [])
        optimizer = compat.loss_scale_optimizer(tf1.train.GradientDescentOptimizer(0.1))
        train_op = optimizer.minimize(factor * x * x)
        scale = [v for v in tf1.global_variables() if v.op.name == 'current_loss_scale'][0]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            initial_scale = sess.run(scale)
            sess.run(train_op, {factor: 1.0})
            assert sess.run(x) == pytest.approx(0.8)  # gradients unscaled: plain SGD, 1 - 0.1 * 2
            sess.run(train_op, {factor: float('inf')})
            assert sess.run(x) == pytest.approx(0.8)  # the non-finite step is skipped
            assert sess.run(scale) == initial_scale / 2


def test_session_options_set_xla_and_float16_rewrite_which_leave_cpu_float32():
    config = compat.session_options(tf1.ConfigProto(), xla=True, mixed_precision=True)
    assert config.graph_options.optimizer_options.global_jit_level == tf1.OptimizerOptions.ON_1
    assert config.graph_options.rewrite_options.auto_mixed_precision == compat.rewriter_config_pb2.RewriterConfig.ON
    plain = compat.session_options(tf1.ConfigProto())
    assert plain == tf1.ConfigProto()
    with tf.Graph().as_default():
        a = tf1.placeholder(tf.float32, [1, 1])
        product = tf.matmul(a, tf.ones([1, 1]))  # MatMul is on the float16 allow list
        with tf1.Session(config=config) as sess:
            value = sess.run(product, {a: [[1.0001]]})
    assert value[0, 0] == np.float32(1.0001)  # float16 would round it to 1.0


def test_tflite_interpreter_runs_a_model_without_the_deprecation_warning(tmp_path):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, 2], name='x')
        y = tf.identity(x + 1.0, name='y')
        with tf1.Session() as sess:
            data = tf1.lite.TFLiteConverter.from_session(sess, [x], [y]).convert()
    path = str(tmp_path / 'm.tflite')
    with open(path, 'wb') as f:
        f.write(data)
    with pytest.warns(UserWarning, match='tf.lite.Interpreter is deprecated'):
        tf.lite.Interpreter(model_path=path)  # the gap
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        interpreter = compat.tflite_interpreter(path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], np.float32([[1, 2]]))
    interpreter.invoke()
    np.testing.assert_array_equal(interpreter.get_tensor(interpreter.get_output_details()[0]['index']), [[2, 3]])


def _rss_mb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def _update_growth_mb(node, times, patched):
    before = _rss_mb()
    with compat.tf2onnx_fresh_node_protos() if patched else contextlib.nullcontext():
        for _ in range(times):
            node.update_proto()
    return _rss_mb() - before


def test_tf2onnx_node_updates_keep_no_copies_of_the_weights():
    from tf2onnx.graph import Graph
    graph = Graph([], opset=17)
    weights = np.arange(4 * 1024 * 1024, dtype=np.float32).reshape(4, 1024, 1024)  # 16 MB
    node = graph.make_const('weights', weights)
    node.update_proto()
    assert _update_growth_mb(node, 10, patched=False) > 8 * 16  # the gap: one more copy per update
    assert _update_growth_mb(node, 10, patched=True) < 2 * 16
    assert (node.op.name, node.op.op_type) == ('weights', 'Const')
    np.testing.assert_array_equal(node.get_tensor_value(as_list=False), weights)
