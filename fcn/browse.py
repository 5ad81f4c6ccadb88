"""The dataset browser (browse_dataset.py, MMSegmentation's browse_dataset.py): the samples of a
split as the network sees them, one PNG each: image, label in the palette's colours, overlay.

With `augment`, each sample goes through the training preprocessing itself
(`fcn.input.preprocess.train_preprocess_fn`, the function train_lib feeds its batches with:
random scale, padding with the ignore label, crop, flip, colour jitter), so a padded or
mis-scaled label shows as it reaches the loss.
"""
import os

import cv2
import numpy as np

from fcn import options, visualize
from fcn import run as runs
from fcn.compat import tf, tf1
from fcn.data import info as dataset_info
from fcn.data import records
from fcn.input import preprocess, provider


def browse(cfg, out_dir, split=None, augment=False, num=16, log=print):
    """The entry point: reads the config once; returns the paths written.

    When train.run_dir holds a run (its config.yaml), the run decides its classes and, with
    `augment`, the augmentation and crop it was trained with (a --set override still wins)."""
    run = runs.Run(cfg.train.run_dir)
    cfg = run.bind(cfg, log)
    if augment:
        cfg = run.bind(cfg, log, keys=runs.PREPROCESSING_KEYS, overridable=True)
    aug = options.augment(cfg) if augment else None
    seed = cfg.train.seed
    info = dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes)
    return write_samples(cfg.data.dir, split or cfg.data.train_split, info, out_dir, num, aug, seed, log)


def write_samples(data_dir, split, info, out_dir, num=16, aug=None, seed=None, log=print):
    """Writes OUT_DIR/NNN_<record filename>.png for the first `num` records of `split` (with
    `aug`, AugmentOptions: after the training augmentation; then `num` may exceed the records,
    each pass drawing new augmentations)."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index, sample in enumerate(samples(data_dir, split, info, num, aug, seed)):
        name, key, image, label = sample
        crop = ', augmented %dx%d' % label.shape if aug else ''
        title = '%s  (%s)  %s%s' % (name, os.path.basename(key), split, crop)
        sheet = visualize.sample_sheet(image, label, info.class_names, info.palette, info.ignore_label, title)
        path = os.path.join(out_dir, '%03d_%s.png' % (index, _file_stem(name)))
        ok = cv2.imwrite(path, np.ascontiguousarray(sheet[:, :, ::-1]))
        if not ok:
            raise OSError('cannot write %s' % path)
        paths.append(path)
    log('%d samples of split %r written to %s' % (len(paths), split, out_dir))
    return paths


def samples(data_dir, split, info, num, aug=None, seed=None):
    """Yields (filename, record key, RGB uint8 image, class ids [h, w]) of the first `num`
    records in file order, after the training preprocessing when `aug` is given."""
    with tf.Graph().as_default():
        if seed is not None:
            tf1.set_random_seed(seed)
        dataset = provider.get_dataset(data_dir, split, info)
        total = sum(records.count_records(path) for path in dataset.data_sources)
        count = num if aug is not None else min(num, total)
        prov = provider.provider(dataset, shuffle=False, num_readers=1, capacity=4)
        image, label, filename, key = prov.get(['image', 'label', 'filename', 'record_key'])
        label = provider.checked_label(label, dataset, filename, key)
        if aug is not None:
            image, label = preprocess.train_preprocess_fn(aug, dataset.ignore_label)(image, label)
        else:
            label = label[:, :, 0]
        image = tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0, 255), tf.uint8)
        with tf1.Session() as sess, provider.running_queues(sess):
            for _ in range(count):
                name, record, pixels, labels = sess.run([filename, key, image, label])
                yield name.decode('utf-8', 'replace'), record.decode('utf-8', 'replace'), pixels, labels


def _file_stem(name):
    stem = os.path.splitext(name)[0] if name.lower().endswith(('.jpg', '.jpeg', '.png', '.bmp')) else name
    return stem.replace('/', '_').replace('\\', '_') or 'image'
