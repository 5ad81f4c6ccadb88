"""Tools and environments outside this venv that some tests need (made by .ci/run).

Locally a missing one skips its tests; under CI=true it fails them, since CI installs every one
and a skip there would hide a path that was never exercised.
"""
import contextlib
import os
import subprocess

import pytest


def missing(message):
    """Skip the calling test, or fail it under CI=true."""
    if os.environ.get('CI') == 'true':
        pytest.fail(message)
    pytest.skip(message)


def external_python(variable, what):
    """The Python named by environment `variable` (a venv .ci/run creates)."""
    python = os.environ.get(variable)
    if python and os.path.exists(python):
        return python
    missing('%s is not set to a Python with %s (.ci/run creates it)' % (variable, what))


@contextlib.contextmanager
def tmpfs(folder, size):
    """A tmpfs of `size` (e.g. '12m') mounted at `folder` for the block, as its path (str): a small
    disk to fill (needs root, as CI has)."""
    os.makedirs(folder, exist_ok=True)
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size, 'tmpfs', str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        missing('cannot mount a tmpfs here (%s); CI runs as root and can' % result.stderr.strip())
    try:
        yield str(folder)
    finally:
        subprocess.run(['umount', '-l', str(folder)], capture_output=True)
