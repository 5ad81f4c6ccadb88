"""Train an FCN: python train.py --config configs/voc.yaml [--set train.steps=1000 ...]

In a cluster job (TF_CONFIG or a Slurm step) the process's role decides what it does:
ps tasks serve variables, the evaluator evaluates, chief and workers train (fcn/task.py).
"""
import os

from fcn import cli, config, stopping


def main():
    with stopping.StopSignals() as signals:  # first: a SIGTERM while TensorFlow loads stops cleanly too
        args = cli.config_parser(__doc__).parse_args()
        cfg = cli.load(args)
        from fcn import task
        from fcn.cluster import roles
        info = roles.resolve()
        gpus = roles.slurm_gpus_per_task(os.environ, info)
        if gpus and not config.sets_key(args.config, args.overrides, 'deploy.num_clones'):
            # one clone per GPU Slurm gives this task, unless the config or --set says otherwise
            cfg = config.load_config(args.config, ['deploy.num_clones=%d' % gpus] + args.overrides)
        task.run(cfg, info, signals=signals)


def run():
    """The console script fcn-train."""
    cli.run_main(main)
