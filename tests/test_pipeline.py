"""End to end on small synthetic records: provider -> train -> eval -> export -> predict."""
import json
import os
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets_fixtures import read_examples
from fcn import eval_lib, train_lib
from fcn.compat import tf, tf1
from fcn.data import info as dataset_info
from fcn.input import provider
from fcn.export import export_source
from fcn.export import frozen
from fcn.export.frozen import FrozenModel
from pipeline_fixtures import REPO_ROOT, build_synthetic, run_script, scalar_series, tiny_config, tiny_overrides

pytestmark = pytest.mark.tf_subset  # the pipeline subset .ci/run also runs on TensorFlow 2.12 and 2.15


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo')


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp('run') / 'demo')
    cfg = tiny_config(data_dir, run_dir, steps=40)
    train_lib.train(cfg, log=lambda *_: None)
    return cfg


def test_provider_returns_the_records_pixels(data_dir):
    cfg = tiny_config(data_dir, '/unused')
    expected = {ex['filename']: ex for ex in read_examples(data_dir, 'val')}
    with tf.Graph().as_default():
        dataset = provider.get_dataset(cfg.data.dir, 'val', dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes))
        example = provider.eval_example(dataset)
        with tf1.Session() as sess:
            coord = tf1.train.Coordinator()
            threads = tf1.train.start_queue_runners(sess, coord=coord)
            seen = []
            for _ in range(dataset.num_samples):
                image, label, name = sess.run([example['images'], example['labels'], example['filename']])
                ex = expected[name.decode()]
                np.testing.assert_array_equal(image[0].astype(np.uint8), ex['image'])
                np.testing.assert_array_equal(label[0], ex['label'])
                seen.append(name.decode())
            coord.request_stop()
            coord.join(threads)
    assert sorted(seen) == sorted(expected)  # each example exactly once per pass, in order


def test_labels_match_the_source_palette_pngs(data_dir):
    source = os.path.join(data_dir, 'source', 'SegmentationClass')
    for ex in read_examples(data_dir, 'train')[:4]:
        palette_indices = np.array(Image.open(os.path.join(source, ex['filename'] + '.png')))
        np.testing.assert_array_equal(ex['label'], palette_indices)


def test_training_lowers_the_loss_and_writes_run_dir(trained):
    run_dir = trained.train.run_dir
    losses = [value for _, value in scalar_series(run_dir, 'loss/segmentation')]
    assert len(losses) >= 6
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses
    assert tf1.train.latest_checkpoint(run_dir).endswith('model.ckpt-40')
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        assert 'steps: 40' in f.read()


# The tags of docs/training.md's TensorBoard section, exactly (the input queues' fill levels aside).
TRAIN_TAGS = {'loss/total', 'loss/segmentation', 'loss/cross_entropy', 'learning_rate', 'image', 'ground_truth', 'prediction'}
QUEUE_TAG = re.compile(r'^(parallel_read(/filenames)?|batch|prefetch_queue)/fraction_of_\d+_full$')
EVAL_SCALARS = {'eval/miou', 'eval/fwiou', 'eval/pixel_accuracy', 'eval/mean_class_accuracy', 'eval/confusion_matrix',
                'eval/mdice', 'eval/mprecision', 'eval/mrecall', 'eval/mfscore'}
EVAL_CLASS_PREFIXES = ('eval_class_iou', 'eval_class_dice', 'eval_class_precision', 'eval_class_recall',
                       'eval_class_fscore')
EVAL_TAGS = EVAL_SCALARS | {prefix + '/' + name for prefix in EVAL_CLASS_PREFIXES
                            for name in ('background', 'disc', 'square', 'triangle', 'cross')}


def test_tensorboard_tags_are_the_documented_ones(trained):
    values = _summary_values(trained.train.run_dir)
    tags = set(values)
    assert {t for t in tags if not QUEUE_TAG.match(t)} == TRAIN_TAGS, sorted(tags)
    with open(os.path.join(REPO_ROOT, 'docs', 'training.md')) as f:
        readme = f.read()
    for tag in TRAIN_TAGS | EVAL_SCALARS | {prefix + '/NAME' for prefix in EVAL_CLASS_PREFIXES}:
        assert '`%s`' % tag in readme, tag
    for tag in ('image', 'ground_truth', 'prediction'):  # one tag holding 3 PNGs of the batch of 4
        value = values[tag]
        assert value.metadata.plugin_data.plugin_name == 'images'
        width, height = (int(v) for v in value.tensor.string_val[:2])
        pngs = value.tensor.string_val[2:]
        assert (width, height, len(pngs)) == (64, 64, 3)
        assert cv2.imdecode(np.frombuffer(pngs[0], np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)


def _summary_values(run_dir):
    """{tag: the first Summary.Value of that tag} over the event files directly in run_dir."""
    import glob
    values = {}
    for path in sorted(glob.glob(os.path.join(run_dir, 'events.out.tfevents.*'))):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, value)
    return values


