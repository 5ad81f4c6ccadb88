"""Evaluation: confusion matrix over a split -> mIoU & co., once or following a training run.

The config is read here only, by the entry points and `options`; the graph and the writers
below take its values. The entry points open the run (fcn.run.open_run): its config.yaml
decides every run-bound key, a checkpoint of another run is evaluated as that run and its
results go to that run's eval/. The predictions and the restorer come from fcn/inference.py,
as export's do, so an exported model predicts what eval measured. The run's checkpoints
(which one, waiting for new ones, the best) and eval/ paths are fcn.run.Run's, the drawings
fcn/visualize.py's.

Beside a trainer, a checkpoint that training's rotation (train.keep_checkpoints) deletes
before it is read is skipped with one line, and the loop goes on with the newest.
"""
import csv
import dataclasses
import os
import time
from typing import Optional

import cv2
import numpy as np

from fcn import deploy, failures, inference, metrics, visualize
from fcn import options as option_values
from fcn import run as runs
from fcn.compat import checkpoint_exists, tf, tf1, visible_gpus
from fcn.progress import bar as progress_bar
from fcn.data import info as dataset_info
from fcn.data import records
from fcn.data.palette import write_palette_png
from fcn.input import provider

EVAL_SUBDIR = runs.EVAL_SUBDIR
CONFUSION_TAG = 'eval/confusion_matrix'
SUMMARY_METRICS = ('miou', 'fwiou', 'pixel_accuracy', 'mean_class_accuracy',
                   'mdice', 'mprecision', 'mrecall', 'mfscore')  # eval/<key> scalars
