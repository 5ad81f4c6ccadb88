"""Train an FCN: python train.py --config configs/voc.yaml [--set train.steps=1000 ...]

In a cluster job (TF_CONFIG or a Slurm step) the process's role decides what it does:
ps tasks serve variables, the evaluator evaluates, chief and workers train (fcn/task.py).
"""
from fcn import cli, stopping


def main():
    with stopping.StopSignals() as signals:  # first: a SIGTERM while TensorFlow loads stops cleanly too
        args = cli.config_parser(__doc__).parse_args()
        cfg = cli.load(args)
        from fcn import task
        from fcn.cluster import roles
        task.run(cfg, roles.resolve(), signals=signals)


def run():
    """The console script fcn-train."""
    cli.run_main(main)