def _numpy_miou(pairs, num_classes, ignore_label=255):
    """Independent reference: per-class intersection / union with boolean masks."""
    ious = []
    for c in range(num_classes):
        inter = union = 0
        for label, pred in pairs:
            valid = label != ignore_label
            inter += np.sum((label == c) & (pred == c) & valid)
            union += np.sum(((label == c) | (pred == c)) & valid)
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def test_eval_miou_equals_numpy_and_export_matches_eval(trained, data_dir, tmp_path):
    checkpoint = eval_lib.resolve_checkpoint(trained)
    results = eval_lib.evaluate_once(trained, progress=False)
    eval_predictions = {name: pred for name, _, pred in eval_lib.predictions_for_split(trained, checkpoint)}

    model_path = str(tmp_path / 'model.pb')
    frozen.export(export_source(trained, checkpoint), model_path)
    model = FrozenModel(model_path)
    pairs = []
    for ex in read_examples(data_dir, 'val'):
        frozen_prediction = model.predict(ex['image'])
        assert frozen_prediction.shape == ex['label'].shape
        np.testing.assert_array_equal(frozen_prediction, eval_predictions[ex['filename']])
        pairs.append((ex['label'], frozen_prediction))
    model.close()

    assert results['miou'] == pytest.approx(_numpy_miou(pairs, 5), abs=1e-9)
    latest = os.path.join(trained.train.run_dir, 'eval', 'latest.json')
    with open(latest) as f:
        written = json.load(f)
    assert written['miou'] == results['miou']
    assert set(written['per_class_iou']) == {'background', 'disc', 'square', 'triangle', 'cross'}
    eval_tags = set(_summary_values(os.path.join(trained.train.run_dir, 'eval')))
    assert EVAL_SCALARS <= eval_tags <= EVAL_TAGS, eval_tags  # no IoU for a class absent from both


def test_export_accepts_any_size_and_predict_writes_outputs(trained, tmp_path):
    model_path = str(tmp_path / 'm.pb')
    run = run_script('export.py', '--config', 'configs/demo.yaml', '--out', model_path,
                     *sum([['--set', o] for o in tiny_overrides(trained.data.dir, trained.train.run_dir)], []))
    assert run.returncode == 0, run.stderr
    model = FrozenModel(model_path)
    assert model.predict(np.zeros((37, 53, 3), np.uint8)).shape == (37, 53)
    model.close()
    image_path = os.path.join(trained.data.dir, 'source', 'JPEGImages', '000000.jpg')
    other_path = os.path.join(trained.data.dir, 'source', 'JPEGImages', '000001.jpg')
    run = run_script('predict.py', '--model', model_path, '--out', str(tmp_path / 'out'), image_path, other_path,
                     merge_stderr=True)
    assert run.returncode == 0, run.stdout
    # with the progress bar of 2 images: each path written on a line of its own, as a terminal shows it
    shown = [line.rsplit('\r', 1)[-1] for line in run.stdout.split('\n')]
    for name in ('000000.png', '000000_overlay.png', '000001.png', '000001_overlay.png'):
        assert str(tmp_path / 'out' / name) in shown, run.stdout
    label = Image.open(str(tmp_path / 'out' / '000000.png'))
    assert label.mode == 'P' and label.size == (64, 64)
    overlay = Image.open(str(tmp_path / 'out' / '000000_overlay.png'))
    assert overlay.size[0] > 64  # image + legend panel


def test_resume_continues_from_the_run_dir(trained, tmp_path):
    cfg = tiny_config(trained.data.dir, trained.train.run_dir, steps=45)
    messages = []
    train_lib.train(cfg, log=messages.append)
    assert any('resuming from' in m and 'model.ckpt-40' in m for m in messages)
    assert tf1.train.latest_checkpoint(trained.train.run_dir).endswith('model.ckpt-45')
