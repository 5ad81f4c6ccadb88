"""Evaluation: confusion matrix over a split -> mIoU & co., once or following a training run."""
import json
import os
import time

import numpy as np
from tqdm import tqdm

from fcn import metrics
from fcn.compat import latest_checkpoint, tf, tf1
from fcn.data import provider
from fcn.nets.fcn import build_model

EVAL_SUBDIR = 'eval'


class EvalGraph:
    """The eval graph, built once and restored from each checkpoint in turn."""

    def __init__(self, cfg, split=None):
        self.cfg = cfg
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.dataset = provider.dataset_from_config(cfg, split or cfg.data.eval_split)
            example = provider.eval_example(self.dataset)
            logits, _ = build_model(example['images'], cfg, self.dataset.num_classes, is_training=False)
            self.predictions = tf.argmax(logits, axis=3, output_type=tf.int32)
            self.labels = example['labels']
            self.filename = example['filename']
            self.confusion = _streaming_confusion(self.labels, self.predictions,
                                                  self.dataset.num_classes, self.dataset.ignore_label)
            self.saver = tf1.train.Saver(_restore_map(cfg))
            self.global_step = tf1.train.get_or_create_global_step()

    def num_images(self):
        limit = self.cfg.eval.max_images
        return self.dataset.num_samples if limit is None else min(limit, self.dataset.num_samples)

    def run(self, checkpoint, progress=True):
        """Evaluates one checkpoint over the split; returns (results dict, global step)."""
        with tf1.Session(graph=self.graph) as sess:
            sess.run(tf1.local_variables_initializer())
            self.saver.restore(sess, checkpoint)
            step = int(tf.train.load_checkpoint(checkpoint).get_tensor('global_step'))
            coord = tf1.train.Coordinator()
            threads = tf1.train.start_queue_runners(sess, coord=coord)
            try:
                bar = tqdm(range(self.num_images()), desc='eval step %d' % step, unit='img',
                           disable=not progress, dynamic_ncols=True)
                for _ in bar:
                    sess.run(self.confusion.update)
                confusion = sess.run(self.confusion.value)
            finally:
                coord.request_stop()
                coord.join(threads, stop_grace_period_secs=5)
        results = metrics.scores(confusion, self.dataset.class_names)
        results.update({'checkpoint': checkpoint, 'global_step': step, 'split': self.dataset.split,
                        'num_images': self.num_images(), 'confusion_matrix': confusion.tolist()})
        return results, step


class _Confusion:
    def __init__(self, value, update):
        self.value = value
        self.update = update


def _streaming_confusion(labels, predictions, num_classes, ignore_label):
    """A local int64 [C, C] variable accumulating the confusion matrix of each batch."""
    total = tf1.get_local_variable('confusion_matrix', shape=[num_classes, num_classes], dtype=tf.int64,
                                   initializer=tf1.zeros_initializer())
    labels = tf.reshape(labels, [-1])
    predictions = tf.reshape(predictions, [-1])
    valid = tf.not_equal(labels, ignore_label)
    batch = tf.math.confusion_matrix(tf.boolean_mask(labels, valid), tf.boolean_mask(predictions, valid),
                                     num_classes=num_classes, dtype=tf.int64)
    return _Confusion(total, tf1.assign_add(total, batch))


def _restore_map(cfg):
    """Model variables to restore (the global step comes from the checkpoint reader)."""
    return [v for v in tf1.global_variables() if not v.name.startswith('global_step')]


def write_results(run_dir, results, class_names):
    """JSON (per step + latest) and TensorBoard scalars under run_dir/eval."""
    out_dir = os.path.join(run_dir, EVAL_SUBDIR)
    os.makedirs(out_dir, exist_ok=True)
    step = results['global_step']
    for name in ('metrics-%08d.json' % step, 'latest.json'):
        path = os.path.join(out_dir, name)
        with open(path + '.tmp', 'w') as f:
            json.dump(results, f, indent=2)
        os.replace(path + '.tmp', path)
    _write_summaries(out_dir, results, step)
    return os.path.join(out_dir, 'metrics-%08d.json' % step)


def _write_summaries(out_dir, results, step):
    values = [tf1.Summary.Value(tag='eval/%s' % key, simple_value=results[key])
              for key in ('miou', 'fwiou', 'pixel_accuracy', 'mean_class_accuracy')]
    for name, iou in results['per_class_iou'].items():
        if iou is not None:
            values.append(tf1.Summary.Value(tag='eval_class_iou/%s' % name, simple_value=iou))
    writer = tf1.summary.FileWriterCache.get(out_dir)
    writer.add_summary(tf1.Summary(value=values), step)
    writer.flush()


def resolve_checkpoint(cfg, override=None):
    """The checkpoint to evaluate: --checkpoint, eval.checkpoint, else the run dir's latest."""
    source = override or cfg.eval.checkpoint or cfg.train.run_dir
    path = latest_checkpoint(source)
    if path is None:
        raise FileNotFoundError('no checkpoint found at %r (expected a checkpoint prefix or a run dir '
                                'holding one; train first or pass --checkpoint)' % source)
    return path


def evaluate_once(cfg, checkpoint=None, progress=True):
    """Evaluates one checkpoint, writes results, prints the per-class table; returns results."""
    checkpoint = resolve_checkpoint(cfg, checkpoint)
    graph = EvalGraph(cfg)
    results, _ = graph.run(checkpoint, progress)
    path = write_results(cfg.train.run_dir, results, graph.dataset.class_names)
    print(metrics.format_table(results))
    print('results written to %s' % path)
    return results


def evaluate_loop(cfg, progress=True):
    """Evaluates each new checkpoint of train.run_dir until the final step, max_evals or timeout."""
    graph = EvalGraph(cfg)
    evaluated = 0
    for checkpoint in tf1.train.checkpoints_iterator(cfg.train.run_dir, min_interval_secs=cfg.eval.interval_secs,
                                                     timeout=cfg.eval.timeout_secs):
        results, step = graph.run(checkpoint, progress)
        write_results(cfg.train.run_dir, results, graph.dataset.class_names)
        print('%s step %d: mIoU %.2f%%' % (time.strftime('%H:%M:%S'), step, 100 * results['miou']))
        evaluated += 1
        if step >= cfg.train.steps or (cfg.eval.max_evals and evaluated >= cfg.eval.max_evals):
            break
    return evaluated


def predictions_for_split(cfg, checkpoint, split=None):
    """(filename, label, prediction) numpy triples for a split: the raw material of the metrics."""
    graph = EvalGraph(cfg, split)
    out = []
    with tf1.Session(graph=graph.graph) as sess:
        graph.saver.restore(sess, checkpoint)
        coord = tf1.train.Coordinator()
        threads = tf1.train.start_queue_runners(sess, coord=coord)
        for _ in range(graph.num_images()):
            name, label, pred = sess.run([graph.filename, graph.labels, graph.predictions])
            out.append((name.decode(), np.asarray(label[0]), np.asarray(pred[0])))
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=5)
    return out
