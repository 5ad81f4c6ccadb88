"""Evaluation: confusion matrix over a split -> mIoU & co., once or following a training run.

The predictions and the restorer come from fcn/inference.py, as export's do, so an exported
model predicts what eval measured.
"""
import json
import os
import shutil
import time

import cv2
import numpy as np
from tqdm import tqdm

from fcn import deploy, failures, inference, metrics, rundir, runlock, visualize
from fcn.compat import latest_checkpoint, tf, tf1, visible_gpus
from fcn.data import info as dataset_info
from fcn.data import records
from fcn.input import provider
from fcn.data.palette import write_palette_png

EVAL_SUBDIR = 'eval'
BEST_SUBDIR = 'best'
BEST_FILE = 'best.json'
BEST_LOCK = 'best.lock'  # in the run dir: held while best/ is updated
CONFUSION_TAG = 'eval/confusion_matrix'
CONFUSION_PIXELS = 640  # the heatmap's side, about: cells of 640 / num_classes pixels (2 to 32)


# --- the eval graph -------------------------------------------------------------------------

class EvalGraph:
    """The eval graph, built once and restored from each checkpoint in turn."""

    def __init__(self, cfg, split=None):
        self.cfg = cfg
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.dataset = provider.get_dataset(cfg.data.dir, split or cfg.data.eval_split, dataset_info.for_config(cfg))
            self.num_records = sum(records.count_records(path) for path in self.dataset.data_sources)
            example = provider.eval_example(self.dataset)
            self.predictions = inference.predict_classes(example['images'], self.dataset.num_classes,
                                                         **inference.options(cfg))
            self.labels = example['labels']
            self.filename = example['filename']
            self.confusion = _streaming_confusion(self.labels, self.predictions,
                                                  self.dataset.num_classes, self.dataset.ignore_label)
            self.restorer = inference.ModelRestorer(cfg.train.ema_decay)

    def num_images(self):
        """The images of the split, counted in its shards (not taken from summary.json), up to eval.max_images."""
        limit = self.cfg.eval.max_images
        return self.num_records if limit is None else min(limit, self.num_records)

    def run(self, checkpoint, progress=True):
        """Evaluates one checkpoint over the split; returns (results dict, global step)."""
        with failures.named_failures(self.cfg.data.dir, self.dataset.split, what='evaluation'), \
                tf1.Session(graph=self.graph, config=deploy.shared_gpu_config()) as sess:
            sess.run(tf1.local_variables_initializer())
            self.restorer.restore(sess, checkpoint)
            step = int(tf.train.load_checkpoint(checkpoint).get_tensor('global_step'))
            coord = tf1.train.Coordinator()
            threads = tf1.train.start_queue_runners(sess, coord=coord)
            writer = PredictionWriter(self.cfg.train.run_dir, step, self.dataset) if self.cfg.eval.save_predictions else None
            fetches = [self.confusion.update] + ([self.filename, self.predictions] if writer else [])
            try:
                with tqdm(total=self.num_images(), desc='eval step %d' % step, unit='img',
                          disable=not progress, dynamic_ncols=True) as bar:  # closed (own line) on errors too
                    for _ in range(self.num_images()):
                        out = sess.run(fetches)
                        if writer:
                            writer.write(out[1], out[2][0])
                        bar.update(1)
                confusion = sess.run(self.confusion.value)
            except tf.errors.InvalidArgumentError as e:
                error = provider.label_error(e)  # a label outside the classes: a user error
                if error is None:
                    raise
                raise error from None
            finally:
                coord.request_stop()
                coord.join(threads, stop_grace_period_secs=5)
        results = metrics.scores(confusion, self.dataset.class_names)
        results.update({'checkpoint': checkpoint, 'global_step': step, 'split': self.dataset.split,
                        'num_images': self.num_images(), 'confusion_matrix': confusion.tolist()})
        return results, step


class PredictionWriter:
    """eval.save_predictions: a palette PNG of class ids per image (DeepLab's vis.py
    --also_save_raw_predictions), RUN_DIR/eval/predictions-STEP/NAME.png, NAME being the
    record's image/filename (folders -> '_', an image extension dropped; a repeated name gets
    _2, _3...). Each file is written under a temporary name and renamed."""

    def __init__(self, run_dir, step, dataset):
        self.dir = predictions_dir(run_dir, step)
        os.makedirs(self.dir, exist_ok=True)
        self.palette = visualize.full_palette(dataset.palette, dataset.ignore_label)
        self.names = set()

    def write(self, filename, prediction):
        name = filename.decode('utf-8', 'replace') if isinstance(filename, bytes) else str(filename)
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
    return os.path.join(run_dir, EVAL_SUBDIR, 'predictions-%08d' % step)


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


# --- results: JSON, TensorBoard -------------------------------------------------------------

def write_results(run_dir, results, class_names):
    """JSON (per step + latest) and TensorBoard scalars + confusion heatmap under run_dir/eval."""
    out_dir = os.path.join(run_dir, EVAL_SUBDIR)
    os.makedirs(out_dir, exist_ok=True)
    step = results['global_step']
    for name in ('metrics-%08d.json' % step, 'latest.json'):
        _write_json(os.path.join(out_dir, name), results)
    _write_summaries(out_dir, results, class_names, step)
    return os.path.join(out_dir, 'metrics-%08d.json' % step)


