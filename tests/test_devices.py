"""Which devices train.py and eval.py use, said in their first line; clones never fall back to
the CPU silently; eval, export and predict take GPU memory as needed, the trainer only when asked.

This machine has no GPU: a GPU machine is stood for by stubbing fcn.compat.visible_gpus, the one
call that lists devices (what TensorFlow reports, names from its device details)."""
import os
import re

import numpy as np
import pytest

from fcn import compat, deploy, eval_lib, export, predict_lib, train_lib
from fcn.cluster import runtime
from fcn.compat import tf1
from pipeline_fixtures import build_synthetic, run_script, tiny_config, tiny_overrides

A100 = 'NVIDIA A100-SXM4-40GB'


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2)


@pytest.fixture(scope='module')
def run(data_dir, tmp_path_factory):
    cfg = tiny_config(data_dir, str(tmp_path_factory.mktemp('run') / 'demo'), steps=2)
    train_lib.train(cfg, log=lambda *_: None)
    return cfg


def _set(overrides):
    return [arg for override in overrides for arg in ('--set', override)]


def _report(num_clones, gpus, clone_on_cpu=False):
    return deploy.device_report(deploy.DeploymentConfig(num_clones=num_clones, clone_on_cpu=clone_on_cpu), gpus)


def test_visible_gpus_is_what_tensorflow_lists_here():
    assert compat.visible_gpus() == []  # tests run with CUDA_VISIBLE_DEVICES='' (conftest), no GPU either way


def test_the_device_line_names_the_gpus_and_the_clones():
    assert _report(2, [A100, A100]) == 'GPUs: 2 (%s, %s) -> clones on GPU:0, GPU:1' % (A100, A100)
    assert _report(1, [A100, A100]) == 'GPUs: 2 (%s, %s) -> clones on GPU:0' % (A100, A100)
    assert _report(1, []) == 'no GPU visible: training on the CPU'
    assert _report(2, [], clone_on_cpu=True) == 'no GPU visible: 2 clones on the CPU (deploy.clone_on_cpu)'
    assert _report(1, [A100], clone_on_cpu=True) == 'GPUs: 1 (%s): 1 clone on the CPU (deploy.clone_on_cpu)' % A100
    assert deploy.single_device_report([A100], 'evaluating') == 'GPUs: 1 (%s) -> evaluating on GPU:0' % A100
    assert deploy.single_device_report([], 'evaluating') == 'no GPU visible: evaluating on the CPU'


@pytest.mark.parametrize('num_clones, gpus', [(4, [A100, A100]), (2, [A100]), (2, [])])
def test_more_clones_than_gpus_is_an_error_naming_both_numbers_and_what_to_change(num_clones, gpus, monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', ','.join(str(i) for i in range(len(gpus))))
    with pytest.raises(ValueError) as error:
        _report(num_clones, gpus)
    message = str(error.value)
    assert 'deploy.num_clones is %d but %d GPU' % (num_clones, len(gpus)) in message
    assert 'CUDA_VISIBLE_DEVICES=%s' % os.environ['CUDA_VISIBLE_DEVICES'] in message
    assert 'deploy.clone_on_cpu: true' in message and 'at most %d' % max(len(gpus), 1) in message


def test_train_py_refuses_two_clones_without_gpus_before_writing_anything(data_dir, tmp_path):
    run_dir = tmp_path / 'run'
    result = run_script('train.py', '--config', 'configs/demo.yaml',
                        *_set(tiny_overrides(data_dir, str(run_dir), steps=2) + ['deploy.num_clones=2']))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        'error: deploy.num_clones is 2 but 0 GPUs are visible (CUDA_VISIBLE_DEVICES=): set deploy.num_clones to '
        'at most 1, make more GPUs visible with CUDA_VISIBLE_DEVICES, or set deploy.clone_on_cpu: true to run '
        'the clones on the CPU']
    assert not run_dir.exists()


def test_train_py_and_eval_py_say_first_that_they_run_on_the_cpu(data_dir, tmp_path):
    """(eval.py's first line says which weights: the device comes second.)"""
    overrides = _set(tiny_overrides(data_dir, str(tmp_path / 'run'), steps=1))
    trained = run_script('train.py', '--config', 'configs/demo.yaml', *overrides)
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout.splitlines()[0] == 'no GPU visible: training on the CPU'
    evaluated = run_script('eval.py', '--config', 'configs/demo.yaml', '--once', *overrides)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stdout.splitlines()[0].startswith('weights: raw weights of ')
    assert evaluated.stdout.splitlines()[1] == 'no GPU visible: evaluating on the CPU'
    # stderr is a pipe, as a job's log file: the progress bar is whole lines, not redraws
    assert '\r' not in evaluated.stderr
    assert re.search(r'^eval step 1: 100%\|#+\| (\d+)/\1 \[', evaluated.stderr, re.MULTILINE), evaluated.stderr