PER_CLASS_TAGS = (('per_class_iou', 'eval_class_iou'), ('per_class_dice', 'eval_class_dice'),
                  ('per_class_precision', 'eval_class_precision'), ('per_class_recall', 'eval_class_recall'),
                  ('per_class_fscore', 'eval_class_fscore'))  # results key -> TensorBoard tag prefix


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What evaluation needs of a config (`options` builds it once)."""
    data_dir: str
    split: str
    run_dir: str
    info: dataset_info.DatasetInfo
    inference: dict               # keyword arguments of inference.predict_classes
    ema_decay: float = 0.0
    moving_averages: bool = True  # eval.moving_averages: restore the EMA shadows when ema_decay > 0
    max_images: Optional[int] = None
    fscore_beta: float = 1.0
    save_predictions: bool = False
    per_image: bool = False
    checkpoint: Optional[str] = None  # eval.checkpoint: evaluate_once's default
    interval_secs: float = 30.0
    timeout_secs: Optional[float] = None
    max_evals: Optional[int] = None
    final_step: Optional[int] = None  # train.steps: the loop ends after evaluating it


def options(cfg, split=None):
    """EvalOptions of a config (the eval section, the records, the model, train.run_dir)."""
    e = cfg.eval
    return EvalOptions(
        data_dir=cfg.data.dir, split=split or cfg.data.eval_split, run_dir=cfg.train.run_dir,
        info=dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes),
        inference=option_values.inference(cfg), ema_decay=float(cfg.train.ema_decay),
        moving_averages=bool(e.moving_averages), max_images=e.max_images, fscore_beta=float(e.fscore_beta),
        save_predictions=bool(e.save_predictions),
        per_image=bool(e.per_image), checkpoint=e.checkpoint, interval_secs=float(e.interval_secs),
        timeout_secs=e.timeout_secs, max_evals=e.max_evals, final_step=int(cfg.train.steps))


# --- the eval graph -------------------------------------------------------------------------

class EvalGraph:
    """The eval graph, built once and restored from each checkpoint in turn."""

    def __init__(self, opts):
        self.options = opts
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.dataset = provider.get_dataset(opts.data_dir, opts.split, opts.info)
            self.num_records = sum(records.count_records(path) for path in self.dataset.data_sources)
            example = provider.eval_example(self.dataset)
            self.predictions = inference.predict_classes(example['images'], self.dataset.num_classes,
                                                         **opts.inference)
            self.labels = example['labels']
            self.filename = example['filename']
            self.confusion = _streaming_confusion(self.labels, self.predictions,
                                                  self.dataset.num_classes, self.dataset.ignore_label)
            self.restorer = inference.ModelRestorer(opts.ema_decay, opts.moving_averages)

    def num_images(self):
        """The images of the split, counted in its shards (not taken from summary.json), up to eval.max_images."""
        limit = self.options.max_images
        return self.num_records if limit is None else min(limit, self.num_records)

    def run(self, checkpoint, progress=True):
        """Evaluates one checkpoint over the split; returns (results dict, per-image list): the
        list holds (filename, confusion matrix) of each image with options.per_image, else None."""
        opts = self.options
        with failures.named_failures(opts.data_dir, self.dataset.split, what='evaluation'), \
                tf1.Session(graph=self.graph, config=deploy.shared_gpu_config()) as sess:
            sess.run(tf1.local_variables_initializer())
            step = self.restore(sess, checkpoint)
            writer = None
            if opts.save_predictions:
                writer = PredictionWriter(predictions_dir(opts.run_dir, step), self.dataset)
            per_image = [] if opts.per_image else None
            with provider.running_queues(sess):
                self._pass(sess, step, writer, per_image, progress)
                confusion = sess.run(self.confusion.value)
        results = metrics.scores(confusion, self.dataset.class_names, fscore_beta=opts.fscore_beta)
        results.update({'checkpoint': checkpoint, 'global_step': step, 'split': self.dataset.split,
                        'num_images': self.num_images(), 'confusion_matrix': confusion.tolist()})
        return results, per_image

    def restore(self, sess, checkpoint):
        """Restores `checkpoint` into `sess`; returns its global step. CheckpointGone (fcn.run)
        when its files vanished before they were read (training's rotation)."""
        try:
            self.restorer.restore(sess, checkpoint)
            return runs.global_step(checkpoint)
        except (tf.errors.NotFoundError, runs.CheckpointGone):
            if _whole(checkpoint):
                raise
            raise runs.CheckpointGone(checkpoint) from None

    def _pass(self, sess, step, writer, per_image, progress):
        """One pass over the images: accumulates the confusion matrix, writes the prediction PNGs
        (`writer`), appends (filename, confusion) of each image to `per_image` (a list)."""
        fetches = {'update': self.confusion.update}
        if writer or per_image is not None:
            fetches['filename'] = self.filename
        if writer:
            fetches['prediction'] = self.predictions
        if per_image is not None:
            fetches['confusion'] = self.confusion.batch
        # closed (its own line) on errors too
        with progress_bar(self.num_images(), 'eval step %d' % step, enabled=progress) as bar:
            for _ in range(self.num_images()):
                out = sess.run(fetches)
                if writer:
                    writer.write(out['filename'], out['prediction'][0])
                if per_image is not None:
                    per_image.append((_text(out['filename']), out['confusion']))
                bar.update(1)


def _whole(checkpoint):
    """Whether every file of `checkpoint` is still there (a V2 prefix: its index and data; a V1 file)."""
    if os.path.isfile(checkpoint):
        return True
    return checkpoint_exists(checkpoint) and bool(tf.io.gfile.glob(checkpoint + '.data-*'))


def _text(filename):
    return filename.decode('utf-8', 'replace') if isinstance(filename, bytes) else str(filename)


class PredictionWriter:
    """eval.save_predictions: a palette PNG of class ids per image (DeepLab's vis.py
    --also_save_raw_predictions), RUN_DIR/eval/predictions-STEP/NAME.png, NAME being the
    record's image/filename (folders -> '_', an image extension dropped; a repeated name gets
    _2, _3...). Each file is written under a temporary name and renamed."""

    def __init__(self, out_dir, dataset):
        self.dir = out_dir
        os.makedirs(self.dir, exist_ok=True)
        self.palette = visualize.full_palette(dataset.palette, dataset.ignore_label)
        self.names = set()

    def write(self, filename, prediction):
        name = _text(filename)
        stem, ext = os.path.splitext(name)
        base = (stem if ext.lower() in ('.jpg', '.jpeg', '.png', '.bmp', '.gif') else name)
        base = base.replace('/', '_').replace('\\', '_') or 'image'
        unique, n = base, 1
        while unique in self.names:
            n += 1
            unique = '%s_%d' % (base, n)
        self.names.add(unique)
        path = os.path.join(self.dir, unique + '.png')
        write_palette_png(path + '.tmp', np.asarray(prediction).astype(np.uint8), self.palette)
        os.replace(path + '.tmp', path)
        return path


def predictions_dir(run_dir, step):
    return runs.Run(run_dir).predictions_dir(step)


@dataclasses.dataclass
class _Confusion:
    value: tf.Tensor   # the accumulated [C, C] matrix
    update: tf.Tensor  # adds this batch's to it
    batch: tf.Tensor   # this batch's (one image in eval)


def _streaming_confusion(labels, predictions, num_classes, ignore_label):
    """A local int64 [C, C] variable accumulating the confusion matrix of each batch."""
    total = tf1.get_local_variable('confusion_matrix', shape=[num_classes, num_classes], dtype=tf.int64,
                                   initializer=tf1.zeros_initializer())
    labels = tf.reshape(labels, [-1])
    predictions = tf.reshape(predictions, [-1])
    valid = tf.not_equal(labels, ignore_label)
    batch = tf.math.confusion_matrix(tf.boolean_mask(labels, valid), tf.boolean_mask(predictions, valid),
                                     num_classes=num_classes, dtype=tf.int64)
    return _Confusion(total, tf1.assign_add(total, batch), batch)


# --- results: JSON, TensorBoard, per-image CSV ----------------------------------------------

def write_results(run_dir, results, class_names):
    """JSON (per step + latest) and TensorBoard scalars + confusion heatmap under run_dir/eval."""
    run = runs.Run(run_dir)
    path = run.write_metrics(results)
    _write_summaries(run.eval_dir, results, class_names, results['global_step'])
    return path


def _write_summaries(out_dir, results, class_names, step):
    values = [tf1.Summary.Value(tag='eval/%s' % key, simple_value=results[key]) for key in SUMMARY_METRICS]
    for key, prefix in PER_CLASS_TAGS:
        for name, value in results[key].items():
            if value is not None:
                values.append(tf1.Summary.Value(tag='%s/%s' % (prefix, name), simple_value=value))
    values.append(_image_value(CONFUSION_TAG, visualize.confusion_image(results['confusion_matrix'], class_names)))
    writer = tf1.summary.FileWriterCache.get(out_dir)
    writer.add_summary(tf1.Summary(value=values), step)
    writer.flush()


def _image_value(tag, rgb):
    ok, png = cv2.imencode('.png', np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok, 'PNG encoding failed'
    image = tf1.Summary.Image(height=rgb.shape[0], width=rgb.shape[1], colorspace=3,
                              encoded_image_string=png.tobytes())
    return tf1.Summary.Value(tag=tag, image=image)


def per_image_path(run_dir, step):
    return runs.Run(run_dir).per_image_path(step)


def write_per_image(path, per_image, class_names):
    """eval --per_image: one CSV row per image (filename, pixel_accuracy, miou, iou_<class>...),
    worst mIoU first; an image without a labelled pixel has empty scores and comes last."""
    rows = [metrics.image_scores(confusion, class_names) for _, confusion in per_image]
    order = sorted(range(len(rows)), key=lambda i: (rows[i]['miou'] is None, rows[i]['miou'] or 0.0))
    columns = ['filename', 'pixel_accuracy', 'miou'] + ['iou_%s' % name for name in class_names]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w', newline='') as f:
        out = csv.writer(f)
        out.writerow(columns)
        for i in order:
            row = rows[i]
            values = [row['pixel_accuracy'], row['miou']] + [row['per_class_iou'][name] for name in class_names]
            out.writerow([per_image[i][0]] + ['' if v is None else '%.6f' % v for v in values])
    os.replace(path + '.tmp', path)
    return path


# --- entry points ---------------------------------------------------------------------------

def resolve_checkpoint(cfg, override=None):
    """The checkpoint to evaluate: --checkpoint, eval.checkpoint, else the run dir's latest."""
    return runs.find_checkpoint(override, cfg.eval.checkpoint, cfg.train.run_dir)


def _say(message):
    print(message, flush=True)  # at once, also into a log file


def _evaluate(graph, checkpoint, progress, log=_say):
    """Evaluates, writes the results (and the per-image CSV) and keeps the checkpoint in best/
    if it is the run's own and the best so far; returns (results, path of the metrics JSON).
    CheckpointGone when training's rotation deleted it before it was read."""
    results, per_image = graph.run(checkpoint, progress)
    run = runs.Run(graph.options.run_dir)
    path = write_results(run.dir, results, graph.dataset.class_names)
    if per_image is not None:
        csv_path = write_per_image(run.per_image_path(results['global_step']), per_image, graph.dataset.class_names)
        log('per-image scores written to %s' % csv_path)
    if run.owns(checkpoint):  # best/ only in the run that owns the checkpoint
        try:
            if run.keep_best(checkpoint, results):
                log('new best mIoU %.2f%%: %s' % (100 * results['miou'], run.best_dir))
        except runs.CheckpointGone:
            log('%s was deleted by training\'s rotation (train.keep_checkpoints) while being copied to %s: '
                'the previous best is kept' % (checkpoint, run.best_dir))
    return results, path


def _bound(cfg, checkpoint=None):
    """(Run, bound config, checkpoint source): the run the evaluation is about; the lines
    open_run says are logged after the weights line, which comes first."""
    lines = []
    run, bound, source = runs.open_run(cfg, checkpoint, lines.append)
    return run, bound, source, lines


def evaluate_once(cfg, checkpoint=None, progress=True, log=_say):
    """Evaluates one checkpoint (`checkpoint`, eval.checkpoint, else the run's latest) as the
    run that owns it was trained; writes results, prints the per-class table; returns results."""
    run, cfg, source, lines = _bound(cfg, checkpoint)
    checkpoint = runs.find_checkpoint(source)
    opts = options(cfg)
    log(inference.weights_line(opts.ema_decay, opts.moving_averages, checkpoint))
    for line in lines:
        log(line)
    log(deploy.single_device_report(visible_gpus(), 'evaluating'))
    runs.Run(opts.run_dir).check_classes(opts.data_dir)
    try:
        results, path = _evaluate(EvalGraph(opts), checkpoint, progress, log)
    except runs.CheckpointGone:
        raise FileNotFoundError('%s was deleted (training\'s rotation, train.keep_checkpoints?) before it '
                                'could be read; evaluate a newer one' % checkpoint) from None
    log(metrics.format_table(results))
    log('results written to %s' % path)
    if opts.save_predictions:
        log('predictions written to %s' % predictions_dir(opts.run_dir, results['global_step']))
    return results


def evaluate_loop(cfg, progress=True, max_evals=None, timeout_secs=None, log=_say):
    """Evaluates each new checkpoint of train.run_dir until the final step, `max_evals`
    evaluations or `timeout_secs` without a new checkpoint (defaults: eval.max_evals,
    eval.timeout_secs; null = no limit). A checkpoint deleted by training's rotation before
    it is read is skipped with one line. Returns the number of evaluations."""
    home = runs.Run(cfg.train.run_dir)
    bound_at_start = home.has_config()
    opts = _loop_options(home, cfg, log, first=True)
    log(deploy.single_device_report(visible_gpus(), 'evaluating'))
    max_evals = opts.max_evals if max_evals is None else max_evals
    timeout_secs = opts.timeout_secs if timeout_secs is None else timeout_secs
    graph = None  # built with the first checkpoint: a trainer started with us writes config.yaml first
    evaluated = 0
    for checkpoint in home.new_checkpoints(opts.interval_secs, timeout_secs, log):
        if graph is None:
            if not bound_at_start and home.has_config():
                opts = _loop_options(home, cfg, log)
            graph = EvalGraph(opts)
        try:
            results, _ = _evaluate(graph, checkpoint, progress, log)
        except runs.CheckpointGone:
            log('skipped %s: deleted by training\'s rotation (train.keep_checkpoints) before it was read; '
                'going on with the newest' % checkpoint)
            continue
        step = results['global_step']
        log('%s step %d: mIoU %.2f%%' % (time.strftime('%H:%M:%S'), step, 100 * results['miou']))
        evaluated += 1
        if step >= opts.final_step:
            log('step %d is the final step (train.steps %d): done' % (step, opts.final_step))
            break
        if max_evals and evaluated >= max_evals:
            log('%d evaluations (eval.max_evals): done' % evaluated)
            break
    return evaluated


def _loop_options(home, cfg, log, first=False):
    """EvalOptions of `cfg` bound to the run `home`; says which weights (the first line, when
    `first`) and what the run decided."""
    lines = []
    opts = options(home.bind(cfg, lines.append))
    if first or lines:
        log(inference.weights_line(opts.ema_decay, opts.moving_averages, 'each new checkpoint'))
    for line in lines:
        log(line)
    home.check_classes(opts.data_dir)
    return opts


def predictions_for_split(cfg, checkpoint, split=None):
    """(filename, label, prediction) numpy triples for a split: the raw material of the metrics
    (`cfg` as given: no run is opened)."""
    graph = EvalGraph(options(cfg, split))
    out = []
    with tf1.Session(graph=graph.graph, config=deploy.shared_gpu_config()) as sess:
        graph.restorer.restore(sess, checkpoint)
        with provider.running_queues(sess):
            for _ in range(graph.num_images()):
                name, label, pred = sess.run([graph.filename, graph.labels, graph.predictions])
                out.append((name.decode(), np.asarray(label[0]), np.asarray(pred[0])))
    return out
