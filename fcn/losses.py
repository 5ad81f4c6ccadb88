"""The segmentation losses: the weighted sum of `loss.terms` (`weighted_loss`) of

- cross_entropy: masked per-pixel softmax cross-entropy, with class weights and hard-pixel
  mining (`segmentation_loss`);
- dice: soft Dice, 1 - mean over the classes present in the batch (`dice_loss`);
- focal: -(1 - p_t)^gamma log p_t, Lin et al. 2017 (`focal_loss`);
- lovasz: the Lovasz-softmax surrogate of the Jaccard loss, Berman et al. 2018 (`lovasz_softmax_loss`).

Conventions (the trainer in fcn/train_lib.py relies on them):

- Every loss *returns* its scalar and does not add it to the `tf.compat.v1.losses`
  collection: the caller decides (each clone adds its own loss with
  `tf.compat.v1.losses.add_loss`, scaled by 1/num_clones).
- Pixels labelled `ignore_label` take no part in any loss; a batch without a valid pixel
  gives 0, not NaN. Logits are cast to float32 first (mixed precision).
- `normalization` (loss.normalization) says what the per-pixel losses of cross_entropy and
  focal are divided by:
  - valid_pixels (default): the number of *valid* pixels (label != ignore_label) in the
    batch, a per-pixel mean. With class weights the loss is sum(w[label] * ce) / number of
    valid pixels, not / sum(w[label]): a class weight of 2 then really doubles that class's
    share of the gradient, and an image made only of one class is not renormalised back to
    weight 1.
  - sum: the number of images in the batch: the loss summed over each image's pixels and
    averaged over the batch, Caffe's SoftmaxWithLoss with `normalize: false` (normalization
    mode BATCH_SIZE), the loss the FCN solvers' lr 1e-10 was set for. Its gradient is about
    the valid pixel count of an image times the mean's (187,500 for a 500x375 VOC image), so
    its learning rate is that much smaller. Ignored pixels add 0 to the sum.
  Only losses that are a sum over pixels can be summed: dice and lovasz are ratios over the
  whole batch (no per-pixel sum exists), and hard-pixel mining (top_k_percent < 1) is a mean
  over the pixels it keeps; with `sum` those are errors (fcn.config checks the config too).
  Over clones (each clone's loss scaled by 1/num_clones, fcn.deploy) both give the loss of
  the whole batch: sum over all its images' pixels / batch size, or the mean of the clones'
  per-pixel means. train.accumulate_steps k averages k such losses (Caffe's iter_size).
- Weight decay is not here: slim's regulariser in the model puts it in
  `tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES`.

Class weights can be given as numbers or computed from the per-class pixel counts that
build_tfrecords.py writes to summary.json (`class_weights_from_counts`, `resolve_class_weights`,
which takes the training split's `fcn.data.info.SplitInfo`).
"""
import dataclasses
import numbers

import numpy as np

