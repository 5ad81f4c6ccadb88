"""Eval options: EMA weights in eval and export, multi-scale + flipped inference (eval = export),
the best checkpoint, fwIoU, the confusion heatmap and per-class IoU in TensorBoard, loop limits.

Prediction tests use checkpoints with random score and upsampling layers (a few-step run predicts background
everywhere, which would make symmetry and equality checks vacuous); the EMA tests use the
shadow variables of a real training run.
"""
import glob
import json
import os
import runpy
import shutil

import cv2
import numpy as np
import pytest

from datasets_fixtures import read_examples
from fcn import eval_lib, metrics, train_lib, visualize
from fcn.run import Run
from fcn.compat import tf, tf1
from fcn.export import export_source
from fcn.export import frozen
from fcn.export.common import sidecar_path
from fcn.export.frozen import FrozenModel
from fcn import options
from fcn.nets.fcn import build_model
from inference_fixtures import random_checkpoint
from pipeline_fixtures import REPO_ROOT, build_synthetic, scalar_series, tiny_config

NUM_CLASSES = 5
CLASS_NAMES = ['background', 'disc', 'square', 'triangle', 'cross']
VIRIDIS_LOW, VIRIDIS_HIGH = (68, 1, 84), (253, 231, 37)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=3, size=64)


def _config(data_dir, run_dir, *extra):
    return tiny_config(data_dir, run_dir, steps=1000, extra=['eval.interval_secs=0'] + list(extra))


@pytest.fixture(scope='module')
def random_run(data_dir, tmp_path_factory):
    """A run dir whose only checkpoint is model.ckpt-1, a random model."""
    cfg = _config(data_dir, str(tmp_path_factory.mktemp('random') / 'run'))
    random_checkpoint(cfg, NUM_CLASSES, step=1, seed=1)
    return cfg


