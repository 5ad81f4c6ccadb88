"""eval.py without --once says what it waits for, and stops after the final step's checkpoint."""
import os

import pytest

from fcn import eval_lib, train_lib
from fcn.run import Run
from pipeline_fixtures import build_synthetic, run_script, tiny_config, tiny_overrides

EXTRA = ['model.width=0.0625', 'train.crop_size=32', 'train.batch_size=2', 'eval.interval_secs=1']


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=2, size=32)


def test_eval_py_on_a_run_without_checkpoint_says_it_waits(data_dir, tmp_path):
    run_dir = str(tmp_path / 'new-run')
    overrides = tiny_overrides(data_dir, run_dir) + EXTRA
    run = run_script('eval.py', '--config', 'configs/demo.yaml', '--timeout_secs', '1',
                     *sum([['--set', o] for o in overrides], []))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        'weights: raw weights of each new checkpoint',
        'no GPU visible: evaluating on the CPU',
        'waiting for a new checkpoint in %s, checking every 1 s (none there yet)' % run_dir,
        'no new checkpoint in %s for 1 s (eval.timeout_secs): stopping' % run_dir], run.stdout


def test_loop_evaluates_new_checkpoints_and_stops_after_the_final_step(data_dir, tmp_path):
    run_dir = str(tmp_path / 'run')
    train_lib.train(tiny_config(data_dir, run_dir, steps=2, extra=EXTRA), log=lambda *_: None)
    cfg = tiny_config(data_dir, run_dir, steps=4, extra=EXTRA)
    messages = []
    assert eval_lib.evaluate_loop(cfg, progress=False, timeout_secs=1.5, log=messages.append) == 1
    assert messages[:2] == ['weights: raw weights of each new checkpoint', 'no GPU visible: evaluating on the CPU']
    assert messages[2] == 'new best mIoU %.2f%%: %s' % (100 * Run(run_dir).read_best()['miou'], Run(run_dir).best_dir)
    assert messages[3].endswith('step 2: mIoU %.2f%%' % (100 * Run(run_dir).read_best()['miou']))
    assert messages[4:] == ['waiting for a new checkpoint in %s, checking every 1 s' % run_dir,
                            'no new checkpoint in %s for 1.5 s (eval.timeout_secs): stopping' % run_dir]

    train_lib.train(cfg, log=lambda *_: None)  # to the final step, 4
    messages = []
    assert eval_lib.evaluate_loop(cfg, progress=False, log=messages.append) == 1  # no timeout: it must stop itself
    assert messages[-1] == 'step 4 is the final step (train.steps 4): done'
    assert os.path.isfile(os.path.join(run_dir, 'eval', 'metrics-00000004.json'))
