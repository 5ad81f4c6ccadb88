"""Shared test setup: the dependencies are installed, TensorFlow is quiet, tests run from the repo root."""
import importlib.util
import sys
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# import name -> package to install; setup.cfg's install_requires and [test,onnx] extras.
REQUIRED = {'tensorflow': 'tensorflow', 'tf_slim': 'tf-slim', 'cv2': 'opencv-python-headless',
            'PIL': 'pillow', 'yaml': 'pyyaml', 'scipy': 'scipy', 'pycocotools': 'pycocotools',
            'tqdm': 'tqdm', 'skimage': 'scikit-image', 'tf2onnx': 'tf2onnx', 'onnx': 'onnx',
            'onnxruntime': 'onnxruntime'}
# `pytest -m tf_subset` (the pipeline subset .ci/run runs on the older TensorFlows, installed
# with [test] only: the onnx extra's versions go with TensorFlow 2.21) needs no ONNX.
SUBSET_MARKER = 'tf_subset'
ONNX_MODULES = ('tf2onnx', 'onnx', 'onnxruntime')
ONNX_TEST_FILES = ('test_export_onnx_tflite.py',)  # import ONNX at the top: not collected by the subset


def pytest_configure(config):
    """One clear message instead of an ImportError per test module when the suite runs in a
    Python without the project installed."""
    needed = {module: package for module, package in REQUIRED.items()
              if not (config.getoption('markexpr') == SUBSET_MARKER and module in ONNX_MODULES)}
    missing = sorted(package for module, package in needed.items() if importlib.util.find_spec(module) is None)
    if missing:
        raise pytest.UsageError(
            'this Python (%s) lacks %s. Install the project and its test extras first:\n'
            '  python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test,onnx]" && python -m pytest -q'
            % (sys.executable, ', '.join(missing)))


def pytest_ignore_collect(collection_path, config):
    if config.getoption('markexpr') == SUBSET_MARKER and collection_path.name in ONNX_TEST_FILES:
        return True
    return None


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    """Tests name configs/ and scripts relative to the repository root."""
    monkeypatch.chdir(REPO_ROOT)
