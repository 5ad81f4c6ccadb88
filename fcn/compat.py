"""The one place that bridges TensorFlow 2.12 to 2.21 and tf-slim 1.1.0.

Everything else imports `tf`, `tf1` and `slim` from here, so each workaround for a gap
between the two lives (and is tested, tests/test_compat.py) in this module alone. Each
names the TensorFlow versions it applies to ("all" = 2.12 to 2.21; CI runs the whole suite
on 2.21 and `pytest -m tf_subset` on 2.12 and 2.15):

- graph mode (all): `tf.compat.v1.disable_eager_execution()` once at import.

- `tfexample_decoder.Image` calls `control_flow_ops.case`/`cond`, moved out of that module in
  TF 2.14 (2.12 and 2.13 still have them; SLIM_IMAGE_HANDLER_BROKEN): `DecodedImage` is a
  drop-in item handler built on `tf.io.decode_image`, used on every version alike.
- `slim.learning.create_train_op(clip_gradient_norm=...)` uses the removed
  `ops.IndexedSlices`: callers clip with `tf.clip_by_global_norm` (fcn.optim).
- `slim.batch_norm` needs the missing tf_keras legacy module: VGG/FCN do not use it.
- slim layers warn that `layer.apply` is deprecated on every call: filtered here.
- `tf.compat.v1.train.checkpoint_exists` is deprecated: `checkpoint_exists` below looks for
  both formats TensorFlow reads: a V2 prefix (`model.ckpt-100.index` + data shards) and a V1
  single file (TF-Slim's `vgg_16.ckpt`).
- `tf.config.experimental.enable_op_determinism` is process-wide and TensorFlow exports no
  way back: `set_op_determinism(flag)` sets it either way (TF's own, unexported
  `disable_op_determinism`), so one train.deterministic run does not slow later runs of
  the same process (tests, notebooks).
- `tf.compat.v1.mixed_precision.enable_mixed_precision_graph_rewrite` switches the float16
  rewrite on for every later Session of the process (global state): `loss_scale_optimizer`
  and `session_options` do the same two things scoped to one run.
- start-up noise: importing TensorFlow and its first look for a GPU write absl lines to file
  descriptor 2 (`WARNING: All log messages before absl::InitializeLog()`, `cudart_stub.cc ...
  Could not find cuda drivers`, `E0000 ... failed call to cuInit` on a machine without a GPU,
  oneDNN and CPU-feature notices) that TF_CPP_MIN_LOG_LEVEL does not silence; TF 2.15 and
  older write them as `2026-12-03 12:18:39.154586: E .../cuda_dnn.cc:9261] Unable to register
  cuDNN factory ...` (2.15: three such E lines at import) instead of absl's `E1203 ...` form. `quiet_stderr`
  captures descriptor 2 around the import and the GPU probe and passes on every other line;
  `FCN_DEBUG=1` or `FCN_VERBOSE=1` (the scripts' --verbose) shows everything.
- `tf.lite.Interpreter` warns on every construction that it is deprecated in favour of the
  ai_edge_litert package (2.21 does, 2.12 and 2.15 do not; it still ships and works in 2.21):
  `tflite_interpreter` silences it where it warns.
- tf2onnx 1.17 rewrites each node's attributes in place (`Node.update_proto`, once per
  optimizer pass); with protobuf's upb backend (what TensorFlow 2.21 installs) replaced fields
  stay in the message's arena until the message is freed, so every pass keeps one more copy of
  every weight: a width-1.0 FCN-32s (545 MB) needed more than 15 GB. `tf2onnx_fresh_node_protos`
  builds each node's proto afresh instead.
"""
import contextlib
import os
import re
import sys
import tempfile
import warnings

VERBOSE = bool(os.environ.get('FCN_DEBUG') or os.environ.get('FCN_VERBOSE'))
# C++ log lines written while TensorFlow starts that say nothing to a user.
NOISE = re.compile(
    r'^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    r'|^[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] '                  # absl INFO / WARNING lines
    r'|^E\d{4} [\d:. ]+\d+ [\w.]+:\d+\] (failed call to cuInit|Unable to register cu\w+ factory)'
    # TensorFlow <= 2.15 logs in its own format: "2026-12-03 12:18:39.154586: E path/file.cc:9261] ..."
    r'|^\d{4}-\d\d-\d\d [\d:.]+: [IW] [\w./]+:\d+\] '
    r'|^\d{4}-\d\d-\d\d [\d:.]+: E [\w./]+:\d+\] (failed call to cuInit|Unable to register cu\w+ factory)'
    r'|oneDNN custom operations are on|^To enable the following instructions:'
    r'|This TensorFlow binary is optimized to use available CPU instructions'
    r'|^TF-TRT Warning')


def _is_noise(line):
    return bool(NOISE.search(line))


