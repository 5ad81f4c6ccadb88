"""Train an FCN: python train.py --help (the same tool as the console script fcn-train; fcn/tools/train.py)."""
from fcn import cli
from fcn.tools.train import main

if __name__ == '__main__':
    cli.run_main(main)
