"""loss.terms: Dice, focal and Lovasz-softmax against NumPy references written from their papers'
formulas (ignore-label pixels included), their weighted sum, the config errors, a short training run with each."""
import glob
import math
import os

import numpy as np
import pytest

from fcn import losses, options, train_lib
from fcn.compat import tf, tf1
from fcn.config import ConfigError, load_config
from pipeline_fixtures import REPO_ROOT, build_synthetic, run_script, scalar_series, tiny_config

NUM_CLASSES = 3
IGNORE = 255
DEMO = os.path.join(REPO_ROOT, 'configs', 'demo.yaml')

# Hand-made: 2 images of 2 x 4 pixels; class 2 only in the second image, 3 ignored pixels whose
# logits are extreme (they must not count).
HAND_LABELS = np.array([[[0, 0, 1, IGNORE], [0, 1, 1, 1]],
                        [[2, 2, IGNORE, 0], [1, 2, IGNORE, 0]]])
HAND_LOGITS = np.array([[[[2.0, 0.1, -1.0], [0.5, 0.4, 0.3], [-0.3, 1.2, 0.0], [-30.0, 40.0, 9.0]],
                         [[1.0, 1.0, 1.0], [0.2, -0.4, 0.9], [0.0, 3.0, -2.0], [1.5, 1.4, -0.5]]],
                        [[[0.1, 0.2, 2.5], [-1.0, 0.0, 0.5], [50.0, -50.0, 0.0], [0.7, -0.2, 0.1]],
                         [[0.3, 0.9, -0.1], [2.0, -1.0, 1.0], [-20.0, 0.0, 25.0], [0.0, 0.0, -3.0]]]],
                       np.float32)


def _random_batch(seed, shape=(2, 6, 7), ignore_fraction=0.25, num_classes=NUM_CLASSES):
    rng = np.random.RandomState(seed)
    logits = (rng.randn(*shape, num_classes) * 2.0).astype(np.float32)
    labels = rng.randint(0, num_classes, size=shape)
    labels[rng.rand(*shape) < ignore_fraction] = IGNORE
    return logits, labels


# --- NumPy references, from the papers' formulas ---------------------------------------------------

def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _valid(logits, labels):
    valid = labels != IGNORE
    return _softmax(logits.astype(np.float64))[valid], labels[valid]


def dice_reference(logits, labels, num_classes=NUM_CLASSES):
    """1 - mean over classes c present in the truth of 2 |P_c . Y_c| / (|P_c| + |Y_c|)."""
    probs, truth = _valid(logits, labels)
    scores = []
    for c in range(num_classes):
        y = (truth == c).astype(np.float64)
        if y.sum() > 0:
            scores.append(2.0 * np.sum(probs[:, c] * y) / (np.sum(probs[:, c]) + np.sum(y)))
    return 1.0 - np.mean(scores) if scores else 0.0


def focal_reference(logits, labels, gamma):
    """Lin et al. eq. 4: FL(p_t) = -(1 - p_t)^gamma log(p_t), averaged over the valid pixels."""
    probs, truth = _valid(logits, labels)
    if truth.size == 0:
        return 0.0
    p_t = probs[np.arange(truth.size), truth]
    return float(np.mean(-(1.0 - p_t) ** gamma * np.log(p_t)))


def lovasz_reference(logits, labels, num_classes=NUM_CLASSES):
    """Berman et al. 2018: for each class present, the Lovasz extension (eq. 8-9) of the Jaccard
    loss Delta_J(M) = |M| / |{y = c} u M| (eq. 3) at the errors m_i = |y_i - p_i| (eq. 10),
    evaluated from its definition over the sets of the m-sorted pixels; then the mean."""
    probs, truth = _valid(logits, labels)
    per_class = []
    for c in range(num_classes):
        foreground = set(np.flatnonzero(truth == c))
        if not foreground:
            continue
        errors = np.abs((truth == c).astype(np.float64) - probs[:, c])
        chosen, previous, value = set(), 0.0, 0.0
        for pixel in np.argsort(-errors, kind='stable'):
            chosen.add(pixel)
            jaccard_loss = len(chosen) / len(foreground | chosen)
            value += errors[pixel] * (jaccard_loss - previous)
            previous = jaccard_loss
        per_class.append(value)
    return float(np.mean(per_class)) if per_class else 0.0


