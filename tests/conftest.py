"""Shared test setup: quiet TensorFlow, and run from a temp dir when a test asks for `in_tmp`."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    """Tests name configs/ and scripts relative to the repository root."""
    monkeypatch.chdir(REPO_ROOT)
