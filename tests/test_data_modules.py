"""The data package's layout: builders are functions of plain values (the build_tfrecords tool,
fcn/tools/build_records.py behind build_tfrecords.py and fcn-build-records, maps its flags to them,
in one table of datasets), description types in fcn.data.spec, no import cycle
between voc and sbd, one reader of summary.json."""
import glob
import importlib
import inspect
import os
import subprocess
import sys

from fcn.data import build, records, spec
from fcn.tools import build_records as cli


def test_builders_take_plain_values_and_the_tool_owns_the_flag_mapping(repo_root):
    [action] = [a for a in cli.make_parser()._actions if a.dest == 'dataset']
    assert list(action.choices) == list(cli.DATASETS)
    for path in sorted(glob.glob(os.path.join(repo_root, 'fcn', 'data', '*.py'))):
        module = importlib.import_module('fcn.data.' + os.path.basename(path)[:-3])
        assert not hasattr(module, 'spec_from_args') and not hasattr(module, 'index_from_args'), path
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__:
                assert 'args' not in inspect.signature(function).parameters, '%s.%s' % (module.__name__, name)
    assert not os.path.exists(os.path.join(repo_root, 'fcn', 'data', 'registry.py'))
    assert 'options' not in inspect.signature(build.build).parameters  # named keywords, not a dict passed down


def test_spec_types_apart_and_no_voc_sbd_cycle(repo_root):
    assert not hasattr(build, 'DATASET_MODULES')
    assert build.Item is spec.Item and build.DatasetSpec is spec.DatasetSpec and build.DatasetError is spec.DatasetError
    for name in ('read_summary', 'write_summary', 'split_info', 'summary_path'):
        assert not hasattr(records, name), name  # summary.json belongs to fcn.data.info
    code = ('import sys, fcn.data.sbd; assert "fcn.data.voc" not in sys.modules, "sbd imports voc"; '
            'import fcn.data.spec; assert "fcn.data.build" not in sys.modules, "spec imports build"')
    result = subprocess.run([sys.executable, '-c', code], cwd=repo_root, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=repo_root))
    assert result.returncode == 0, result.stderr
