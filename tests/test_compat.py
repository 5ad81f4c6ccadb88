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
from pipeline_fixtures import REPO_ROOT


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


@pytest.mark.tf_subset
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


@pytest.mark.tf_subset
def test_slim_image_handler_is_broken_from_tf_2_14_on():
    """If this fails on a TF >= 2.14, tf-slim fixed tfexample_decoder.Image and DecodedImage can go;
    on TF 2.12 / 2.13 slim's handler still decodes what DecodedImage decodes."""
    rng = np.random.RandomState(1)
    image = rng.randint(0, 256, (4, 5, 3)).astype(np.uint8)
    with tf.Graph().as_default():
        decode = lambda: _decode(lambda key, ch: tfexample_decoder.Image(key, records.IMAGE_FORMAT, channels=ch),
                                 _example(image, np.zeros((4, 5), np.uint8)))
        if compat.SLIM_IMAGE_HANDLER_BROKEN:
            with pytest.raises(AttributeError, match='control_flow_ops'):
                decode()
        else:
            decoded_image, _ = decode()
            with tf1.Session() as sess:
                np.testing.assert_array_equal(sess.run(decoded_image), image)


@pytest.mark.tf_subset
def test_tf_version_is_in_the_supported_range():
    assert (2, 12) <= compat.TF_VERSION <= (2, 21)
    assert compat.TF_VERSION == tuple(int(p) for p in tf.__version__.split('.')[:2])


@pytest.mark.tf_subset
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


@pytest.mark.tf_subset
def test_graph_mode_and_layer_apply_warning_filtered():
    """In a fresh interpreter (pytest resets warning filters per test) with warnings shown."""
    assert not tf.executing_eagerly()
    code = ('from fcn.compat import slim, tf, tf1\n'
            'slim.conv2d(tf1.placeholder(tf.float32, [1, 4, 4, 1]), 2, [3, 3])\n'
            'print("built")\n')
    run = subprocess.run([sys.executable, '-W', 'default', '-c', code], capture_output=True, text=True, timeout=120)
    assert 'built' in run.stdout, run.stderr
    assert 'layer.apply' not in run.stderr


@pytest.mark.tf_subset
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


@pytest.mark.tf_subset
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


@pytest.mark.tf_subset
def test_set_op_determinism_switches_both_ways():
    from tensorflow.python.framework import config as tf_config
    from fcn.compat import set_op_determinism
    assert not hasattr(tf.config.experimental, 'disable_op_determinism')  # the gap: no public way back
    try:
        assert set_op_determinism(True) is True and tf_config.is_op_determinism_enabled()
        assert set_op_determinism(False) is False and not tf_config.is_op_determinism_enabled()
    finally:
        set_op_determinism(False)


NOISE = (b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n'
         b'I0000 00:00:1795361784.911635    3494 cudart_stub.cc:31] Could not find cuda drivers on your machine, '
         b'GPU will not be used.\n'
         b'E0000 00:00:1795361793.926818    3660 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: '
         b'Failed call to cuInit: UNKNOWN ERROR (303)\n'
         b'I0000 00:00:1795361784.975702    3494 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to '
         b'use available CPU instructions in performance-critical operations.\n'
         b'To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n'
         # TensorFlow 2.15's own format (its import writes these three E lines)
         b'2026-12-03 12:18:39.154586: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:9261] Unable to '
         b'register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered\n'
         b'2026-12-03 12:18:39.052536: I external/local_tsl/tsl/cuda/cudart_stub.cc:31] Could not find cuda drivers '
         b'on your machine, GPU will not be used.\n')
REAL = (b'E0000 00:00:1795361793.926818    3660 op_kernel.cc:1830] OP_REQUIRES failed: something real\n'
        b'2026-12-03 12:18:42.637017: E tensorflow/core/framework/op_kernel.cc:1830] OP_REQUIRES failed: real too\n'
        b'a line of our own\n')


def _fresh(code, *args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ('TF_CPP_MIN_LOG_LEVEL', 'FCN_DEBUG', 'FCN_VERBOSE')}
    environ.update(env)
    return subprocess.run([sys.executable, '-c', code] + list(args), capture_output=True, timeout=300,
                          env=environ, cwd=REPO_ROOT)


@pytest.mark.tf_subset
@pytest.mark.parametrize('debug', [None, 'FCN_DEBUG', '--verbose'])
def test_quiet_stderr_drops_start_up_noise_only(debug):
    """Written to file descriptor 2 as TensorFlow's C++ logging does, in a fresh interpreter;
    FCN_DEBUG=1 or a script's --verbose (fcn.cli) lets everything through."""
    code = ('import os, sys\nfrom fcn import cli\n'
            'cli.apply_verbose(cli.config_parser("x").parse_args(["--config", "c.yaml"] + sys.argv[1:]))\n'
            'from fcn.compat import quiet_stderr\nwith quiet_stderr():\n'
            '    os.write(2, %r)\n    os.write(2, %r)\nprint("after")\n' % (NOISE, REAL))
    run = _fresh(code, *(['--verbose'] if debug == '--verbose' else []),
                 **({'FCN_DEBUG': '1'} if debug == 'FCN_DEBUG' else {}))
    assert run.returncode == 0 and run.stdout == b'after\n', run.stderr
    if debug:  # everything through, TensorFlow's own start-up lines included
        assert run.stderr.endswith(NOISE + REAL)
    else:
        assert run.stderr == REAL


@pytest.mark.tf_subset
def test_importing_tensorflow_and_running_a_session_is_silent():
    """No absl / cuInit / oneDNN lines, with TF_CPP_MIN_LOG_LEVEL unset; a real error still shows."""
    code = ('from fcn.compat import tf, tf1\n'
            'with tf1.Session() as sess:\n'
            '    print(sess.run(tf.constant(3)))\n'
            '    x = tf1.placeholder(tf.float32)\n'
            '    sess.run(tf.debugging.assert_positive(x, message="x must be positive"), {x: -1.0})\n')
    run = _fresh(code)
    assert run.stdout == b'3\n'
    lines = run.stderr.decode().splitlines()
    assert lines[0] == 'Traceback (most recent call last):', lines[:5]
    assert any('x must be positive' in line for line in lines)


@pytest.mark.tf_subset
def test_tflite_interpreter_runs_a_model_without_the_deprecation_warning(tmp_path):
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [1, 2], name='x')
        y = tf.identity(x + 1.0, name='y')
        with tf1.Session() as sess:
            data = tf1.lite.TFLiteConverter.from_session(sess, [x], [y]).convert()
    path = str(tmp_path / 'm.tflite')
    with open(path, 'wb') as f:
        f.write(data)
    from tensorflow.lite.python import interpreter as tf_lite_interpreter
    if hasattr(tf_lite_interpreter, '_INTERPRETER_DELETION_WARNING'):  # 2.21 has it, 2.12 and 2.15 not
        with pytest.warns(UserWarning, match='tf.lite.Interpreter is deprecated'):
            tf.lite.Interpreter(model_path=path)  # the gap
    else:
        assert compat.TF_VERSION < (2, 21)
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
    assert _update_growth_mb(node, 10, patched=False) > 4 * 16  # the gap: copies pile up (160 MB if every update kept one; 128-160 seen)
    assert _update_growth_mb(node, 10, patched=True) < 2 * 16
    assert (node.op.name, node.op.op_type) == ('weights', 'Const')
    np.testing.assert_array_equal(node.get_tensor_value(as_list=False), weights)
