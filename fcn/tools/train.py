"""Train an FCN: python train.py --config configs/voc.yaml [--set train.steps=1000 ...]

In a cluster job (TF_CONFIG or a Slurm step) the process's role decides what it does:
ps tasks serve variables, the evaluator evaluates, chief and workers train (fcn/task.py).
"""
from fcn import cli


def main():
    args = cli.config_parser(__doc__).parse_args()
    cfg = cli.load(args)
    from fcn import task
    from fcn.cluster import roles
    task.run(cfg, roles.resolve())


def run():
    """The console script fcn-train."""
    cli.run_main(main)
