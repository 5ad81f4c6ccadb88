"""Per-split label statistics, the same for built and indexed records (summary.json's split entries).

From each image's label histogram (256 values): the pixels of each class, the ignored pixels,
and, for median-frequency balancing, per class the labelled pixels of the images where the
class occurs (`class_present_pixel_counts`) and the number of those images (`class_image_counts`).
"""
import numpy as np

KEYS = ('num_images', 'class_pixel_counts', 'class_present_pixel_counts', 'class_image_counts',
        'ignored_pixels', 'height_range', 'width_range', 'skipped', 'dropped', 'exif_turned')


class LabelStats:
    """Statistics of the examples of one shard (or split): counts, size ranges, skipped files."""

    def __init__(self, num_classes, ignore_label):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.num_images = 0
        self.pixels = np.zeros(num_classes, np.int64)
        self.present_pixels = np.zeros(num_classes, np.int64)
        self.images = np.zeros(num_classes, np.int64)
        self.ignored = 0
        self.heights = []
        self.widths = []
        self.skipped = []
        self.dropped = 0
        self.turned = 0

    def add(self, height, width, histogram, turned=False):
        """One image: its size and the histogram of its label values (length >= num_classes);
        turned: it was turned upright from an EXIF orientation."""
        classes = np.asarray(histogram[:self.num_classes], np.int64)
        present = classes > 0
        self.num_images += 1
        self.pixels += classes
        self.present_pixels += present * classes.sum()
        self.images += present
        self.ignored += int(histogram[self.ignore_label]) if self.ignore_label < len(histogram) else 0
        self.heights.append(int(height))
        self.widths.append(int(width))
        self.turned += int(bool(turned))

    def skip(self, file, reason, dropped=False):
        """One image left out: a bad file, or (dropped) a valid one a threshold leaves out."""
        self.skipped.append({'file': file, 'reason': reason})
        self.dropped += int(bool(dropped))

    def merge(self, entry):
        """Adds a saved entry (to_dict() of another LabelStats)."""
        self.num_images += entry['num_images']
        self.pixels += np.asarray(entry['class_pixel_counts'], np.int64)
        self.present_pixels += np.asarray(entry['class_present_pixel_counts'], np.int64)
        self.images += np.asarray(entry['class_image_counts'], np.int64)
        self.ignored += entry['ignored_pixels']
        self.skipped.extend(entry['skipped'])
        self.dropped += entry['dropped']
        self.turned += entry['exif_turned']
        if entry['num_images']:
            self.heights.extend(entry['height_range'])
            self.widths.extend(entry['width_range'])

    def to_dict(self):
        return {
            'num_images': self.num_images,
            'class_pixel_counts': self.pixels.tolist(),
            'class_present_pixel_counts': self.present_pixels.tolist(),
            'class_image_counts': self.images.tolist(),
            'ignored_pixels': int(self.ignored),
            'height_range': [min(self.heights), max(self.heights)] if self.heights else None,
            'width_range': [min(self.widths), max(self.widths)] if self.widths else None,
            'skipped': list(self.skipped),
            'dropped': int(self.dropped),
            'exif_turned': int(self.turned),
        }


def is_complete(entry):
    """True when a saved entry has every statistic (entries written before some were added do not)."""
    return isinstance(entry, dict) and all(key in entry for key in KEYS)


def merged(entries, num_classes, ignore_label):
    total = LabelStats(num_classes, ignore_label)
    for entry in entries:
        total.merge(entry)
    return total.to_dict()
