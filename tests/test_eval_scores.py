"""Eval scores beyond IoU: per-class Dice, precision, recall, F-beta from the confusion matrix
(against a hand computation), in metrics-STEP.json, latest.json, the table and TensorBoard; and
eval.py --once --per_image's CSV against per-image confusion matrices computed in NumPy from the
records' labels and the predictions eval saved (multi-scale, flip and tiling on)."""
import csv
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from datasets_fixtures import read_examples
from fcn import metrics
from inference_fixtures import random_checkpoint
from pipeline_fixtures import build_synthetic, run_script, scalar_series, tiny_config, tiny_overrides

NUM_CLASSES = 5
CLASS_NAMES = ['background', 'disc', 'square', 'triangle', 'cross']

# rows: truth, columns: prediction. class 2 is predicted but not in the truth, class 3 in the
# truth but never predicted, class 4 in neither.
CONFUSION = [[6, 2, 2, 0, 0],
             [1, 3, 0, 0, 0],
             [0, 0, 0, 0, 0],
             [1, 0, 0, 0, 0],
             [0, 0, 0, 0, 0]]


def test_dice_precision_recall_fscore_match_a_hand_computation():
    # truth pixels 10, 4, 0, 1, 0; predicted 8, 5, 2, 0, 0; true positives 6, 3, 0, 0, 0
    names = ['a', 'b', 'c', 'd', 'e']
    results = metrics.scores(CONFUSION, names)
    expected = {
        'per_class_precision': [6 / 8, 3 / 5, 0.0, 0.0, None],
        'per_class_recall': [6 / 10, 3 / 4, 0.0, 0.0, None],
        'per_class_dice': [12 / 18, 6 / 9, 0.0, 0.0, None],
        'per_class_fscore': [2 / 3, 2 / 3, 0.0, 0.0, None],  # 2PR/(P+R) = Dice for beta 1
        'per_class_iou': [6 / 12, 3 / 6, 0.0, 0.0, None],
    }
    for key, values in expected.items():
        assert list(results[key]) == names
        for name, value in zip(names, values):
            assert results[key][name] == (None if value is None else pytest.approx(value)), (key, name)
    # means over the four classes in the truth or the prediction (class e left out)
    assert results['mprecision'] == pytest.approx((0.75 + 0.6) / 4)
    assert results['mrecall'] == pytest.approx((0.6 + 0.75) / 4)
    assert results['mdice'] == pytest.approx((2 / 3 + 2 / 3) / 4)
    assert results['mfscore'] == pytest.approx(results['mdice'])
    assert results['miou'] == pytest.approx(0.25)
    # F2 = 5PR / (4P + R): a: 5*0.45/3.6 = 0.625, b: 5*0.45/3.15 = 5/7
    f2 = metrics.scores(CONFUSION, names, fscore_beta=2.0)
    assert f2['per_class_fscore']['a'] == pytest.approx(0.625)
    assert f2['per_class_fscore']['b'] == pytest.approx(5 / 7)
    assert f2['mfscore'] == pytest.approx((0.625 + 5 / 7) / 4)
    assert f2['mdice'] == pytest.approx(results['mdice'])  # Dice does not depend on beta


def test_table_shows_every_score_column_and_the_means():
    table = metrics.format_table(metrics.scores(CONFUSION, ['a', 'b', 'c', 'd', 'e']))
    lines = table.splitlines()
    assert lines[0].split() == ['class', 'IoU', 'Dice', 'Precision', 'Recall', 'F-score']
    assert lines[1].split() == ['a', '50.00%', '66.67%', '75.00%', '60.00%', '66.67%']
    assert lines[5].split() == ['e', '-', '-', '-', '-', '-']
    mean = next(line for line in lines if line.startswith('mean'))
    assert mean.split() == ['mean', '25.00%', '33.33%', '33.75%', '33.75%', '33.33%']


def test_image_scores_leave_absent_classes_empty():
    row = metrics.image_scores([[3, 1, 0], [0, 0, 0], [0, 0, 0]], ['a', 'b', 'c'])
    assert row['pixel_accuracy'] == pytest.approx(0.75)
    assert row['per_class_iou'] == {'a': pytest.approx(0.75), 'b': 0.0, 'c': None}
    assert row['miou'] == pytest.approx(0.375)
    empty = metrics.image_scores(np.zeros((3, 3)), ['a', 'b', 'c'])
    assert empty['miou'] is None and empty['pixel_accuracy'] is None