from fcn.compat import tf, tf1
from fcn.config import CLASS_WEIGHT_METHODS as WEIGHT_METHODS
from fcn.config import LOSS_NAMES  # noqa: F401 (the choices, owned by fcn.config)
from fcn.config import LOSS_NORMALIZATIONS, SUMMABLE_LOSSES


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One term of the loss: `name` (one of LOSS_NAMES), its weight in the sum and, for
    focal, the focusing parameter gamma."""
    name: str = 'cross_entropy'
    weight: float = 1.0
    gamma: float = 2.0


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """The terms summed into the data loss, and cross_entropy's options: its class weights
    (resolved, see `resolve_class_weights`) and hard-pixel mining (`annealed_top_k`)."""
    terms: tuple = (LossTerm(),)
    class_weights: tuple = None
    top_k_percent: float = 1.0
    hard_mining_anneal_steps: int = 0
    normalization: str = 'valid_pixels'  # one of LOSS_NORMALIZATIONS (loss.normalization)


def weighted_loss(logits, labels, num_classes, ignore_label, options, global_step=None):
    """The data loss of `options` (LossOptions): (sum of weight * term, {term name: term}).

    Like `segmentation_loss`, adds nothing to a collection; weight decay is not part of it.
    """
    _check_normalization(options)
    values = {}
    for term in options.terms:
        values[term.name] = _TERM_FNS[term.name](logits, labels, num_classes, ignore_label, term, options,
                                                 global_step)
    total = tf.add_n([term.weight * values[term.name] for term in options.terms])
    return total, values


def _cross_entropy(logits, labels, num_classes, ignore_label, term, options, global_step):
    top_k = options.top_k_percent
    if options.hard_mining_anneal_steps and top_k < 1.0:
        top_k = annealed_top_k(global_step, top_k, options.hard_mining_anneal_steps)
    weights = None if options.class_weights is None else list(options.class_weights)
    return segmentation_loss(logits, labels, num_classes, ignore_label, class_weights=weights,
                             top_k_percent=top_k, normalization=options.normalization, scope='cross_entropy')


def _check_normalization(options):
    """ValueError naming the keys when `options.normalization` cannot apply to its terms."""
    if options.normalization not in LOSS_NORMALIZATIONS:
        raise ValueError('loss.normalization must be one of %s, got %r'
                         % (', '.join(LOSS_NORMALIZATIONS), options.normalization))
    if options.normalization != 'sum':
        return
    ratios = [term.name for term in options.terms if term.name not in SUMMABLE_LOSSES]
    if ratios:
        raise ValueError('loss.normalization sum needs losses that are sums over pixels (%s); loss.terms has %s'
                         % (', '.join(SUMMABLE_LOSSES), ', '.join(ratios)))
    if options.top_k_percent < 1.0:
        raise ValueError('loss.normalization sum cannot be combined with loss.top_k_percent %r < 1 (hard-pixel '
                         'mining averages the pixels it keeps)' % (options.top_k_percent,))


_TERM_FNS = {
    'cross_entropy': _cross_entropy,
    'dice': lambda logits, labels, num_classes, ignore_label, *_: dice_loss(logits, labels, num_classes, ignore_label),
    'focal': lambda logits, labels, num_classes, ignore_label, term, options, *_: focal_loss(
        logits, labels, num_classes, ignore_label, gamma=term.gamma, normalization=options.normalization),
    'lovasz': lambda logits, labels, num_classes, ignore_label, *_: lovasz_softmax_loss(
        logits, labels, num_classes, ignore_label),
}


def _valid_pixels(logits, labels, num_classes, ignore_label):
    """(logits float32 [N, C], labels int32 [N]) of the N pixels whose label != ignore_label."""
    logits = tf.reshape(tf.cast(logits, tf.float32), [-1, num_classes])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    valid = tf.not_equal(labels, ignore_label)
    return tf.boolean_mask(logits, valid), tf.boolean_mask(labels, valid)


def _mean_over_present(per_class, truth):
    """Mean of per_class [C] over the classes with at least one pixel in truth [N, C] (0 if none)."""
    present = tf.cast(tf.reduce_sum(truth, axis=0) > 0, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_class * present), tf.reduce_sum(present))


def dice_loss(logits, labels, num_classes, ignore_label=255, scope=None):
    """Soft Dice loss: 1 - mean over the classes c present in `labels` of
    2 sum_i p_ic y_ic / (sum_i p_ic + sum_i y_ic), p the softmax, y the one-hot labels, i over
    the batch's valid pixels (Milletari et al. 2016, with softmax probabilities). 0 for a
    batch without a valid pixel."""
    with tf1.name_scope(scope, 'dice_loss', [logits, labels]):
        logits, labels = _valid_pixels(logits, labels, num_classes, ignore_label)
        probs = tf.nn.softmax(logits)
        truth = tf.one_hot(labels, num_classes)
        overlap = tf.reduce_sum(probs * truth, axis=0)
        total = tf.reduce_sum(probs, axis=0) + tf.reduce_sum(truth, axis=0)
        dice = tf.math.divide_no_nan(2.0 * overlap, total)
        any_valid = tf.cast(tf.size(labels) > 0, tf.float32)
        return any_valid * (1.0 - _mean_over_present(dice, truth))


def focal_loss(logits, labels, num_classes, ignore_label=255, gamma=2.0, normalization='valid_pixels', scope=None):
    """Focal loss (Lin et al. 2017, without the alpha balance): mean over valid pixels of
    -(1 - p_t)^gamma log p_t, p_t the softmax probability of the true class (`normalization`
    sum: summed over each image's valid pixels, averaged over the images). gamma 0 is the
    cross-entropy. 0 for a batch without a valid pixel."""
    with tf1.name_scope(scope, 'focal_loss', [logits, labels]):
        num_images = tf.shape(logits)[0]
        logits, labels = _valid_pixels(logits, labels, num_classes, ignore_label)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)  # -log p_t
        # 1 - p_t, kept off exact 0 so that (1 - p_t)^gamma has a finite gradient for any gamma >= 0
        miss = tf.maximum(-tf.math.expm1(-cross_entropy), 1e-12)
        losses = tf.pow(miss, float(gamma)) * cross_entropy
        return _normalized(losses, normalization, num_images)


def lovasz_softmax_loss(logits, labels, num_classes, ignore_label=255, scope=None):
    """Lovasz-softmax loss (Berman et al. 2018, "classes present", over the whole batch): for
    each class c present in `labels`, the errors m_i = |y_ic - p_ic| of the valid pixels sorted
    in decreasing order, dotted with the steps of the Jaccard loss along that order (the
    Lovasz extension of the class's Jaccard loss, eq. 8-9); the mean over those classes.
    0 for a batch without a valid pixel."""
    with tf1.name_scope(scope, 'lovasz_softmax_loss', [logits, labels]):
        logits, labels = _valid_pixels(logits, labels, num_classes, ignore_label)
        truth = tf.one_hot(labels, num_classes)
        errors = tf.transpose(tf.abs(truth - tf.nn.softmax(logits)))  # [C, N]
        # the order without a gradient: TopKV2's gradient fails on a batch without valid pixels (k = 0)
        _, order = tf.nn.top_k(tf.stop_gradient(errors), k=tf.shape(errors)[1])
        sorted_errors = tf.gather(errors, order, batch_dims=1)
        sorted_truth = tf.gather(tf.transpose(truth), order, batch_dims=1)
        per_class = tf.reduce_sum(sorted_errors * tf.stop_gradient(_jaccard_steps(sorted_truth)), axis=1)
        return _mean_over_present(per_class, truth)


def _jaccard_steps(sorted_truth):
    """[C, N]: how much the Jaccard loss of class c grows as pixel k of its error order joins
    the mispredicted set (Berman et al.'s lovasz_grad, one row per class)."""
    positives = tf.reduce_sum(sorted_truth, axis=1, keepdims=True)
    intersection = positives - tf.cumsum(sorted_truth, axis=1)
    union = positives + tf.cumsum(1.0 - sorted_truth, axis=1)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first pixel on
    return tf.concat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)


def segmentation_loss(logits, labels, num_classes, ignore_label=255, class_weights=None,
                      top_k_percent=1.0, normalization='valid_pixels', scope=None):
    """Mean softmax cross-entropy over the pixels whose label is not `ignore_label`
    (`normalization` sum: summed over those pixels and divided by the number of images).

    Args:
      logits: float [B, H, W, num_classes], at the resolution of `labels`.
      labels: int [B, H, W] or [B, H, W, 1].
      num_classes: number of classes C.
      ignore_label: label value that contributes neither loss nor to the pixel count.
      class_weights: None or C floats; each pixel's loss is scaled by its class's weight.
      top_k_percent: float in (0, 1] or a scalar tensor (see `annealed_top_k`): only the
        ceil(top_k_percent * valid pixels) largest (weighted) pixel losses are kept and
        averaged - online hard-pixel mining. 1.0 keeps every valid pixel.
      normalization: 'valid_pixels' (the mean over valid pixels) or 'sum' (the sum over
        them / the batch size, Caffe's SoftmaxWithLoss with normalize: false; needs
        top_k_percent 1.0).
      scope: optional name scope.

    Returns:
      A float32 scalar; 0 (not NaN) when every pixel is ignored. Not added to any collection.
    """
    with tf1.name_scope(scope, 'segmentation_loss', [logits, labels]):
        num_images = tf.shape(logits)[0]
        losses = _valid_pixel_losses(logits, labels, num_classes, ignore_label, class_weights)
        if not _keeps_every_pixel(top_k_percent):
            if normalization == 'sum':
                raise ValueError('top_k_percent %r < 1 is a mean over the pixels kept; it cannot be used with '
                                 'normalization sum' % (top_k_percent,))
            losses = _top_k_losses(losses, top_k_percent)
        return _normalized(losses, normalization, num_images)


def _normalized(losses, normalization, num_images):
    """The 1-D pixel `losses` summed and divided by their number (valid_pixels; 0 when there
    is none) or by the number of images (sum)."""
    if normalization == 'sum':
        return tf.reduce_sum(losses) / tf.cast(num_images, tf.float32)
    if normalization != 'valid_pixels':
        raise ValueError('normalization must be one of %s, got %r' % (', '.join(LOSS_NORMALIZATIONS), normalization))
    return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))