def test_the_trainer_logs_the_gpus_first_and_stops_on_too_many_clones(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_lib, 'visible_gpus', lambda: [A100, A100])
    lines = []
    cfg = tiny_config(data_dir, str(tmp_path / 'two'), steps=1, extra=['deploy.num_clones=2'])
    assert train_lib.train(cfg, log=lines.append) == 1  # soft placement runs the GPU clones on this CPU
    assert lines[0] == 'GPUs: 2 (%s, %s) -> clones on GPU:0, GPU:1' % (A100, A100)
    cfg = tiny_config(data_dir, str(tmp_path / 'four'), steps=1, extra=['deploy.num_clones=4'])
    with pytest.raises(ValueError, match='deploy.num_clones is 4 but 2 GPUs'):
        train_lib.train(cfg, log=lines.append)
    assert not (tmp_path / 'four').exists()


class _SessionConfigs:
    """Stands in for tf1.Session and keeps the ConfigProto each session was made with."""

    def __init__(self, monkeypatch):
        self.configs = []
        real = tf1.Session

        def session(*args, **kwargs):
            self.configs.append(kwargs.get('config'))
            return real(*args, **kwargs)
        monkeypatch.setattr(tf1, 'Session', session)


def test_eval_export_and_their_runners_grow_gpu_memory(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(eval_lib, 'visible_gpus', lambda: [A100])
    sessions = _SessionConfigs(monkeypatch)
    eval_lib.evaluate_once(run, progress=False)
    assert capsys.readouterr().out.splitlines()[1] == 'GPUs: 1 (%s) -> evaluating on GPU:0' % A100
    checkpoint = tf1.train.latest_checkpoint(run.train.run_dir)
    pb, model_dir = str(tmp_path / 'model.pb'), str(tmp_path / 'saved' / '1')
    export.export('frozen', run, checkpoint, pb)
    export.export('saved_model', run, checkpoint, model_dir)
    image = np.zeros((40, 56, 3), np.uint8)
    for path in (pb, model_dir):
        assert predict_lib.load_model(path).predict(image).shape == (40, 56)
    assert len(sessions.configs) >= 5  # eval, two exports, two runners
    assert all(config is not None and config.gpu_options.allow_growth for config in sessions.configs)


def test_the_trainer_keeps_tensorflows_gpu_memory_default_unless_configured(data_dir):
    default = tiny_config(data_dir, '/unused')
    assert not train_lib.session_config(default).gpu_options.allow_growth
    grow = tiny_config(data_dir, '/unused', extra=['deploy.gpu_memory_growth=true'])
    config = train_lib.session_config(grow)
    assert config.gpu_options.allow_growth and config.allow_soft_placement
    assert runtime.session_kwargs(None, config)['config'].gpu_options.allow_growth  # what MonitoredTrainingSession gets


def test_a_cluster_tasks_server_holds_deploy_gpu_memory_growth(data_dir, tmp_path, monkeypatch):
    """On a cluster the GPUs are set up by the task's server, not its sessions: the option must
    reach the chief's ServerDef; a ps sees no GPU (a real chief + ps on 127.0.0.1, one process)."""
    from fcn.cluster import roles
    from fcn.launch import free_ports
    servers = {}

    def start_server(info, *args, **kwargs):
        servers[info.task_type] = real_start_server(info, *args, **kwargs)
        return servers[info.task_type]

    real_start_server = runtime.start_server
    monkeypatch.setattr(runtime, 'start_server', start_server)
    chief_port, ps_port = free_ports(2)
    spec = {'chief': ['127.0.0.1:%d' % chief_port], 'ps': ['127.0.0.1:%d' % ps_port]}
    start_server(roles.resolve({'TF_CONFIG': roles.make_tf_config(spec, 'ps', 0)}))
    chief = roles.resolve({'TF_CONFIG': roles.make_tf_config(spec, 'chief', 0)})
    cfg = tiny_config(data_dir, str(tmp_path / 'run'), steps=1, extra=['deploy.gpu_memory_growth=true'])
    assert train_lib.train(cfg, cluster_info=chief, log=lambda *_: None) == 1
    chief_config = servers['chief'].server_def.default_session_config
    assert chief_config.gpu_options.allow_growth and not chief_config.device_count
    ps_config = servers['ps'].server_def.default_session_config
    assert dict(ps_config.device_count) == {'GPU': 0} and not ps_config.gpu_options.allow_growth
