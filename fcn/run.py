"""A run dir and what it binds: the one owner of a run dir (`Run`).

A run dir describes itself (config.yaml: the resolved config it was trained with; dataset.json:
its classes), and is the truth for everything that shapes the trained variables or what the
network computes. RUN_BOUND_KEYS lists those keys: eval, export, predict, browse and a resumed
train read them from the run, whatever config the command line names. FREE_KEYS are the keys
the command line chooses for each command (what to evaluate, where to write, how to train on).
Every key of configs/base.yaml is in exactly one of the two (tests/test_run_keys.py).

A `Run` also owns what a run dir holds besides: its checkpoints (the latest, new ones as
training writes them, the global step, the best in best/) and its eval/ outputs (latest.json,
metrics-STEP.json, predictions-STEP/, per_image-STEP.csv). `open_run` decides which run a
command concerns (the one owning the checkpoint it names, else train.run_dir) and binds the
config to it. No TensorFlow import at module level: the key lists are read without it.
"""
import copy
import json
import os
import shutil
import tempfile
import time

import yaml

from fcn import runlock
from fcn.config import ConfigError, origin, save_config
from fcn.data import info as dataset_info

# Keys whose value the run's checkpoints were trained with.
RUN_BOUND_KEYS = (
    'model.name', 'model.width', 'model.dropout_keep_prob', 'model.weight_decay', 'model.upsample',
    'model.skip_scaling',
    'data.num_classes',          # the classes (and the ignore label) are the run's dataset.json's
    'train.ema_decay',           # the moving averages are variables of the run's checkpoints
)

# Keys each command may choose freely.
FREE_KEYS = (
    'data.dir', 'data.train_split', 'data.eval_split', 'data.num_readers', 'data.num_preprocess_threads',
    'data.shuffle_capacity',
    'augment.min_scale', 'augment.max_scale', 'augment.scale_step', 'augment.flip', 'augment.brightness',
    'augment.contrast', 'augment.saturation', 'augment.hue',
    'init.checkpoint', 'init.exclude_scopes', 'init.ignore_missing_vars',
    'train.run_dir', 'train.steps', 'train.batch_size', 'train.crop_size', 'train.learning_rate',
    'train.lr_schedule', 'train.lr_power', 'train.end_learning_rate', 'train.momentum', 'train.optimizer',
    'train.warmup_steps', 'train.warmup_start_factor', 'train.decay_steps', 'train.decay_rate',
    'train.clip_gradient_norm', 'train.lr_multipliers', 'train.bias_lr_multiplier', 'train.save_every_steps',
    'train.keep_checkpoints', 'train.summary_every_steps', 'train.log_every_steps', 'train.seed',
    'train.deterministic', 'train.accumulate_steps', 'train.trainable_scopes', 'train.mixed_precision',
    'train.xla',
    'loss.terms', 'loss.class_weights', 'loss.top_k_percent', 'loss.hard_mining_anneal_steps', 'loss.normalization',
    'eval.checkpoint', 'eval.max_images', 'eval.interval_secs', 'eval.timeout_secs', 'eval.max_evals',
    'eval.scales', 'eval.flip', 'eval.tile_size', 'eval.tile_overlap', 'eval.save_predictions',
    'eval.per_image', 'eval.moving_averages', 'eval.fscore_beta',
    'deploy.num_clones', 'deploy.clone_on_cpu', 'deploy.gpu_memory_growth', 'deploy.sync_replicas',
    'deploy.replicas_to_aggregate',
)

# Free keys (a resumed run may change them) that browse_dataset.py --augment takes from a run
# that exists, to show what its training was fed; a --set override still wins there.
PREPROCESSING_KEYS = tuple(key for key in FREE_KEYS if key.startswith('augment.')) + ('train.crop_size',)

CONFIG_NAME = 'config.yaml'
EVAL_SUBDIR = 'eval'
BEST_SUBDIR = 'best'
BEST_FILE = 'best.json'
BEST_LOCK = 'best.lock'  # in the run dir: held while best/ is updated
_MISSING = object()


