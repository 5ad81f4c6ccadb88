"""Tools and environments outside this venv that some tests need (made by .ci/run).

Locally a missing one skips its tests; under CI=true it fails them, since CI installs every one
and a skip there would hide a path that was never exercised.
"""
import os

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