def _fresh_run(cfg, tmp_path, *extra):
    """A copy of cfg's run dir (checkpoints only) for a test that writes eval results into it."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(cfg.train.run_dir, run_dir, ignore=shutil.ignore_patterns('eval', 'best'))
    return _config(cfg.data.dir, run_dir, *extra)


# --- metrics and rendering ------------------------------------------------------------------

def test_fwiou_and_miou_match_a_hand_computation():
    confusion = [[6, 2, 0, 0],
                 [1, 2, 1, 0],
                 [0, 0, 0, 0],   # class 2: never in the ground truth, predicted once -> IoU 0
                 [0, 0, 0, 0]]   # class 3: absent from both -> no IoU, left out of the means
    # gt pixels 8, 4, 0, 0 (total 12); predicted 7, 4, 1, 0
    # IoU: 6/(8+7-6) = 2/3, 2/(4+4-2) = 1/3, 0/(0+1-0) = 0, none
    results = metrics.scores(confusion)
    assert results['fwiou'] == pytest.approx(8 / 12 * 2 / 3 + 4 / 12 * 1 / 3)  # 5/9
    assert results['miou'] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert results['pixel_accuracy'] == pytest.approx(8 / 12)
    assert results['per_class_iou']['class_3'] is None


def test_normalized_confusion_rows_sum_to_one():
    normalized = metrics.normalized_confusion([[3, 1], [0, 0]])
    np.testing.assert_allclose(normalized, [[0.75, 0.25], [0.0, 0.0]])


def test_confusion_heatmap_colours_and_layout():
    image = visualize.confusion_image(np.diag([5, 7, 9]), ['a', 'b', 'c'])
    cell = 32
    top, left = image.shape[0] - 3 * cell, image.shape[1] - 3 * cell
    assert top > 0 and left > 0  # column names above, row names on the left
    for i in range(3):
        for j in range(3):
            pixel = image[top + i * cell + 1, left + j * cell + 1]  # a cell corner, away from its text
            np.testing.assert_allclose(pixel, VIRIDIS_HIGH if i == j else VIRIDIS_LOW, atol=3)


@pytest.mark.parametrize('num_classes', [3, 21, 81])
def test_confusion_heatmap_names_every_row_and_column(num_classes):
    """Each class's band of the left margin and of the top margin holds text (dark pixels),
    the class count of COCO included."""
    names = ['class%d' % i for i in range(num_classes)]
    image = visualize.confusion_image(np.eye(num_classes, dtype=np.int64), names)
    cell = int(np.clip(visualize.CONFUSION_PIXELS // num_classes, 12, 32))
    top, left = image.shape[0] - num_classes * cell, image.shape[1] - num_classes * cell
    dark = image.min(axis=2) < 128
    for i in range(num_classes):
        assert dark[top + i * cell:top + (i + 1) * cell, :left].any(), 'row %d unnamed' % i
        assert dark[:top, left + i * cell:left + (i + 1) * cell].any(), 'column %d unnamed' % i


# --- EMA ------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def ema_run(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp('ema') / 'run')
    cfg = tiny_config(data_dir, run_dir, steps=10, extra=['train.ema_decay=0.9'])
    train_lib.train(cfg, log=lambda *_: None)
    return cfg, tf1.train.latest_checkpoint(run_dir)


def _shadows_differ(reader, name):
    return not np.array_equal(reader.get_tensor(name), reader.get_tensor(name + '/ExponentialMovingAverage'))


def test_eval_restores_the_ema_shadows(ema_run):
    cfg, checkpoint = ema_run
    reader = tf.train.load_checkpoint(checkpoint)
    assert _shadows_differ(reader, 'vgg_16/fc8/weights')  # else the test could not tell them apart
    graph = eval_lib.EvalGraph(eval_lib.options(cfg))
    with graph.graph.as_default(), tf1.Session() as sess:
        graph.restorer.restore(sess, checkpoint)
        values = {v.op.name: sess.run(v) for v in tf1.trainable_variables()}
    assert len(values) > 10
    for name, value in values.items():
        np.testing.assert_array_equal(value, reader.get_tensor(name + '/ExponentialMovingAverage'), err_msg=name)


def test_export_freezes_the_ema_shadows(ema_run, tmp_path):
    cfg, checkpoint = ema_run
    reader = tf.train.load_checkpoint(checkpoint)
    model_path = str(tmp_path / 'model.pb')
    frozen.export(export_source(cfg, checkpoint), model_path)
    graph_def = tf1.GraphDef()
    with open(model_path, 'rb') as f:
        graph_def.ParseFromString(f.read())
    constants = {node.name: tf1.make_ndarray(node.attr['value'].tensor) for node in graph_def.node
                 if node.op == 'Const' and node.name.endswith(('weights', 'biases'))}
    assert 'vgg_16/fc8/weights' in constants and 'vgg_16/conv1/conv1_1/biases' in constants
    assert _shadows_differ(reader, 'vgg_16/fc8/weights')
    for name, value in constants.items():
        np.testing.assert_array_equal(value, reader.get_tensor(name + '/ExponentialMovingAverage'), err_msg=name)
    with open(sidecar_path(model_path)) as f:
        assert json.load(f)['ema'] is True


def test_ema_config_on_a_checkpoint_without_shadows_is_a_clear_error(random_run):
    cfg = _config(random_run.data.dir, random_run.train.run_dir, 'train.ema_decay=0.99')
    with pytest.raises(ValueError, match='ExponentialMovingAverage.*eval.moving_averages=false'):
        eval_lib.predictions_for_split(cfg, tf1.train.latest_checkpoint(cfg.train.run_dir))


# --- multi-scale and flip -------------------------------------------------------------------

def _reference_predictions(cfg, checkpoint, images):
    """Plain model -> argmax on each image, restored with a plain Saver: the old default."""
    with tf.Graph().as_default():
        placeholder = tf1.placeholder(tf.float32, [1, None, None, 3])
        logits, _ = build_model(placeholder, options.model(cfg), NUM_CLASSES, is_training=False)
        predictions = tf.argmax(logits, axis=3)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, checkpoint)
            return [sess.run(predictions, {placeholder: image[None]})[0] for image in images]


@pytest.mark.parametrize('scales', ['[1.0]', '[1.0, 1.0]'])
def test_single_scale_without_flip_predicts_as_the_plain_model(random_run, scales):
    """[1.0] is the default path; [1.0, 1.0] goes through the softmax averaging."""
    cfg = _config(random_run.data.dir, random_run.train.run_dir, 'eval.scales=%s' % scales, 'eval.flip=false')
    checkpoint = tf1.train.latest_checkpoint(cfg.train.run_dir)
    examples = {ex['filename']: ex['image'] for ex in read_examples(cfg.data.dir, 'val')}
    names, _, predictions = zip(*eval_lib.predictions_for_split(cfg, checkpoint))
    reference = _reference_predictions(cfg, checkpoint, [examples[name] for name in names])
    assert len(np.unique(np.concatenate(reference))) > 1  # a random model: not one class everywhere
    for got, expected in zip(predictions, reference):
        np.testing.assert_array_equal(got, expected)


def _export_model(cfg, tmp_path, name):
    path = str(tmp_path / name)
    frozen.export(export_source(cfg, tf1.train.latest_checkpoint(cfg.train.run_dir)), path)
    return FrozenModel(path)


def _test_images(data_dir):
    """Val images whole and cropped to widths that are not multiples of 32 (asymmetric padding)."""
    images = []
    for ex in read_examples(data_dir, 'val'):
        images += [ex['image'], ex['image'][:, :50], ex['image'][5:, 7:57]]
    return [np.ascontiguousarray(image) for image in images]


def _mirror_symmetric(model, image):
    return np.array_equal(model.predict(np.ascontiguousarray(image[:, ::-1])), model.predict(image)[:, ::-1])


def test_flip_averaging_is_mirror_symmetric_and_export_matches_eval(random_run, tmp_path):
    multi = _config(random_run.data.dir, random_run.train.run_dir, 'eval.scales=[0.75, 1.0]', 'eval.flip=true')
    no_flip = _config(random_run.data.dir, random_run.train.run_dir, 'eval.scales=[0.75, 1.0]')
    images = _test_images(multi.data.dir)
    model = _export_model(multi, tmp_path, 'flip.pb')
    control = _export_model(no_flip, tmp_path, 'no_flip.pb')
    assert all(_mirror_symmetric(model, image) for image in images)
    assert not all(_mirror_symmetric(control, image) for image in images)  # the check can fail
    ops = {node.op for node in model.graph.as_graph_def().node}
    assert {'ReverseV2', 'ResizeBilinear'} <= ops

    examples = {ex['filename']: ex['image'] for ex in read_examples(multi.data.dir, 'val')}
    evaluated = eval_lib.predictions_for_split(multi, tf1.train.latest_checkpoint(multi.train.run_dir))
    for name, _, prediction in evaluated:
        np.testing.assert_array_equal(model.predict(examples[name]), prediction)
    assert any(not np.array_equal(control.predict(examples[name]), prediction) for name, _, prediction in evaluated)
    model.close()
    control.close()


# --- best checkpoint ------------------------------------------------------------------------

def _save_tiny(prefix, value):
    with tf.Graph().as_default():
        var = tf1.Variable(float(value), name='v')
        with tf1.Session() as sess:
            sess.run(var.initializer)
            tf1.train.Saver([var]).save(sess, prefix)


def _best_value(run_dir):
    return tf.train.load_checkpoint(tf1.train.latest_checkpoint(os.path.join(run_dir, 'best'))).get_tensor('v')


def test_keep_best_copies_only_improvements(tmp_path):
    run_dir = str(tmp_path)
    for step in (1, 2, 3):
        _save_tiny(os.path.join(run_dir, 'model.ckpt-%d' % step), step)
    checkpoint = lambda step: os.path.join(run_dir, 'model.ckpt-%d' % step)  # noqa: E731
    assert Run(run_dir).read_best() is None
    assert Run(run_dir).keep_best(checkpoint(1), {'miou': 0.5, 'global_step': 1})
    assert _best_value(run_dir) == 1
    assert not Run(run_dir).keep_best(checkpoint(2), {'miou': 0.4, 'global_step': 2})
    assert not Run(run_dir).keep_best(checkpoint(2), {'miou': 0.5, 'global_step': 2})  # ties keep the first
    assert Run(run_dir).read_best()['global_step'] == 1 and _best_value(run_dir) == 1
    assert Run(run_dir).keep_best(checkpoint(3), {'miou': 0.6, 'global_step': 3})
    best = Run(run_dir).read_best()
    assert (best['global_step'], best['miou']) == (3, 0.6)
    assert best['checkpoint'] == os.path.join(run_dir, 'best', 'model.ckpt-3')
    assert _best_value(run_dir) == 3
    files = sorted(os.listdir(os.path.join(run_dir, 'best')))
    assert files == ['best.json', 'checkpoint', 'model.ckpt-3.data-00000-of-00001', 'model.ckpt-3.index',
                     'model.ckpt-3.meta']  # the old best's files are gone, no temporaries left


@pytest.fixture(scope='module')
def evaluated(random_run, tmp_path_factory):
    """eval --once on a copy of the random run, with a second, different model at step 2."""
    cfg = _fresh_run(random_run, tmp_path_factory.mktemp('evaluated'))
    random_checkpoint(cfg, NUM_CLASSES, step=2, seed=2)
    first = eval_lib.evaluate_once(cfg, os.path.join(cfg.train.run_dir, 'model.ckpt-1'), progress=False)
    second = eval_lib.evaluate_once(cfg, os.path.join(cfg.train.run_dir, 'model.ckpt-2'), progress=False)
    return cfg, first, second


def test_eval_once_keeps_the_best_checkpoint(evaluated):
    cfg, first, second = evaluated
    assert first['miou'] != second['miou']
    winner = max(first, second, key=lambda r: r['miou'])
    best = Run(cfg.train.run_dir).read_best()
    assert (best['global_step'], best['miou']) == (winner['global_step'], winner['miou'])
    best_checkpoint = tf1.train.latest_checkpoint(os.path.join(cfg.train.run_dir, 'best'))
    assert best_checkpoint.endswith('model.ckpt-%d' % winner['global_step'])
    again, _ = eval_lib.EvalGraph(eval_lib.options(cfg)).run(best_checkpoint, progress=False)
    assert again['miou'] == winner['miou']  # a complete, restorable copy


def test_eval_writes_per_class_iou_and_confusion_heatmap_to_tensorboard(evaluated):
    cfg, first, second = evaluated
    eval_dir = os.path.join(cfg.train.run_dir, 'eval')
    for results in (first, second):
        step = results['global_step']
        assert dict(scalar_series(eval_dir, 'eval/fwiou'))[step] == pytest.approx(results['fwiou'])
        for name in CLASS_NAMES:
            written = dict(scalar_series(eval_dir, 'eval_class_iou/%s' % name))
            assert written[step] == pytest.approx(results['per_class_iou'][name]), name
    images = _image_summaries(eval_dir, eval_lib.CONFUSION_TAG)
    assert sorted(images) == [1, 2]
    expected = visualize.confusion_image(second['confusion_matrix'], CLASS_NAMES)
    np.testing.assert_array_equal(images[2], expected)


def _image_summaries(log_dir, tag):
    images = {}
    for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    png = np.frombuffer(value.image.encoded_image_string, np.uint8)
                    images[event.step] = cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1]
    return images


# --- loop mode ------------------------------------------------------------------------------

def test_loop_stops_at_max_evals_and_keeps_the_best(random_run, tmp_path):
    cfg = _fresh_run(random_run, tmp_path)  # train.steps 1000: without max_evals it would wait forever
    assert eval_lib.evaluate_loop(cfg, progress=False, max_evals=1) == 1
    best = Run(cfg.train.run_dir).read_best()
    with open(os.path.join(cfg.train.run_dir, 'eval', 'latest.json')) as f:
        assert (best['global_step'], best['miou']) == (1, json.load(f)['miou'])


def test_loop_stops_after_timeout_without_new_checkpoints(random_run, tmp_path):
    cfg = _fresh_run(random_run, tmp_path, 'eval.timeout_secs=1')
    assert eval_lib.evaluate_loop(cfg, progress=False) == 1


def test_eval_script_flags_override_the_loop_limits(monkeypatch):
    calls = []
    monkeypatch.setattr(eval_lib, 'evaluate_loop', lambda cfg, **kwargs: calls.append(kwargs))
    monkeypatch.setattr('sys.argv', ['eval.py', '--config', 'configs/demo.yaml', '--max_evals', '3',
                                     '--timeout_secs', '7.5'])
    runpy.run_path(os.path.join(REPO_ROOT, 'eval.py'), run_name='__main__')
    assert calls == [{'max_evals': 3, 'timeout_secs': 7.5}]
