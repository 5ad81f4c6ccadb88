"""Writes that fail because of the storage, not the program: a full disk (ENOSPC), a read-only
or vanished folder. They become one StorageError naming the path and what happened (no
TensorFlow import: TensorFlow's own errors carry the system's message, read by `errno_of`)."""
import errno
import os

REASONS = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'the disk quota is used up',
           errno.EROFS: 'the file system is read-only', errno.EACCES: 'permission denied',
           errno.ENOENT: 'the folder is gone'}
SYSTEM_TEXT = {os.strerror(number): number for number in REASONS}  # 'No space left on device' -> ENOSPC


class StorageError(ValueError):
    """Writing `path` failed for a reason of the storage; the message names both."""


def errno_of(error):
    """The storage errno of an OSError, or of a TensorFlow error whose message carries the
    system's text (e.g. 'No space left on device'); None for any other error."""
    number = getattr(error, 'errno', None)
    if isinstance(number, int) and number in REASONS:
        return number
    text = str(error)
    for system_text, number in SYSTEM_TEXT.items():
        if system_text in text:
            return number
    return None


def error_for(error, path, what):
    """A StorageError for `error` met while writing `path` (`what` is written), or None."""
    number = errno_of(error)
    if number is None:
        return None
    return StorageError('cannot write %s (%s): %s (%s)' % (path, what, REASONS[number], os.strerror(number)))
