"""What this process of a job does, decided in one place from its role (fcn.cluster.roles):

    ps          serves variables until the chief writes <train.run_dir>/cluster.done (also
                after SIGTERM / SIGUSR1: the chief's last checkpoint is read from it, fcn.stopping)
    evaluator   evaluates each new checkpoint of the run (TFJob's evaluator; not in the cluster)
    chief, worker, or a single process (no cluster)   trains (fcn.train_lib.train)
"""
import contextlib
import time

from fcn import stopping
from fcn.cluster import done, roles


def run(cfg, cluster_info=None, log=print, signals=None):
    """Runs this process's part of the job; returns the trainer's final global step (None
    for a ps or an evaluator). `signals`: an active fcn.stopping.StopSignals, entered by
    train.py before anything slow (a SIGTERM during the start-up is kept, not fatal)."""
    role = None if cluster_info is None else cluster_info.task_type
    if role == 'ps':
        return serve_parameters(cfg, cluster_info, log, signals)
    if role == 'evaluator':
        if signals is not None:  # nothing to keep: end at once
            signals.on_stop(lambda signum: stopping.exit_now('evaluator stopped by %s' % stopping.signal_name(signum),
                                                             stopping.exit_status(signum)))
        from fcn import eval_lib
        eval_lib.evaluate_loop(cfg)
        return None
    from fcn import train_lib
    return train_lib.train(cfg, cluster_info, log=log, signals=signals)


def serve_parameters(cfg, cluster_info, log=print, signals=None):
    """A ps task: starts its server and serves until the chief is done."""
    if cluster_info.task_type != 'ps':
        raise roles.ClusterError('only a ps task serves parameters; this task is %s:%d'
                                 % (cluster_info.task_type, cluster_info.task_index))
    from fcn.cluster import runtime
    server = runtime.start_server(cluster_info)
    log('ps %d serving at %s until the chief is done' % (cluster_info.task_index, cluster_info.address))
    done_file = done.done_file(cfg.train.run_dir)
    with contextlib.ExitStack() as stack:
        signals = signals or stack.enter_context(stopping.StopSignals())
        # stopped: serve until the chief has saved its checkpoint (read from here)
        signals.on_stop(stopping.end_with_the_chief(done_file, time.time(), 'ps %d' % cluster_info.task_index))
        runtime.serve_forever(server, done_file)
