"""Label sanity after a build or an index: one `warning:` line per problem found in a split.

The problems are those that build without an error yet train nothing useful: masks that hold
only 0 and 255 (objects painted 255, which is the ignore label), classes with no pixels in a
training split, splits where most pixels are ignored, and indexed records whose JPEGs carry an
EXIF orientation (their raw pixels are what training sees).
"""
MOSTLY_IGNORED = 0.5  # a split whose ignored share of the pixels is above this gets a warning


def is_training_split(name):
    """train, train_aug, train2017, sbd_train...: the splits trained on."""
    return name.startswith('train') or name.endswith('_train')


def warnings_for(info):
    """The warning lines (without the 'warning: ' prefix) for a DatasetInfo, split by split."""
    lines = []
    for name in sorted(info.splits):
        lines.extend(_split_warnings(info, name, info.splits[name]))
    return lines


def _split_warnings(info, name, split):
    counts = split.class_pixel_counts
    if counts is None:
        return []
    labelled, ignored = sum(counts), split.ignored_pixels
    lines = []
    binary = info.num_classes > 1 and ignored > 0 and labelled == counts[0] and info.ignore_label == 255
    if binary:
        lines.append('split %r: the masks hold only 0 and 255, and 255 is the ignore label: those pixels are '
                     'never learned. If 255 marks your objects, map it to a class: build_tfrecords.py '
                     '--dataset folder ... --mask_map 255:1' % name)
    elif is_training_split(name):
        empty = [info.class_names[c] for c, n in enumerate(counts) if n == 0]
        if empty:
            lines.append('split %r: %d of %d classes have no pixels (%s): they cannot be learned'
                         % (name, len(empty), info.num_classes, _shortlist(empty)))
    total = labelled + ignored
    if total and ignored > MOSTLY_IGNORED * total:
        lines.append('split %r: %.0f%% of the pixels are the ignore label %d' % (name, 100.0 * ignored / total,
                                                                                   info.ignore_label))
    tagged = split.extra.get('exif_tagged') or 0
    if tagged:
        lines.append('split %r: %d %s an EXIF orientation: these records hold the raw pixels, which '
                     'training and eval read unturned; if the labels were drawn on the upright view (as annotation '
                     'tools show photos), build the records from the source with build_tfrecords.py, which turns '
                     'them upright' % (name, tagged, 'image carries' if tagged == 1 else 'images carry'))
    return lines


def _shortlist(names, shown=8):
    return ', '.join(names[:shown]) + (', ...' if len(names) > shown else '')