def _valid_pixel_losses(logits, labels, num_classes, ignore_label, class_weights):
    """1-D (optionally weighted) cross-entropy of the pixels whose label != ignore_label."""
    logits, labels = _valid_pixels(logits, labels, num_classes, ignore_label)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if class_weights is None:
        return losses
    if len(class_weights) != num_classes:
        raise ValueError('class_weights has %d entries, expected num_classes = %d'
                         % (len(class_weights), num_classes))
    weights = tf.constant(class_weights, dtype=tf.float32)
    return losses * tf.gather(weights, labels)


def _keeps_every_pixel(top_k_percent):
    if isinstance(top_k_percent, numbers.Number):
        if not 0.0 < top_k_percent <= 1.0:
            raise ValueError('top_k_percent must be in (0, 1], got %r' % (top_k_percent,))
        return top_k_percent == 1.0
    return False


def _top_k_losses(losses, top_k_percent):
    num_valid = tf.cast(tf.size(losses), tf.float32)
    k = tf.cast(tf.math.ceil(tf.cast(top_k_percent, tf.float32) * num_valid), tf.int32)
    kept, _ = tf.nn.top_k(losses, k=tf.minimum(k, tf.size(losses)), sorted=False)
    return kept


def annealed_top_k(step, final_top_k_percent, anneal_steps):
    """The fraction of pixels kept by hard-pixel mining at `step`, as in DeepLab.

    Falls linearly from 1.0 at step 0 to `final_top_k_percent` at `anneal_steps` and stays
    there: a float32 scalar tensor for `segmentation_loss(top_k_percent=...)`. With
    `anneal_steps` <= 0 nothing anneals and the Python float `final_top_k_percent` itself
    is returned, so that 1.0 lets the loss skip the top-k sort altogether.
    """
    final = float(final_top_k_percent)
    if anneal_steps <= 0:
        return final
    progress = tf.minimum(tf.cast(step, tf.float32) / float(anneal_steps), 1.0)
    return 1.0 - (1.0 - final) * progress


