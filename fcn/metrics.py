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


def scores(confusion, class_names=None):
    """mIoU, per-class IoU, pixel accuracy, mean class accuracy, frequency-weighted IoU.

    Classes absent from both ground truth and predictions have IoU NaN and are left
    out of the means (the convention of the VOC devkit and DeepLab).
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
    return {
        'miou': float(np.nanmean(iou)) if valid_iou.any() else 0.0,
        'pixel_accuracy': float(true_positive.sum() / total) if total else 0.0,
        'mean_class_accuracy': float(np.nanmean(class_accuracy)) if (~np.isnan(class_accuracy)).any() else 0.0,
        'fwiou': float(np.sum(frequency[valid_iou] * iou[valid_iou])),
        'per_class_iou': {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)},
        'num_pixels': int(total),
    }


def normalized_confusion(confusion):
    """Each row divided by its sum: row i = where the pixels of class i went (empty rows stay 0)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)


def format_table(results):
    """A printable per-class IoU table with the summary metrics underneath."""
    lines = ['%-20s %8s' % ('class', 'IoU')]
    for name, value in results['per_class_iou'].items():
        lines.append('%-20s %8s' % (name, '   -' if value is None else '%7.2f%%' % (100 * value)))
    lines.append('-' * 29)
    for key in ('miou', 'fwiou', 'pixel_accuracy', 'mean_class_accuracy'):
        lines.append('%-20s %7.2f%%' % (key, 100 * results[key]))
    return '\n'.join(lines)
