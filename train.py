"""Train an FCN: python train.py --config configs/voc.yaml [--set train.steps=1000 ...]"""
from fcn import cli


def main():
    args = cli.config_parser(__doc__).parse_args()
    cfg = cli.load(args)
    from fcn import cluster, eval_lib, train_lib
    info = cluster.resolve()
    if info is not None and info.task_type == 'evaluator':  # TFJob's evaluator follows the chief's checkpoints
        eval_lib.evaluate_loop(cfg)
    else:
        train_lib.train(cfg, info)


if __name__ == '__main__':
    cli.run_main(main)
