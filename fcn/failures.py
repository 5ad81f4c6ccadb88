"""Failures in the middle of a run, turned into messages that say what happened and what is kept.

- A truncated or corrupted TFRecord shard surfaces from TensorFlow's readers as a DataLossError
  naming only a graph node (`[[{{node parallel_read/ReaderReadV2_1}}]]`), and an undecodable
  image as an InvalidArgumentError of a decode op. The shards of the split are then checked
  (fcn.data.verify) and the error names the bad shard, the record and the problem.
- Ctrl-C names the checkpoint the run keeps.
"""
import contextlib

from fcn.compat import latest_checkpoint, tf
from fcn.data import verify


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a message naming what is kept (printed by fcn.cli)."""


def kept(run_dir):
    """'; the last checkpoint, PATH, is kept' (or that none was written yet) for a message."""
    if run_dir is None:
        return ''
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return '; no checkpoint was written yet'
    return '; the last checkpoint, %s, is kept' % checkpoint


def _is_decode_error(error):
    return isinstance(error, tf.errors.InvalidArgumentError) and 'decode' in str(error).lower()


@contextlib.contextmanager
def named_failures(data_dir, split, run_dir=None, what='training'):
    """Runs the block; a corrupt shard of `split` becomes a CorruptShardError naming it, Ctrl-C
    an `Interrupted` naming the last checkpoint of `run_dir` (None: evaluation, nothing kept)."""
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        if not (isinstance(e, tf.errors.DataLossError) or _is_decode_error(e)):
            raise
        problem = verify.find_bad_shard(data_dir, split, decode=not isinstance(e, tf.errors.DataLossError))
        if problem is None:
            raise
        raise verify.CorruptShardError(problem, 'bad TFRecord shard %s; %s stopped%s. Find every bad record '
                                       'with: build_tfrecords.py --verify %s; rebuild the records '
                                       '(--overwrite) or remove the shard' % (problem, what, kept(run_dir),
                                                                             data_dir)) from None
    except KeyboardInterrupt:
        if run_dir is None:
            raise
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise Interrupted('interrupted before the first checkpoint: nothing kept in %s' % run_dir) from None
        raise Interrupted('interrupted: %s is kept; rerun the same command to resume from it' % checkpoint) from None
