"""Train an FCN: python train.py --config configs/voc.yaml [--set train.steps=1000 ...]"""
from fcn import cli


def main():
    args = cli.config_parser(__doc__).parse_args()
    cfg = cli.load(args)
    from fcn import train_lib
    train_lib.train(cfg)


if __name__ == '__main__':
    cli.run_main(main)