class CheckpointGone(Exception):
    """A checkpoint was deleted (training's rotation, train.keep_checkpoints) before it was read."""


def _say(message):
    print(message, flush=True)  # at once, also into a log file


class Run:
    """One run dir: its saved config and what it binds, its dataset.json, its checkpoints and
    its eval/ outputs. A folder without config.yaml (an old run, or one not trained yet) binds
    nothing."""

    def __init__(self, run_dir):
        self.dir = os.path.expanduser(str(run_dir))

    def __repr__(self):
        return 'Run(%r)' % self.dir

    def same_as(self, other):
        return os.path.realpath(self.dir) == os.path.realpath(other.dir)

    # --- config.yaml and dataset.json ---------------------------------------------------

    @property
    def config_path(self):
        return os.path.join(self.dir, CONFIG_NAME)

    def has_config(self):
        return os.path.isfile(self.config_path)

    def saved_config(self):
        """The run's config.yaml as a nested dict, or None when the run has none."""
        if not self.has_config():
            return None
        with open(self.config_path) as f:
            try:
                return yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ConfigError('%s is not valid YAML: %s' % (self.config_path, e)) from None

    def dataset_info(self):
        """The run's dataset.json (fcn.data.info.DatasetInfo), or None (a run from before it was kept)."""
        return dataset_info.read_run(self.dir)

    def write(self, cfg, info):
        """Writes the resolved config and the dataset description into the run dir."""
        os.makedirs(self.dir, exist_ok=True)
        info.write(dataset_info.run_info_path(self.dir))
        save_config(cfg, self.config_path)

    def bind(self, cfg, log=_say, keys=RUN_BOUND_KEYS, overridable=False):
        """`cfg` with every one of `keys` the run's config.yaml holds taken from it (a copy).

        A value of the named config file that differs is replaced, and one line says which
        keys; a --set override that differs is a ConfigError naming the key, both values and
        config.yaml (`overridable`: the override is kept instead). A run without config.yaml
        binds nothing."""
        saved = self.saved_config()
        if saved is None:
            return cfg
        where = origin(cfg)
        bound, replaced = copy.deepcopy(cfg), []
        for key in keys:
            theirs, ours = _lookup(saved, key), _lookup(cfg, key)
            if theirs is _MISSING or _same(ours, theirs) or (key == 'data.num_classes' and theirs is None):
                continue  # a null data.num_classes: the run's dataset.json has the classes (checked there)
            if key in where.set_keys and overridable:
                continue
            if key in where.set_keys:
                hint = '; eval.moving_averages: false evaluates raw weights' if key == 'train.ema_decay' else ''
                raise ConfigError('--set %s=%s disagrees with the run in %s, trained with %s: %s (%s); drop '
                                  'the override, or use another train.run_dir%s'
                                  % (key, _show(ours), self.dir, key, _show(theirs), self.config_path, hint))
            _store(bound, key, theirs)
            replaced.append('%s %s (not %s)' % (key, _show(theirs), _show(ours)))
        if replaced:
            log('the run in %s was trained with other values than %s: taken from its %s: %s'
                % (self.dir, where.path or 'the config', CONFIG_NAME, ', '.join(replaced)))
        return bound

    def check_classes(self, data_dir):
        """Raises ConfigError when the records in `data_dir` have another number of classes
        than the run was trained on (nothing to check without dataset.json or summary.json)."""
        run_info = self.dataset_info()
        if run_info is None or not os.path.isfile(dataset_info.summary_path(data_dir)):
            return
        records_info = dataset_info.DatasetInfo.read(data_dir)
        if records_info.num_classes != run_info.num_classes:
            raise ConfigError('data.dir %s has %d classes (%s) but the run in %s was trained on %d (%s); '
                              'evaluate it on its own records or use another train.run_dir'
                              % (data_dir, records_info.num_classes, records_info.source, self.dir,
                                 run_info.num_classes, run_info.source))

    # --- checkpoints ---------------------------------------------------------------------

    def latest_checkpoint(self):
        from fcn.compat import latest_checkpoint
        return latest_checkpoint(self.dir)

    def owns(self, checkpoint):
        """Whether `checkpoint` is one of this run's own (in the run dir, not in best/)."""
        return os.path.realpath(os.path.dirname(checkpoint)) == os.path.realpath(self.dir)

    def new_checkpoints(self, interval_secs, timeout_secs=None, log=_say):
        """Yields the run's latest checkpoint each time it changes, checking every
        `interval_secs`; says what it waits for whenever it starts waiting; ends after
        `timeout_secs` without a new checkpoint (None: waits forever)."""
        last, announced = None, False
        waiting_since = time.time()
        while True:
            checkpoint = self.latest_checkpoint()
            if checkpoint is not None and checkpoint != last:
                last, announced = checkpoint, False
                yield checkpoint
                waiting_since = time.time()
                continue
            waited = time.time() - waiting_since
            if timeout_secs is not None and waited >= timeout_secs:
                log('no new checkpoint in %s for %g s (eval.timeout_secs): stopping' % (self.dir, timeout_secs))
                return
            if not announced:
                log('waiting for a new checkpoint in %s, checking every %g s%s' % (
                    self.dir, interval_secs, '' if checkpoint else ' (none there yet)'))
                announced = True
            pause = interval_secs if timeout_secs is None else min(interval_secs, timeout_secs - waited)
            time.sleep(max(pause, 0.0))

    # --- best/ ---------------------------------------------------------------------------

    @property
    def best_dir(self):
        return os.path.join(self.dir, BEST_SUBDIR)

    def read_best(self):
        """The record of best/ (global_step, miou, checkpoint, source), or None."""
        path = os.path.join(self.best_dir, BEST_FILE)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    def keep_best(self, checkpoint, results):
        """Copies `checkpoint` to best/ when its mIoU (results['miou']) beats the recorded
        best; True if so.

        Every file is copied under a temporary name first, then all are renamed; the
        checkpoint state file and best.json are rewritten after that, and the previous best's
        files removed last, so best/ always names a complete checkpoint. A checkpoint deleted
        during the copy (training's rotation) raises CheckpointGone and leaves best/ as it
        was. Evaluators hold RUN_DIR/best.lock meanwhile, so two of them never mix their files.
        """
        os.makedirs(self.dir, exist_ok=True)
        with runlock.exclusive(os.path.join(self.dir, BEST_LOCK)):  # two evaluators take turns
            return self._keep_best(checkpoint, results)

    def _keep_best(self, checkpoint, results):
        from fcn.compat import tf, tf1
        best = self.read_best()
        if best is not None and results['miou'] <= best['miou']:
            return False
        target_dir = self.best_dir
        os.makedirs(target_dir, exist_ok=True)
        name = os.path.basename(checkpoint)
        sources = tf.io.gfile.glob(checkpoint + '.*')
        copied = []
        try:
            if not any(path.endswith('.index') for path in sources):
                raise FileNotFoundError(checkpoint + '.index')
            for path in sources:
                target = os.path.join(target_dir, os.path.basename(path))
                copied.append(target)
                shutil.copyfile(path, target + '.tmp')
        except FileNotFoundError:
            for target in copied:
                _remove(target + '.tmp')
            raise CheckpointGone(checkpoint) from None
        for target in copied:
            os.replace(target + '.tmp', target)
        tf1.train.update_checkpoint_state(target_dir, name, all_model_checkpoint_paths=[name])
        write_json(os.path.join(target_dir, BEST_FILE),
                   {'global_step': results['global_step'], 'miou': results['miou'],
                    'checkpoint': os.path.join(target_dir, name), 'source': checkpoint})
        for entry in os.listdir(target_dir):
            if entry not in (BEST_FILE, 'checkpoint') and not entry.startswith(name + '.'):
                _remove(os.path.join(target_dir, entry))
        return True

    # --- eval/ ---------------------------------------------------------------------------

    @property
    def eval_dir(self):
        return os.path.join(self.dir, EVAL_SUBDIR)

    def metrics_path(self, step):
        return os.path.join(self.eval_dir, 'metrics-%08d.json' % step)

    @property
    def latest_metrics_path(self):
        return os.path.join(self.eval_dir, 'latest.json')

    def predictions_dir(self, step):
        return os.path.join(self.eval_dir, 'predictions-%08d' % step)

    def per_image_path(self, step):
        return os.path.join(self.eval_dir, 'per_image-%08d.csv' % step)

    def write_metrics(self, results):
        """eval/metrics-STEP.json and eval/latest.json (each whole: written aside, renamed);
        returns the first's path."""
        os.makedirs(self.eval_dir, exist_ok=True)
        path = self.metrics_path(results['global_step'])
        write_json(path, results)
        write_json(self.latest_metrics_path, results)
        return path


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _lookup(tree, dotted):
    for part in dotted.split('.'):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _store(tree, dotted, value):
    parts = dotted.split('.')
    for part in parts[:-1]:
        tree = tree[part]
    tree[parts[-1]] = copy.deepcopy(value)