def _confusion(predictions, labels):
    valid = labels != IGNORE
    return np.bincount(labels[valid] * NUM_CLASSES + predictions[valid],
                       minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


# --- the TensorFlow losses ------------------------------------------------------------------------

def _run(loss_fn, logits, labels, **kwargs):
    """The loss's value; its gradient must be finite. Fed, not constant: shapes are dynamic, as in training."""
    with tf.Graph().as_default():
        logits_t = tf1.placeholder(tf.float32, [None, None, None, NUM_CLASSES])
        labels_t = tf1.placeholder(tf.int32, [None, None, None])
        loss = loss_fn(logits_t, labels_t, NUM_CLASSES, IGNORE, **kwargs)
        gradient = tf.gradients(loss, logits_t)[0]
        with tf1.Session() as sess:
            value, grad = sess.run([loss, gradient], {logits_t: logits, labels_t: labels})
    assert np.all(np.isfinite(grad)), grad
    return float(value)


CASES = {
    'dice': (losses.dice_loss, {}, lambda logits, labels: dice_reference(logits, labels)),
    'focal': (losses.focal_loss, {}, lambda logits, labels: focal_reference(logits, labels, 2.0)),
    'focal_gamma_0.5': (losses.focal_loss, {'gamma': 0.5}, lambda logits, labels: focal_reference(logits, labels, 0.5)),
    'lovasz': (losses.lovasz_softmax_loss, {}, lambda logits, labels: lovasz_reference(logits, labels)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_loss_matches_its_reference_on_hand_made_and_random_batches(case):
    loss_fn, kwargs, reference = CASES[case]
    batches = [(HAND_LOGITS, HAND_LABELS)] + [_random_batch(seed) for seed in range(3)]
    for logits, labels in batches:
        assert _run(loss_fn, logits, labels, **kwargs) == pytest.approx(reference(logits, labels), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize('case', sorted(CASES))
def test_ignored_pixels_take_no_part_and_an_all_ignored_batch_gives_zero(case):
    loss_fn, kwargs, _ = CASES[case]
    logits, labels = HAND_LOGITS.copy(), HAND_LABELS
    before = _run(loss_fn, logits, labels, **kwargs)
    logits[labels == IGNORE] = np.random.RandomState(0).randn(int((labels == IGNORE).sum()), NUM_CLASSES) * 100
    assert _run(loss_fn, logits, labels, **kwargs) == pytest.approx(before, rel=1e-6)
    assert _run(loss_fn, logits, np.full_like(labels, IGNORE), **kwargs) == 0.0


def test_confident_predictions_give_one_minus_dice_and_one_minus_iou():
    """With (numerically) one-hot softmax outputs the surrogates reach their set functions:
    Dice loss = 1 - mean Dice and Lovasz = 1 - mean IoU over the classes present, from a confusion matrix."""
    _, labels = _random_batch(7, shape=(2, 8, 8))
    predictions = np.random.RandomState(8).randint(0, NUM_CLASSES, labels.shape)
    logits = (np.eye(NUM_CLASSES)[predictions] * 60.0).astype(np.float32)
    confusion = _confusion(predictions, labels)
    tp, truth, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    present = truth > 0
    dice = 2 * tp[present] / (truth[present] + predicted[present])
    iou = tp[present] / (truth[present] + predicted[present] - tp[present])
    assert _run(losses.dice_loss, logits, labels) == pytest.approx(1 - dice.mean(), abs=1e-5)
    assert _run(losses.lovasz_softmax_loss, logits, labels) == pytest.approx(1 - iou.mean(), abs=1e-5)


def test_focal_with_gamma_0_is_the_cross_entropy_and_confident_pixels_keep_finite_gradients():
    logits, labels = _random_batch(3)
    assert _run(losses.focal_loss, logits, labels, gamma=0.0) == pytest.approx(
        _run(losses.segmentation_loss, logits, labels), rel=1e-5)
    confident = (np.eye(NUM_CLASSES)[np.where(labels == IGNORE, 0, labels)] * 200.0).astype(np.float32)
    assert _run(losses.focal_loss, confident, labels) == pytest.approx(0.0, abs=1e-12)  # gradients checked in _run


def test_weighted_loss_sums_the_terms_and_defaults_to_cross_entropy():
    logits, labels = _random_batch(5)
    terms = (losses.LossTerm('cross_entropy', 1.0), losses.LossTerm('dice', 0.5),
             losses.LossTerm('focal', 2.0, gamma=1.0), losses.LossTerm('lovasz', 0.25))
    with tf.Graph().as_default():
        args = (tf.constant(logits), tf.constant(labels), NUM_CLASSES, IGNORE)
        total, values = losses.weighted_loss(*args, losses.LossOptions(terms=terms))
        default_total, default_values = losses.weighted_loss(*args, losses.LossOptions())
        with tf1.Session() as sess:
            total, values, default_total, default_values = sess.run([total, values, default_total, default_values])
    assert sorted(values) == ['cross_entropy', 'dice', 'focal', 'lovasz']
    assert values['dice'] == pytest.approx(dice_reference(logits, labels), rel=1e-5)
    assert values['focal'] == pytest.approx(focal_reference(logits, labels, 1.0), rel=1e-5)
    assert values['lovasz'] == pytest.approx(lovasz_reference(logits, labels), rel=1e-5)
    assert total == pytest.approx(values['cross_entropy'] + 0.5 * values['dice'] + 2.0 * values['focal']
                                  + 0.25 * values['lovasz'], rel=1e-6)
    assert list(default_values) == ['cross_entropy']
    assert default_total == pytest.approx(_run(losses.segmentation_loss, logits, labels), rel=1e-6)


# --- the config -----------------------------------------------------------------------------------

def test_terms_from_the_command_line_in_yaml_flow_syntax():
    cfg = load_config(DEMO, ['loss.terms=[{name: cross_entropy, weight: 1}, {name: focal, weight: 0.5, gamma: 3}]'])
    assert [options.loss_term(t) for t in cfg.loss.terms] == [
        losses.LossTerm('cross_entropy', 1.0), losses.LossTerm('focal', 0.5, gamma=3.0)]
    assert options.loss_term(load_config(DEMO, ['loss.terms=[{name: focal}]']).loss.terms[0]) == \
        losses.LossTerm('focal', 1.0, gamma=2.0)
    # YAML 1.1 reads 1e-2 as a string; it is the number it says, as for every other number key
    assert options.loss_term(load_config(DEMO, ['loss.terms=[{name: dice, weight: 1e-2}]']).loss.terms[0]) == \
        losses.LossTerm('dice', 0.01)
    assert load_config(DEMO).loss.terms == [{'name': 'cross_entropy', 'weight': 1.0}]


@pytest.mark.parametrize('value, message', [
    ('[{name: dise, weight: 1.0}]', "--set: loss.terms[0].name must be one of cross_entropy, dice, focal, lovasz, "
                                    "got 'dise' (did you mean 'dice'?)"),
    ('[{name: dice, weight: 1.0}, {name: lovasz, weight: heavy}]',
     "--set: loss.terms[1].weight (lovasz) must be a number >= 0, got 'heavy'"),
    ('[{name: dice, weight: -1}]', '--set: loss.terms[0].weight (dice) must be a number >= 0, got -1'),
    ('[{name: dice, weight: 1.0, gamma: 2}]', '--set: loss.terms[0] (dice): unknown option gamma: 2 (valid: name, weight)'),
    ('[{name: focal, gama: 2}]', '--set: loss.terms[0] (focal): unknown option gama: 2 (valid: name, weight, gamma)'),
    ('[{name: focal, gamma: -2}]', '--set: loss.terms[0].gamma (focal) must be a number >= 0, got -2'),
    ('[{name: dice}, {name: dice, weight: 2}]', '--set: loss.terms[1]: dice is listed twice'),
    ('[dice]', "--set: loss.terms[0] must be a mapping with a name"),
    ('[]', '--set: loss.terms must be a non-empty list of {name: ..., weight: ...}'),
    ('dice', "--set: loss.terms must be a non-empty list of {name: ..., weight: ...}, e.g. "),
    ('[{name: dice, weight: 0}]', '--set: loss.terms: every weight is 0'),
])
def test_bad_terms_name_the_key_and_the_value(value, message):
    with pytest.raises(ConfigError) as error:
        load_config(DEMO, ['loss.terms=' + value])
    assert message in str(error.value)


def test_a_bad_term_on_the_command_line_is_one_error_line():
    run = run_script('train.py', '--config', 'configs/demo.yaml', '--set', 'loss.terms=[{name: lovaz, weight: 1}]')
    assert run.returncode == 2 and 'Traceback' not in run.stderr
    assert run.stderr.strip() == ("error: --set: loss.terms[0].name must be one of cross_entropy, dice, focal, "
                                  "lovasz, got 'lovaz' (did you mean 'lovasz'?)")


# --- a short training run with each ----------------------------------------------------------------

@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=64)


TRAINING_RUNS = {
    'dice': ('[{name: dice, weight: 1.0}]', []),
    'focal': ('[{name: focal, weight: 1.0, gamma: 2.0}]', []),
    'lovasz': ('[{name: lovasz, weight: 1.0}]', []),
    # all four at once, over 2 clones, accumulating 2 batches an update, with the mixed-precision wrapper
    'all_clones_accumulate_mixed': ('[{name: cross_entropy, weight: 1.0}, {name: dice, weight: 0.5}, '
                                    '{name: focal, weight: 0.5}, {name: lovasz, weight: 0.5}]',
                                    ['deploy.num_clones=2', 'deploy.clone_on_cpu=true', 'train.accumulate_steps=2',
                                     'train.mixed_precision=true']),
}


@pytest.mark.parametrize('run', sorted(TRAINING_RUNS))
def test_training_with_each_loss_is_finite_logs_each_term_and_writes_its_checkpoint(records, tmp_path, run):
    terms, extra = TRAINING_RUNS[run]
    run_dir = str(tmp_path / 'run')
    cfg = tiny_config(records, run_dir, steps=6, extra=['loss.terms=' + terms, 'train.summary_every_steps=2',
                                                        'train.save_every_steps=100'] + extra)
    train_lib.train(cfg, log=lambda *_: None)
    assert tf1.train.latest_checkpoint(run_dir).endswith('model.ckpt-6')
    assert glob.glob(os.path.join(run_dir, 'model.ckpt-6.index'))
    fc8 = tf.train.load_checkpoint(os.path.join(run_dir, 'model.ckpt-6')).get_tensor('vgg_16/fc8/weights')
    assert np.all(np.isfinite(fc8)) and np.abs(fc8).max() > 0  # zero-initialised: the loss's gradient reached it
    total = [value for _, value in scalar_series(run_dir, 'loss/total')]
    data_loss = [value for _, value in scalar_series(run_dir, 'loss/segmentation')]
    assert len(total) >= 2 and all(math.isfinite(v) for v in total + data_loss), (total, data_loss)
    for term in cfg.loss.terms:
        series = [value for _, value in scalar_series(run_dir, 'loss/' + term.name)]
        assert len(series) == len(data_loss) and all(math.isfinite(v) and v >= 0 for v in series), (term, series)
    weighted = sum(term.weight * scalar_series(run_dir, 'loss/' + term.name)[0][1] for term in cfg.loss.terms)
    assert weighted == pytest.approx(data_loss[0], rel=1e-4)
    other_terms = {'cross_entropy', 'dice', 'focal', 'lovasz'} - {term.name for term in cfg.loss.terms}
    assert not any(scalar_series(run_dir, 'loss/' + name) for name in other_terms)