@contextlib.contextmanager
def quiet_stderr(verbose=VERBOSE):
    """Captures file descriptor 2 (C++ and Python writes alike) while the block runs, then
    writes back every captured line that is not TensorFlow start-up noise; with `verbose`,
    does nothing."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode('utf-8', 'replace').splitlines(True)
                    if not _is_noise(line)]
            if kept:
                sys.stderr.write(''.join(kept))
                sys.stderr.flush()


if not VERBOSE:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

with quiet_stderr():
    import tensorflow as tf  # noqa: E402
    import tf_slim as slim  # noqa: E402
    from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402
    from tf_slim.data import tfexample_decoder  # noqa: E402
    tf.config.list_physical_devices('GPU')  # the CUDA probe (cuInit) logs here, not in the first Session

TF_VERSION = tuple(int(part) for part in tf.__version__.split('.')[:2])  # (2, 15)
# tf-slim 1.1.0's tfexample_decoder.Image calls control_flow_ops.case, gone from TF 2.14 on.
SLIM_IMAGE_HANDLER_BROKEN = TF_VERSION >= (2, 14)

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.logging.set_verbosity(tf1.logging.INFO if VERBOSE else tf1.logging.ERROR)
# slim layers call the deprecated Keras `layer.apply` on every layer: one warning per run is noise.
warnings.filterwarnings('ignore', message='`layer.apply` is deprecated')


class DecodedImage(tfexample_decoder.ItemHandler):
    """Decodes an encoded image feature (JPEG/PNG/BMP/GIF) to a uint8 [H, W, channels] tensor.

    Stands in for `tfexample_decoder.Image`, whose format dispatch is broken on TF 2.x.
    The format is sniffed from the bytes, so the `image/format` key is informational.
    """

    def __init__(self, image_key, channels=3):
        super().__init__([image_key])
        self._image_key = image_key
        self._channels = channels

    def tensors_to_item(self, keys_to_tensors):
        encoded = keys_to_tensors[self._image_key]
        image = tf.io.decode_image(encoded, channels=self._channels, dtype=tf.uint8, expand_animations=False)
        image.set_shape([None, None, self._channels])
        return image


def latest_checkpoint(path):
    """Latest checkpoint prefix in folder `path`, `path` itself if it is a prefix, else None."""
    if path is None:
        return None
    if os.path.isdir(path):
        return tf1.train.latest_checkpoint(path)
    if checkpoint_exists(path):
        return path
    return None


def checkpoint_exists(path):
    """Whether `path` names a checkpoint on disk: a V2 prefix or a V1 single file."""
    if tf.io.gfile.exists(path + '.index'):
        return True
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def visible_gpus():
    """Names of the GPUs TensorFlow sees (CUDA_VISIBLE_DEVICES applied), e.g.
    ['NVIDIA A100-SXM4-40GB', ...]; [] without one. The one call that lists devices: tests
    stub it to stand for a GPU machine."""
    gpus = tf.config.list_physical_devices('GPU')
    return [tf.config.experimental.get_device_details(gpu).get('device_name', gpu.name) for gpu in gpus]


def set_op_determinism(enabled):
    """Turns TensorFlow's op determinism on or off for this process (train.deterministic):
    ops then pick deterministic kernels, or raise where they have none."""
    from tensorflow.python.framework import config as tf_config
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    return tf_config.is_op_determinism_enabled()


def loss_scale_optimizer(optimizer):
    """`optimizer` with dynamic loss scaling, the half of the mixed-precision graph rewrite
    that guards float16 gradients from underflow (a step with non-finite gradients is skipped
    and the scale lowered)."""
    return tf1.mixed_precision.MixedPrecisionLossScaleOptimizer(optimizer, loss_scale='dynamic')


def session_options(config, xla=False, mixed_precision=False):
    """`config` (a ConfigProto, changed in place and returned) with XLA auto-clustering
    (global_jit_level ON_1) and/or grappler's float16 rewrite, the other half of mixed
    precision. Both act on GPUs only: on a CPU-only machine TensorFlow skips them."""
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf1.OptimizerOptions.ON_1
    if mixed_precision:
        config.graph_options.rewrite_options.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    return config


def tflite_interpreter(model_path, num_threads=None):
    """`tf.lite.Interpreter(model_path)` without its deprecation warning (one per model loaded)."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message=r'\s*Warning: tf\.lite\.Interpreter is deprecated')
        return tf.lite.Interpreter(model_path=model_path, num_threads=num_threads)


NODE_PROTO_SCALARS = ('name', 'op_type', 'domain', 'overload', 'doc_string')


@contextlib.contextmanager
def tf2onnx_fresh_node_protos():
    """Within it, tf2onnx's `Node.update_proto` fills a new NodeProto (the old one, and its
    arena, is freed) instead of rewriting the node's attributes in place."""
    import onnx
    from tf2onnx import graph as tf2onnx_graph
    original = tf2onnx_graph.Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        fresh = onnx.NodeProto()
        for name in NODE_PROTO_SCALARS:  # inputs, outputs and attributes are rewritten by update_proto
            if name in fresh.DESCRIPTOR.fields_by_name:
                setattr(fresh, name, getattr(self._op, name))
        self._op = fresh
        original(self, external_tensor_storage)

    tf2onnx_graph.Node.update_proto = update_proto
    try:
        yield
    finally:
        tf2onnx_graph.Node.update_proto = original
