"""One trainer per run dir, and one writer of `best/` at a time (no TensorFlow import).

The trainer lock is `RUN_DIR/train.lock`: a file holding the holder's host and pid, with an
exclusive `flock` on it for as long as the trainer runs. The kernel drops the flock when the
process dies, however it dies (SIGKILL included), so a lock file whose flock is free was
left by a dead process and is taken over, with a message. On a file system without flock
support the holder's pid is checked instead (same host only; a lock from another host is
then refused until removed by hand).
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import time

TRAIN_LOCK = 'train.lock'


class RunLockError(ValueError):
    """Another live process holds the lock (a user mistake: two trainers on one run dir)."""


def _describe(holder):
    if not holder:
        return 'an unknown process'
    return 'pid %s on host %s (since %s)' % (holder.get('pid'), holder.get('host'), holder.get('started', '?'))


def _read_holder(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    data = b''
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        holder = json.loads(data.decode('utf-8'))
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (TypeError, ValueError):
        return False
    return True


def _flock(fd):
    """True if we now hold the flock, False if another process does, None if unsupported."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


class TrainerLock:
    """Holds RUN_DIR/train.lock; `release()` (or leaving the `with`) frees it."""

    def __init__(self, run_dir, what='train.py', log=print):
        self.path = os.path.join(run_dir, TRAIN_LOCK)
        self.what = what
        self.log = log
        self.fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        for _ in range(10):  # retried only if the file is replaced while we open it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._try(fd):
                    self.fd = fd
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise RunLockError('could not take %s: it keeps being replaced' % self.path)

    def _try(self, fd):
        locked = _flock(fd)
        holder = _read_holder(fd)
        if locked is False:
            raise RunLockError('%s is in use: %s of %s holds %s; stop it first or use another '
                               'train.run_dir' % (os.path.dirname(self.path), self.what, _describe(holder),
                                                  self.path))
        if not _same_file(fd, self.path):
            return False  # the holder removed it as we opened it: try the new file
        me = socket.gethostname()
        if holder and holder.get('pid') != os.getpid():
            if locked is None and (holder.get('host') != me or _pid_alive(holder.get('pid'))):
                raise RunLockError('%s is in use: %s of %s holds %s (no file locking here: if that '
                                   'process is gone, delete the file)' % (
                                       os.path.dirname(self.path), self.what, _describe(holder), self.path))
            self.log('taking over %s, left by %s, which is no longer running' % (self.path, _describe(holder)))
        record = {'host': me, 'pid': os.getpid(), 'started': time.strftime('%Y-%m-%d %H:%M:%S'),
                  'command': self.what}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode('utf-8'))
        os.fsync(fd)
        return True

    def release(self):
        if self.fd is None:
            return
        try:
            if _same_file(self.fd, self.path):
                with contextlib.suppress(OSError):  # a read-only run dir: the flock still goes with the fd
                    os.remove(self.path)  # removed while still locked: a waiting opener retries
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def read_holder(run_dir):
    """The recorded holder of RUN_DIR/train.lock (dict), or None."""
    path = os.path.join(run_dir, TRAIN_LOCK)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(path):
    """A blocking exclusive flock on `path` (created if needed) for the `with` block: writers
    of one shared thing (two evaluators updating best/) take turns. Without flock support
    the block runs unlocked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)