def _same(a, b):
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def _show(value):
    """A value as YAML writes it (true, null, 0.125), as one would type it after --set."""
    return yaml.safe_dump(value, default_flow_style=True).strip().replace('\n...', '')


def write_json(path, data):
    """Writes `data` as JSON to a temporary file of its own, then renames it into place: two
    writers of one path never mix their bytes (one of them wins, whole)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


# --- which run a command concerns -------------------------------------------------------------

def owning(path):
    """The Run a checkpoint or folder belongs to: a folder with config.yaml (the run dir itself,
    or the folder holding a checkpoint prefix), or the run whose best/ it is; None for a bare
    checkpoint with no run beside it (vgg_16.ckpt, a converted file)."""
    path = os.path.expanduser(str(path))
    folder = path if os.path.isdir(path) else (os.path.dirname(path) or '.')
    candidates = [folder]
    if os.path.basename(os.path.normpath(folder)) == BEST_SUBDIR:
        candidates.append(os.path.dirname(os.path.abspath(folder)))
    for candidate in candidates:
        run = Run(candidate)
        if run.has_config():
            return run
    return None


def find_checkpoint(*sources):
    """The checkpoint named by the first source that is not None (e.g. --checkpoint,
    eval.checkpoint, train.run_dir): that prefix, or the latest checkpoint of that folder."""
    from fcn.compat import latest_checkpoint
    source = next((s for s in sources if s), None)
    path = latest_checkpoint(source)
    if path is None:
        raise FileNotFoundError('no checkpoint found at %r (expected a checkpoint prefix or a run dir '
                                'holding one; train first or pass --checkpoint)' % source)
    return path


def global_step(checkpoint):
    """The global step saved in `checkpoint`; CheckpointGone when its files are gone."""
    from fcn.compat import tf
    try:
        return int(tf.train.load_checkpoint(checkpoint).get_tensor('global_step'))
    except tf.errors.NotFoundError:
        raise CheckpointGone(checkpoint) from None


def open_run(cfg, checkpoint=None, log=_say):
    """(Run, bound config, checkpoint source) of a command evaluating or exporting a run.

    `checkpoint` (--checkpoint, else eval.checkpoint) inside another run dir makes the command
    about that run: its config.yaml and dataset.json decide the network and the classes, and
    the bound config's train.run_dir is that run's (its eval/ gets the results). A bare
    checkpoint with no run beside it keeps the config's keys (and train.run_dir). Without a
    checkpoint: train.run_dir's run. The returned source is what to find the checkpoint in."""
    source = checkpoint or cfg.eval.checkpoint
    home = Run(cfg.train.run_dir)
    if not source:
        return home, home.bind(cfg, log), home.dir
    owner = owning(source)
    if owner is None:
        return home, cfg, source
    bound = owner.bind(cfg, log)
    if not owner.same_as(home):
        log('%s belongs to the run in %s: its %s and dataset.json decide the network and the classes, '
            'and the results go to %s' % (source, owner.dir, CONFIG_NAME, owner.eval_dir))
        bound = copy.deepcopy(bound)
        bound.train.run_dir = owner.dir
    return owner, bound, source
