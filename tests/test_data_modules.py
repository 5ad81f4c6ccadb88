"""The data package's layout: description types in fcn.data.spec, one registry of datasets, no
import cycle between voc and sbd, one reader of summary.json."""
import os
import subprocess
import sys

from fcn.data import build, records, registry, spec


def test_one_registry_spec_types_apart_and_no_voc_sbd_cycle(repo_root):
    import importlib.util
    loader = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(repo_root, 'build_tfrecords.py'))
    cli = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(cli)
    [action] = [a for a in cli.make_parser()._actions if a.dest == 'dataset']
    assert list(action.choices) == registry.names()
    for name in registry.names():
        module = registry.module(name)
        assert hasattr(module, 'spec_from_args') or hasattr(module, 'index_from_args'), name
    assert not hasattr(build, 'DATASET_MODULES')
    assert build.Item is spec.Item and build.DatasetSpec is spec.DatasetSpec and build.DatasetError is spec.DatasetError
    for name in ('read_summary', 'write_summary', 'split_info', 'summary_path'):
        assert not hasattr(records, name), name  # summary.json belongs to fcn.data.info
    code = ('import sys, fcn.data.sbd; assert "fcn.data.voc" not in sys.modules, "sbd imports voc"; '
            'import fcn.data.spec; assert "fcn.data.build" not in sys.modules, "spec imports build"')
    result = subprocess.run([sys.executable, '-c', code], cwd=repo_root, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=repo_root))
    assert result.returncode == 0, result.stderr