def class_weights_from_counts(pixel_counts, method='median_frequency', present_pixel_counts=None):
    """Per-class loss weights (numpy float64 [C]) from per-class pixel counts.

    Methods:
      median_frequency (Eigen & Fergus 2015): freq_c = pixels of c / labelled pixels of the
        images where c is present (`present_pixel_counts`, required), w_c = median(freq) / freq_c.
        The median is taken over the classes that occur, so the median class gets weight 1.
      inverse_frequency: w_c = total / (K * count_c) with K the number of classes that
        occur; the pixel-averaged weight is then exactly 1, keeping the loss scale.
      none: all ones.
    Classes with zero pixels get weight 0 (no division warnings).
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    if method == 'none':
        return np.ones_like(counts)
    present = counts > 0
    weights = np.zeros_like(counts)
    if method == 'median_frequency':
        if present_pixel_counts is None:
            raise ValueError('median_frequency needs the labelled pixels of the images where each class is '
                             'present (class_present_pixel_counts)')
        if present.any():
            freq = counts[present] / np.asarray(present_pixel_counts, np.float64)[present]
            weights[present] = np.median(freq) / freq
    elif method == 'inverse_frequency':
        if present.any():
            weights[present] = counts.sum() / (present.sum() * counts[present])
    else:
        raise ValueError('unknown class weight method %r (valid: %s)' % (method, ', '.join(WEIGHT_METHODS)))
    return weights


def resolve_class_weights(value, split=None, num_classes=None):
    """Turns `loss.class_weights` into None (unweighted) or a list of num_classes floats.

    Args:
      value: the value of loss.class_weights: null, 'none', a list of numbers, or a method
        name of `class_weights_from_counts`.
      split: the training split's `fcn.data.info.SplitInfo`; a method name needs its
        class_pixel_counts (and, for median_frequency, class_present_pixel_counts).
      num_classes: expected length; defaults to the length of the split's pixel counts.
    """
    counts = split.class_pixel_counts if split is not None else None
    if num_classes is None and counts is not None:
        num_classes = len(counts)
    if value is None or value == 'none':
        return None
    if isinstance(value, str):
        return _weights_from_split(value, split, num_classes)
    if isinstance(value, (list, tuple)):
        return _checked_weight_list(value, num_classes)
    raise ValueError('loss.class_weights must be null, a list of numbers or one of %s; got %r'
                     % (', '.join(WEIGHT_METHODS), value))


def _weights_from_split(method, split, num_classes):
    if method not in WEIGHT_METHODS:
        raise ValueError('loss.class_weights: unknown method %r (valid: %s, or a list of numbers)'
                         % (method, ', '.join(WEIGHT_METHODS)))
    needed = ['class_pixel_counts'] + (['class_present_pixel_counts'] if method == 'median_frequency' else [])
    missing = [key for key in needed if split is None or getattr(split, key) is None]
    if missing:
        raise ValueError('loss.class_weights = %r needs %s in the training split of summary.json; rebuild the '
                         'records with build_tfrecords.py (records of another tool: --dataset records) or give '
                         'the weights as a list' % (method, ' and '.join(missing)))
    weights = class_weights_from_counts(split.class_pixel_counts, method, split.class_present_pixel_counts)
    return _checked_weight_list(weights.tolist(), num_classes)


def _checked_weight_list(values, num_classes):
    if num_classes is not None and len(values) != num_classes:
        raise ValueError('loss.class_weights has %d entries but there are %d classes'
                         % (len(values), num_classes))
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError('loss.class_weights must hold non-negative numbers, got %r' % (values,))
    return [float(v) for v in values]
