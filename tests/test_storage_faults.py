"""Storage faults on a real small file system (a tmpfs mounted for the test; root, as in CI):
the run dir's disk filling up during a checkpoint write, the run dir turning read-only or
disappearing mid-run, and the disk filling up during an export. Each stops with one
`error: ...` line naming the path; the previous checkpoint and the exported files stay whole.
"""
import os
import re
import shutil
import subprocess
import time

import pytest

from fcn.compat import tf1
import external_tools
from pipeline_fixtures import build_synthetic, run_script
from test_stop_signals import Trainer, _args, _checkpoint_step


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=32)


def _error_line(trainer, code):
    out = trainer.output()
    assert code == 2, out
    assert 'Traceback' not in out, out
    errors = [line for line in trainer.lines if line.startswith('error: ')]
    assert len(errors) == 1 and errors[0] == trainer.lines[-1], out
    return errors[0]


def _wait_for_checkpoint(trainer, run_dir, step, timeout=300):
    deadline = time.monotonic() + timeout
    while tf1.train.latest_checkpoint(run_dir) != os.path.join(run_dir, 'model.ckpt-%d' % step):
        assert trainer.proc.poll() is None and time.monotonic() < deadline, trainer.output()
        time.sleep(0.1)


def test_a_full_disk_during_a_checkpoint_write_names_it_and_keeps_the_previous_one(data_dir, tmp_path):
    with external_tools.tmpfs(tmp_path / 'disk', '14m') as disk:  # the graph, the events and one 6.4 MB checkpoint fit
        run_dir = os.path.join(disk, 'run')
        trainer = Trainer(_args(data_dir, run_dir, 100000, 'train.save_every_steps=5', 'train.keep_checkpoints=5'))
        line = _error_line(trainer, trainer.finish(300))
        kept = tf1.train.latest_checkpoint(run_dir)
        assert kept is not None
        assert line.startswith('error: cannot write %s' % os.path.join(run_dir, 'model.ckpt-')), line
        assert 'no space left on the device (No space left on device); training stopped; the last checkpoint, ' \
               '%s, is kept' % kept in line, line
        for path in tf1.train.get_checkpoint_state(run_dir).all_model_checkpoint_paths:
            _checkpoint_step(path)
        assert not os.path.exists(os.path.join(run_dir, 'train.lock'))


@pytest.mark.parametrize('fault', ['read-only', 'gone'])
def test_a_run_dir_that_turns_read_only_or_disappears_mid_run_is_named(data_dir, tmp_path, fault):
    with external_tools.tmpfs(tmp_path / 'disk', '64m') as disk:
        run_dir = os.path.join(disk, 'run')
        trainer = Trainer(_args(data_dir, run_dir, 100000, 'train.save_every_steps=5'))
        _wait_for_checkpoint(trainer, run_dir, 5)
        if fault == 'read-only':  # a read-only bind mount over the run dir: every new file is refused
            subprocess.run(['mount', '--bind', run_dir, run_dir], check=True)
            subprocess.run(['mount', '-o', 'remount,bind,ro', run_dir], check=True)
        else:
            shutil.rmtree(run_dir)
        line = _error_line(trainer, trainer.finish(300))
        if fault == 'read-only':
            assert line.startswith('error: cannot write %s' % run_dir), line
            assert 'the file system is read-only (Read-only file system); training stopped; the last ' \
                   'checkpoint, %s, is kept' % tf1.train.latest_checkpoint(run_dir) in line, line
            subprocess.run(['umount', '-l', run_dir], check=True)
        else:
            # Which notices first is a race: the run-dir watch (config.yaml gone) or the saver's next write.
            causes = (re.escape('%s no longer exists' % os.path.join(run_dir, 'config.yaml')),
                      'writing ' + re.escape(os.path.join(run_dir, '')) + r'\S+')
            assert re.fullmatch(r'error: the run dir %s is gone \((%s)\); training stopped'
                                % (re.escape(run_dir), '|'.join(causes)), line), line
            assert tf1.train.latest_checkpoint(run_dir) is None  # no checkpoint went on into a new, empty folder


def test_a_full_disk_during_an_export_names_the_file_and_keeps_the_previous_export(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    trainer = Trainer(_args(data_dir, run_dir, 3))
    assert trainer.finish(300) == 0, trainer.output()
    config = _args(data_dir, run_dir, 3)
    with external_tools.tmpfs(tmp_path / 'disk', '8m') as disk:
        model = os.path.join(disk, 'model.pb')
        first = run_script('export.py', *config, '--out', model)
        assert first.returncode == 0, first.stderr
        with open(model, 'rb') as f:
            exported = f.read()
        sidecar = open(os.path.join(disk, 'model.json')).read()
        free = shutil.disk_usage(disk).free
        with open(os.path.join(disk, 'filler'), 'wb') as f:  # leave less room than the model needs
            f.write(b'\0' * (free - len(exported) // 2))
        # another export (with flips: its sidecar differs) to the same path: neither file may change
        again = run_script('export.py', *config, '--set', 'eval.flip=true', '--out', model)
        assert again.returncode == 2, again.stderr
        lines = again.stderr.strip().splitlines()
        assert lines == ['error: cannot write %s (the export): no space left on the device (No space left on '
                         'device)' % model], again.stderr
        with open(model, 'rb') as f:
            assert f.read() == exported
        assert open(os.path.join(disk, 'model.json')).read() == sidecar
        assert sorted(os.listdir(disk)) == ['filler', 'model.json', 'model.pb']  # no .tmp left
