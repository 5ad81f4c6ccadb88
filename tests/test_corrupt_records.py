"""A truncated, corrupted or undecodable TFRecord shard: `build_tfrecords.py --verify` names
every bad record; training and evaluation stop with an error naming the shard (not a raw
`[[{{node parallel_read/ReaderReadV2_1}}]]`) and the last good checkpoint stays."""
import os
import shutil
import subprocess
import sys

import pytest

from fcn.compat import tf, tf1
from fcn.data import records
from pipeline_fixtures import REPO_ROOT, build_synthetic, run_script, tiny_overrides

TRAIN_SHARD = 'train-00001-of-00002.tfrecord'
VAL_SHARD = 'val-00000-of-00002.tfrecord'


@pytest.fixture(scope='module')
def good_records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'good', num_train=8, num_val=4, size=32)


def _copy(records_dir, tmp_path, name):
    out = str(tmp_path / name)
    shutil.copytree(records_dir, out)
    return out


def truncate(path, nbytes=100):
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) - nbytes)


def flip_byte(path, offset):
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def rewrite_with_undecodable_image(path, index):
    """The shard again, its record `index` holding bytes that are no image (checksums intact)."""
    serialized = list(tf1.io.tf_record_iterator(path))
    example = tf.train.Example.FromString(serialized[index])
    example.features.feature[records.IMAGE_ENCODED].bytes_list.value[0] = b'\xff\xd8 not really a JPEG'
    serialized[index] = example.SerializeToString()
    with tf.io.TFRecordWriter(path) as writer:
        for record in serialized:
            writer.write(record)


def _args(data_dir, run_dir, steps):
    overrides = tiny_overrides(data_dir, run_dir, steps) + ['train.crop_size=32', 'model.width=0.0625',
                                                            'train.save_every_steps=4']
    return sum([['--set', o] for o in overrides], [])


def test_verify_names_each_bad_record_and_exits_2(good_records, tmp_path):
    run = run_script('build_tfrecords.py', '--verify', good_records)
    assert run.returncode == 0, run.stderr
    assert 'all 12 records' in run.stdout
    bad = _copy(good_records, tmp_path, 'bad')
    truncate(os.path.join(bad, TRAIN_SHARD))
    flip_byte(os.path.join(bad, VAL_SHARD), 20)  # inside record 0's data
    rewrite_with_undecodable_image(os.path.join(bad, 'val-00001-of-00002.tfrecord'), 1)
    run = run_script('build_tfrecords.py', '--verify', bad)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.startswith('bad record: ')]
    assert len(lines) == 3, run.stderr
    assert lines[0].startswith('bad record: %s: record 3: truncated' % os.path.join(bad, TRAIN_SHARD))
    assert lines[1].startswith('bad record: %s: record 0: checksum mismatch' % os.path.join(bad, VAL_SHARD))
    assert lines[2].startswith('bad record: %s: record 1: image (image/encoded) does not decode'
                               % os.path.join(bad, 'val-00001-of-00002.tfrecord'))
    assert run.stderr.strip().splitlines()[-1].startswith('error: 3 bad record(s) in %s' % bad)


def test_training_on_a_truncated_shard_names_it_and_keeps_the_checkpoint(good_records, tmp_path):
    data_dir = _copy(good_records, tmp_path, 'data')
    run_dir = str(tmp_path / 'run')
    run = run_script('train.py', '--config', 'configs/demo.yaml', *_args(data_dir, run_dir, 8))
    assert run.returncode == 0, run.stderr
    truncate(os.path.join(data_dir, TRAIN_SHARD))
    run = run_script('train.py', '--config', 'configs/demo.yaml', *_args(data_dir, run_dir, 400))
    assert run.returncode == 2, run.stderr
    assert 'Traceback' not in run.stderr and 'node' not in run.stderr
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith('error: bad TFRecord shard %s: record 3: truncated' % os.path.join(data_dir, TRAIN_SHARD))
    latest = tf1.train.latest_checkpoint(run_dir)
    assert 'training stopped; the last checkpoint, %s, is kept' % latest in message
    assert 'build_tfrecords.py --verify %s' % data_dir in message
    reader = tf.train.load_checkpoint(latest)  # it loads
    assert 8 <= reader.get_tensor('global_step') < 400


def _run_merged(script, *args):
    """stdout and stderr in one stream, as a terminal shows them (progress bars on)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script)] + list(args), cwd=REPO_ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def terminal_lines(text):
    """What each line of a terminal shows: a carriage return rewrites its line."""
    return [line.rsplit('\r', 1)[-1] for line in text.split('\n')]


@pytest.mark.parametrize('damage', ['corrupted', 'undecodable'])
def test_eval_on_a_bad_shard_names_it_on_its_own_line(good_records, tmp_path, damage):
    data_dir = _copy(good_records, tmp_path, 'data')
    run_dir = str(tmp_path / 'run')
    run = run_script('train.py', '--config', 'configs/demo.yaml', *_args(data_dir, run_dir, 1))
    assert run.returncode == 0, run.stderr
    shard = os.path.join(data_dir, VAL_SHARD)
    if damage == 'corrupted':
        flip_byte(shard, 20)
        expected = 'error: bad TFRecord shard %s: record 0: checksum mismatch' % shard
    else:
        rewrite_with_undecodable_image(shard, 1)
        expected = 'error: bad TFRecord shard %s: record 1: image (image/encoded) does not decode' % shard
    run = _run_merged('eval.py', '--once', '--config', 'configs/demo.yaml', *_args(data_dir, run_dir, 1))
    assert run.returncode == 2, run.stdout
    assert 'Traceback' not in run.stdout
    errors = [line for line in terminal_lines(run.stdout) if 'error:' in line]
    assert len(errors) == 1 and errors[0].startswith(expected), run.stdout
    assert errors[0].endswith('evaluation stopped. Find every bad record with: build_tfrecords.py --verify %s; '
                              'rebuild the records (--overwrite) or remove the shard' % data_dir)
