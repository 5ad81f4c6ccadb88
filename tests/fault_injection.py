"""Runs a top-level script and SIGKILLs it in the middle of writing a chosen file.

    python tests/fault_injection.py MODE SCRIPT [ARGS...]

MODE is `write:SUBSTR` (the first file opened for writing whose path contains SUBSTR gets
half of its first write, then the process kills itself) or `copy:SUBSTR` (shutil.copyfile to
a path containing SUBSTR copies half the bytes, then kills). SIGKILL: no `finally`, no
atexit, exactly what a power cut or the OOM killer leaves behind.
"""
import builtins
import os
import runpy
import shutil
import signal
import sys


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


class _HalfWriter:
    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[:len(data) // 2])
        self._f.flush()
        os.fsync(self._f.fileno())
        _die()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def install(mode):
    kind, substr = mode.split(':', 1)
    if kind == 'write':
        real_open = builtins.open

        def open_(file, mode='r', *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if any(c in mode for c in 'wax') and substr in str(file):
                return _HalfWriter(f)
            return f
        builtins.open = open_
    elif kind == 'copy':
        real_copy = shutil.copyfile

        def copyfile(src, dst, *args, **kwargs):
            if substr not in str(dst):
                return real_copy(src, dst, *args, **kwargs)
            with open(src, 'rb') as f:
                data = f.read()
            with open(dst, 'wb') as f:
                f.write(data[:len(data) // 2])
            _die()
        shutil.copyfile = copyfile
    else:
        raise SystemExit('unknown fault mode %r' % mode)


if __name__ == '__main__':
    install(sys.argv[1])
    script = sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name='__main__')
