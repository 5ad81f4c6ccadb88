"""How the chief tells the ps tasks that the job is over: a file in the shared run dir.

No TensorFlow import (fcn.launch watches the same file).
"""
import os

DONE_FILENAME = 'cluster.done'


def written_since(path, since):
    """True when the file `path` exists and was written at or after time `since`."""
    if path is None:
        return False
    try:
        return os.stat(path).st_mtime >= since
    except FileNotFoundError:
        return False


def done_file(run_dir):
    """The file by which the chief tells the ps tasks the job is over (run_dir is shared)."""
    return os.path.join(run_dir, DONE_FILENAME)


def signal_done(done_file):
    """Called by the chief when training is over: the ps tasks serving on done_file return."""
    os.makedirs(os.path.dirname(os.path.abspath(done_file)), exist_ok=True)
    with open(done_file, 'a'):
        pass
    os.utime(done_file)