# --- eval.py on records ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """eval.py --once --per_image --save_predictions on a random model with two scales, flip and
    48-pixel tiles over 64-pixel images, F2 scores: (config, results JSON, run dir)."""
    data_dir = build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=2, num_val=4, size=64)
    run_dir = str(tmp_path_factory.mktemp('scores') / 'run')
    extra = ['eval.scales=[0.75, 1.0]', 'eval.flip=true', 'eval.tile_size=[48, 48]', 'eval.fscore_beta=2']
    cfg = tiny_config(data_dir, run_dir, extra=extra)
    random_checkpoint(cfg, NUM_CLASSES, step=7, seed=3)
    sets = [arg for item in tiny_overrides(data_dir, run_dir) + extra for arg in ('--set', item)]
    result = run_script('eval.py', '--config', 'configs/demo.yaml', *sets, '--once', '--per_image',
                        '--save_predictions')
    assert result.returncode == 0, result.stderr
    with open(os.path.join(run_dir, 'eval', 'metrics-00000007.json')) as f:
        results = json.load(f)
    return cfg, results, result.stdout


def test_eval_writes_the_scores_of_its_confusion_matrix(evaluated):
    cfg, results, stdout = evaluated
    with open(os.path.join(cfg.train.run_dir, 'eval', 'latest.json')) as f:
        assert json.load(f) == results
    expected = metrics.scores(results['confusion_matrix'], CLASS_NAMES, fscore_beta=2.0)
    for key in ('mdice', 'mprecision', 'mrecall', 'mfscore'):
        assert results[key] == pytest.approx(expected[key])
    for key in ('per_class_dice', 'per_class_precision', 'per_class_recall', 'per_class_fscore'):
        assert list(results[key]) == CLASS_NAMES
        assert results[key] == pytest.approx(expected[key])
    assert results['mfscore'] != pytest.approx(results['mdice'])  # beta 2 reached the scores
    assert 'Precision' in stdout and 'F-score' in stdout
    eval_dir = os.path.join(cfg.train.run_dir, 'eval')
    for key in ('mdice', 'mprecision', 'mrecall', 'mfscore'):
        assert dict(scalar_series(eval_dir, 'eval/' + key))[7] == pytest.approx(results[key])
    for key, prefix in (('per_class_dice', 'eval_class_dice'), ('per_class_fscore', 'eval_class_fscore'),
                        ('per_class_precision', 'eval_class_precision'), ('per_class_recall', 'eval_class_recall')):
        for name, value in results[key].items():
            series = dict(scalar_series(eval_dir, '%s/%s' % (prefix, name)))
            assert series.get(7) == (None if value is None else pytest.approx(value)), (key, name)


def _numpy_confusions(cfg):
    """{filename: confusion matrix} of each val record, from its label (decoded here) and the
    class-id PNG eval saved for it."""
    confusions = {}
    for example in read_examples(cfg.data.dir, 'val'):
        label = np.asarray(Image.open(io.BytesIO(example['label_bytes'])))  # the record's PNG, by Pillow
        assert label.ndim == 2 and {0, 255} < set(np.unique(label))
        stem = os.path.splitext(example['filename'])[0].replace('/', '_')
        path = os.path.join(cfg.train.run_dir, 'eval', 'predictions-00000007', stem + '.png')
        prediction = np.asarray(Image.open(path))  # a palette PNG: Pillow gives the indices
        assert prediction.shape == label.shape
        confusions[example['filename']] = metrics.confusion_matrix(label, prediction, NUM_CLASSES)
    return confusions


def test_per_image_csv_matches_numpy_confusions_of_the_records(evaluated):
    cfg, results, stdout = evaluated
    path = os.path.join(cfg.train.run_dir, 'eval', 'per_image-00000007.csv')
    assert 'per-image scores written to %s' % path in stdout
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ['filename', 'pixel_accuracy', 'miou'] + ['iou_' + n for n in CLASS_NAMES]
    confusions = _numpy_confusions(cfg)
    assert sorted(row['filename'] for row in rows) == sorted(confusions)
    assert len(rows) == results['num_images'] == 4
    np.testing.assert_array_equal(sum(confusions.values()), results['confusion_matrix'])
    for row in rows:
        confusion = confusions[row['filename']]
        tp, truth, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
        present = (truth + predicted) > 0
        iou = tp[present] / (truth + predicted - tp)[present]
        assert float(row['pixel_accuracy']) == pytest.approx(tp.sum() / confusion.sum(), abs=1e-6)
        assert float(row['miou']) == pytest.approx(iou.mean(), abs=1e-6)
        for c, name in enumerate(CLASS_NAMES):
            cell = row['iou_' + name]
            if present[c]:
                assert float(cell) == pytest.approx(tp[c] / (truth[c] + predicted[c] - tp[c]), abs=1e-6)
            else:
                assert cell == ''
    mious = [float(row['miou']) for row in rows]
    assert mious == sorted(mious)  # worst first
    assert len(set(mious)) > 1  # else the order says nothing
