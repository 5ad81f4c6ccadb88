"""Segmentation metrics from a confusion matrix (rows = ground truth, columns = prediction)."""
import numpy as np


def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """Numpy confusion matrix over pixels whose label is not `ignore_label`."""
    labels = np.asarray(labels).ravel().astype(np.int64)
    predictions = np.asarray(predictions).ravel().astype(np.int64)
    valid = labels != ignore_label
    index = labels[valid] * num_classes + predictions[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(numerator, denominator):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores(confusion, class_names=None, fscore_beta=1.0):
    """mIoU, per-class IoU, pixel accuracy, mean class accuracy, frequency-weighted IoU, and
    per-class Dice, precision, recall and F-beta score with their means.

    Classes absent from both ground truth and predictions have IoU NaN and are left
    out of the means (the convention of the VOC devkit and DeepLab); so are they from the
    Dice, precision, recall and F-score means. For a class present in only one of them 0/0
    counts as 0 (scikit-learn's zero_division=0): precision 0 when it is never predicted,
    recall 0 when it is not in the truth. (mean_class_accuracy, the recall over the classes
    in the truth only, keeps its own convention.)
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    gt_pixels = confusion.sum(axis=1)
    pred_pixels = confusion.sum(axis=0)
    iou = _safe_divide(true_positive, gt_pixels + pred_pixels - true_positive)
    class_accuracy = _safe_divide(true_positive, gt_pixels)
    total = confusion.sum()
    frequency = gt_pixels / total if total else np.zeros_like(gt_pixels)
    valid_iou = ~np.isnan(iou)
    names = class_names or ['class_%d' % i for i in range(len(iou))]
    results = {
        'miou': _mean(iou),
        'pixel_accuracy': float(true_positive.sum() / total) if total else 0.0,
        'mean_class_accuracy': _mean(class_accuracy),
        'fwiou': float(np.sum(frequency[valid_iou] * iou[valid_iou])),
        'per_class_iou': _per_class(names, iou),
        'num_pixels': int(total),
    }
    for key, values in f_scores(true_positive, gt_pixels, pred_pixels, fscore_beta).items():
        results['m' + key] = _mean(values)
        results['per_class_' + key] = _per_class(names, values)
    return results


def f_scores(true_positive, gt_pixels, pred_pixels, beta=1.0):
    """{dice, precision, recall, fscore: per-class arrays}: NaN for a class in neither truth nor
    prediction, 0/0 = 0 otherwise. F-beta = (1 + b^2) P R / (b^2 P + R); with b = 1 it is Dice."""
    present = (gt_pixels + pred_pixels) > 0
    precision = np.where(present, _zero_divide(true_positive, pred_pixels), np.nan)
    recall = np.where(present, _zero_divide(true_positive, gt_pixels), np.nan)
    beta2 = float(beta) ** 2
    fscore = np.where(present, _zero_divide((1 + beta2) * precision * recall, beta2 * precision + recall), np.nan)
    dice = _safe_divide(2 * true_positive, gt_pixels + pred_pixels)
    return {'dice': dice, 'precision': precision, 'recall': recall, 'fscore': fscore}


def _zero_divide(numerator, denominator):
    return np.nan_to_num(_safe_divide(np.nan_to_num(numerator), denominator), nan=0.0)


def _mean(values):
    """The mean over the non-NaN entries (0.0 when there is none)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if (~np.isnan(values)).any() else 0.0


def _per_class(names, values):
    return {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, values)}


def image_scores(confusion, class_names):
    """One image's pixel_accuracy, miou and per_class_iou (None where the class is in neither
    its truth nor its prediction; pixel_accuracy and miou None when no pixel is labelled)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    iou = _safe_divide(true_positive, confusion.sum(axis=1) + confusion.sum(axis=0) - true_positive)
    labelled = confusion.sum() > 0
    return {'pixel_accuracy': float(true_positive.sum() / confusion.sum()) if labelled else None,
            'miou': _mean(iou) if labelled else None, 'per_class_iou': _per_class(class_names, iou)}


def normalized_confusion(confusion):
    """Each row divided by its sum: row i = where the pixels of class i went (empty rows stay 0)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)


TABLE_COLUMNS = (('IoU', 'per_class_iou'), ('Dice', 'per_class_dice'), ('Precision', 'per_class_precision'),
                 ('Recall', 'per_class_recall'), ('F-score', 'per_class_fscore'))
TABLE_MEANS = ('miou', 'mdice', 'mprecision', 'mrecall', 'mfscore')
TABLE_TOTALS = ('fwiou', 'pixel_accuracy', 'mean_class_accuracy')


def format_table(results):
    """A printable per-class table (IoU, Dice, precision, recall, F-score) with the means
    ('-' for a class in neither truth nor prediction) and the other summary metrics underneath."""
    def cell(value):
        return '%9s' % '-' if value is None else '%8.2f%%' % (100 * value)
    columns = [key for _, key in TABLE_COLUMNS if key in results]
    lines = ['%-20s' % 'class' + ''.join('%10s' % title for title, key in TABLE_COLUMNS if key in results)]
    for name in results['per_class_iou']:
        lines.append('%-20s' % name[:20] + ''.join(' ' + cell(results[key][name]) for key in columns))
    lines.append('-' * len(lines[0]))
    lines.append('%-20s' % 'mean' + ''.join(' ' + cell(results[key]) for key in TABLE_MEANS if key in results))
    for key in TABLE_TOTALS:
        lines.append('%-20s %8.2f%%' % (key, 100 * results[key]))
    return '\n'.join(lines)