def _write_json(path, data):
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f, indent=2)
    os.replace(path + '.tmp', path)


def _write_summaries(out_dir, results, class_names, step):
    values = [tf1.Summary.Value(tag='eval/%s' % key, simple_value=results[key])
              for key in ('miou', 'fwiou', 'pixel_accuracy', 'mean_class_accuracy')]
    for name, iou in results['per_class_iou'].items():
        if iou is not None:
            values.append(tf1.Summary.Value(tag='eval_class_iou/%s' % name, simple_value=iou))
    values.append(_image_value(CONFUSION_TAG, confusion_image(results['confusion_matrix'], class_names)))
    writer = tf1.summary.FileWriterCache.get(out_dir)
    writer.add_summary(tf1.Summary(value=values), step)
    writer.flush()


def _image_value(tag, rgb):
    ok, png = cv2.imencode('.png', np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok, 'PNG encoding failed'
    image = tf1.Summary.Image(height=rgb.shape[0], width=rgb.shape[1], colorspace=3,
                              encoded_image_string=png.tobytes())
    return tf1.Summary.Value(tag=tag, image=image)


def confusion_image(confusion, class_names=None):
    """The row-normalised confusion matrix as an RGB viridis heatmap (rows: ground truth,
    columns: prediction) with the class names on both axes (rows on the left; columns above,
    reading upwards) and percentages in the cells when they are large enough (up to about
    20 classes). Cells are 12 to 32 pixels, so the names stay legible for any class count."""
    normalized = metrics.normalized_confusion(confusion)
    size = len(normalized)
    names = list(class_names or [])[:size]
    names += ['class_%d' % i for i in range(len(names), size)]
    cell = int(np.clip(CONFUSION_PIXELS // size, 12, 32))
    heat = cv2.applyColorMap(np.round(normalized * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1]
    cells = np.ascontiguousarray(np.repeat(np.repeat(heat, cell, axis=0), cell, axis=1))
    if cell >= 28:
        for (i, j), value in np.ndenumerate(normalized):
            colour = (0, 0, 0) if value > 0.5 else (255, 255, 255)
            cv2.putText(cells, '%d' % round(100 * value), (j * cell + 3, i * cell + cell // 2 + 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    rows = _name_band(names, cell)
    columns = np.ascontiguousarray(np.rot90(rows))  # row band i -> column band i, text reading upwards
    corner = np.full((columns.shape[0], rows.shape[1], 3), 255, np.uint8)
    for k, text in enumerate(('rows: truth', 'columns: prediction')):
        cv2.putText(corner, text, (3, 12 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([np.concatenate([corner, columns], axis=1), np.concatenate([rows, cells], axis=1)])


def _name_band(names, cell):
    """A white band of len(names) rows of `cell` pixels, each holding its name."""
    scale = min(0.4, cell / 32.0)
    width = max([cv2.getTextSize(name[:24], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for name in names] + [104])
    band = np.full((len(names) * cell, width + 8, 3), 255, np.uint8)
    for i, name in enumerate(names):
        cv2.putText(band, name[:24], (4, i * cell + (cell + int(22 * scale)) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                    scale, (0, 0, 0), 1, cv2.LINE_AA)
    return band


# --- the best checkpoint --------------------------------------------------------------------

def read_best(run_dir):
    """The record of run_dir/best (global_step, miou, checkpoint, source), or None."""
    path = os.path.join(run_dir, BEST_SUBDIR, BEST_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def keep_best(run_dir, checkpoint, results):
    """Copies `checkpoint` to run_dir/best when its mIoU beats the recorded best; True if so.

    Each file is copied under a temporary name and renamed; the checkpoint state file and
    best.json are rewritten after the copy, and the previous best's files removed last, so
    run_dir/best always names a complete checkpoint (eval/export --checkpoint run_dir/best).
    Evaluators hold RUN_DIR/best.lock meanwhile, so two of them never mix their files.
    """
    with runlock.exclusive(os.path.join(run_dir, BEST_LOCK)):  # two evaluators take turns
        return _keep_best(run_dir, checkpoint, results)


def _keep_best(run_dir, checkpoint, results):
    best = read_best(run_dir)
    if best is not None and results['miou'] <= best['miou']:
        return False
    best_dir = os.path.join(run_dir, BEST_SUBDIR)
    os.makedirs(best_dir, exist_ok=True)
    name = os.path.basename(checkpoint)
    for path in tf.io.gfile.glob(checkpoint + '.*'):
        target = os.path.join(best_dir, os.path.basename(path))
        shutil.copyfile(path, target + '.tmp')
        os.replace(target + '.tmp', target)
    tf1.train.update_checkpoint_state(best_dir, name, all_model_checkpoint_paths=[name])
    _write_json(os.path.join(best_dir, BEST_FILE),
                {'global_step': results['global_step'], 'miou': results['miou'],
                 'checkpoint': os.path.join(best_dir, name), 'source': checkpoint})
    for entry in os.listdir(best_dir):
        if entry not in (BEST_FILE, 'checkpoint') and not entry.startswith(name + '.'):
            os.remove(os.path.join(best_dir, entry))
    return True


# --- entry points ---------------------------------------------------------------------------

def resolve_checkpoint(cfg, override=None):
    """The checkpoint to evaluate: --checkpoint, eval.checkpoint, else the run dir's latest."""
    source = override or cfg.eval.checkpoint or cfg.train.run_dir
    path = latest_checkpoint(source)
    if path is None:
        raise FileNotFoundError('no checkpoint found at %r (expected a checkpoint prefix or a run dir '
                                'holding one; train first or pass --checkpoint)' % source)
    return path


def _evaluate(graph, checkpoint, progress):
    """Evaluates, writes the results and keeps the checkpoint if it is the best so far."""
    results, _ = graph.run(checkpoint, progress)
    run_dir = graph.cfg.train.run_dir
    path = write_results(run_dir, results, graph.dataset.class_names)
    if keep_best(run_dir, checkpoint, results):
        print('new best mIoU %.2f%%: %s' % (100 * results['miou'], os.path.join(run_dir, BEST_SUBDIR)))
    return results, path


def evaluate_once(cfg, checkpoint=None, progress=True):
    """Evaluates one checkpoint, writes results, prints the per-class table; returns results."""
    print(deploy.single_device_report(visible_gpus(), 'evaluating'))
    checkpoint = resolve_checkpoint(cfg, checkpoint)
    rundir.check_model_keys(cfg)
    results, path = _evaluate(EvalGraph(cfg), checkpoint, progress)
    print(metrics.format_table(results))
    print('results written to %s' % path)
    if cfg.eval.save_predictions:
        print('predictions written to %s' % predictions_dir(cfg.train.run_dir, results['global_step']))
    return results


def _say(message):
    print(message, flush=True)  # at once, also into a log file


def new_checkpoints(run_dir, interval_secs, timeout_secs=None, log=_say):
    """Yields the run dir's latest checkpoint each time it changes, checking every
    `interval_secs`; says what it waits for whenever it starts waiting; ends after
    `timeout_secs` without a new checkpoint (None: waits forever)."""
    last, announced = None, False
    waiting_since = time.time()
    while True:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None and checkpoint != last:
            last, announced = checkpoint, False
            yield checkpoint
            waiting_since = time.time()
            continue
        waited = time.time() - waiting_since
        if timeout_secs is not None and waited >= timeout_secs:
            log('no new checkpoint in %s for %g s (eval.timeout_secs): stopping' % (run_dir, timeout_secs))
            return
        if not announced:
            log('waiting for a new checkpoint in %s, checking every %g s%s' % (
                run_dir, interval_secs, '' if checkpoint else ' (none there yet)'))
            announced = True
        pause = interval_secs if timeout_secs is None else min(interval_secs, timeout_secs - waited)
        time.sleep(max(pause, 0.0))


def evaluate_loop(cfg, progress=True, max_evals=None, timeout_secs=None, log=_say):
    """Evaluates each new checkpoint of train.run_dir until the final step, `max_evals`
    evaluations or `timeout_secs` without a new checkpoint (defaults: eval.max_evals,
    eval.timeout_secs; null = no limit). Returns the number of evaluations."""
    log(deploy.single_device_report(visible_gpus(), 'evaluating'))
    max_evals = cfg.eval.max_evals if max_evals is None else max_evals
    timeout_secs = cfg.eval.timeout_secs if timeout_secs is None else timeout_secs
    rundir.check_model_keys(cfg)
    graph = EvalGraph(cfg)
    evaluated = 0
    for checkpoint in new_checkpoints(cfg.train.run_dir, cfg.eval.interval_secs, timeout_secs, log):
        results, _ = _evaluate(graph, checkpoint, progress)
        step = results['global_step']
        log('%s step %d: mIoU %.2f%%' % (time.strftime('%H:%M:%S'), step, 100 * results['miou']))
        evaluated += 1
        if step >= cfg.train.steps:
            log('step %d is the final step (train.steps %d): done' % (step, cfg.train.steps))
            break
        if max_evals and evaluated >= max_evals:
            log('%d evaluations (eval.max_evals): done' % evaluated)
            break
    return evaluated


def predictions_for_split(cfg, checkpoint, split=None):
    """(filename, label, prediction) numpy triples for a split: the raw material of the metrics."""
    graph = EvalGraph(cfg, split)
    out = []
    with tf1.Session(graph=graph.graph, config=deploy.shared_gpu_config()) as sess:
        graph.restorer.restore(sess, checkpoint)
        coord = tf1.train.Coordinator()
        threads = tf1.train.start_queue_runners(sess, coord=coord)
        for _ in range(graph.num_images()):
            name, label, pred = sess.run([graph.filename, graph.labels, graph.predictions])
            out.append((name.decode(), np.asarray(label[0]), np.asarray(pred[0])))
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=5)
    return out
