"""Small synthetic records and a tiny-model config shared by the pipeline tests."""
import os
import subprocess
import sys

from fcn.config import load_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, env=None, timeout=600, merge_stderr=False):
    """Runs a top-level script as a user would; returns the CompletedProcess (with
    `merge_stderr`, stderr goes into stdout, in the order a terminal would show them)."""
    environ = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    environ.update(env or {})
    streams = {'stdout': subprocess.PIPE, 'stderr': subprocess.STDOUT} if merge_stderr else {'capture_output': True}
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script)] + list(args), cwd=REPO_ROOT,
                          env=environ, text=True, timeout=timeout, **streams)


def build_synthetic(out_dir, num_train=16, num_val=6, size=64, seed=0):
    result = run_script('build_tfrecords.py', '--dataset', 'synthetic', '--out', str(out_dir),
                        '--num_train', str(num_train), '--num_val', str(num_val), '--size', str(size),
                        '--seed', str(seed), '--num_shards', '2', '--no_progress')
    assert result.returncode == 0, result.stderr
    return str(out_dir)


def tiny_overrides(data_dir, run_dir, steps=30):
    """--set overrides for a fast CPU run: 1/8-width VGG FCN-32s, 64 px crops, 5 checkpoints kept
    (the tests pin what they rely on here, whatever the demo recipe in demo.yaml)."""
    return ['data.dir=%s' % data_dir, 'train.run_dir=%s' % run_dir, 'train.steps=%d' % steps,
            'model.name=fcn32s', 'model.width=0.125', 'train.crop_size=64', 'train.batch_size=4',
            'train.keep_checkpoints=5',
            'train.save_every_steps=10', 'train.summary_every_steps=5', 'train.log_every_steps=10',
            'augment.min_scale=1.0', 'augment.max_scale=1.0', 'train.learning_rate=0.003']


def tiny_config(data_dir, run_dir, steps=30, extra=()):
    return load_config(os.path.join(REPO_ROOT, 'configs', 'demo.yaml'),
                       tiny_overrides(data_dir, run_dir, steps) + list(extra))


def scalar_series(run_dir, tag):
    """[(step, value)] of a scalar summary in the run dir's event files."""
    import glob

    from fcn.compat import tf1
    points = []
    for path in sorted(glob.glob(os.path.join(run_dir, 'events.out.tfevents.*'))):
        for event in tf1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    points.append((event.step, value.simple_value))
    return sorted(points)


def fine_tune_one_step(records, run_dir, init_checkpoint):
    """One full-width FCN-32s step at learning rate 0 from `init_checkpoint`, the way a user starts
    from vgg_16.ckpt; returns (the trainer's log lines, the init reader, the run's reader)."""
    from fcn import train_lib
    from fcn.compat import tf, tf1
    cfg = tiny_config(records, run_dir, steps=1, extra=[
        'model.width=1.0', 'init.checkpoint=%s' % init_checkpoint, 'train.optimizer=sgd',
        'train.learning_rate=0.0', 'train.crop_size=32', 'train.batch_size=1', 'model.weight_decay=0.0'])
    messages = []
    train_lib.train(cfg, log=messages.append)
    return (messages, tf.train.load_checkpoint(init_checkpoint),
            tf.train.load_checkpoint(tf1.train.latest_checkpoint(run_dir)))


def fake_checkpoint_files(run_dir, step):
    """`run_dir`/model.ckpt-STEP as two files of known text (not a readable checkpoint): for tests
    of copying and rotating a run's checkpoint files."""
    prefix = os.path.join(run_dir, 'model.ckpt-%d' % step)
    for suffix in ('.index', '.data-00000-of-00001'):
        with open(prefix + suffix, 'w') as f:
            f.write('%d%s' % (step, suffix) * 1000)
    return prefix
