"""Evaluate an FCN: python eval.py --help (the same tool as the console script fcn-eval; fcn/tools/eval.py)."""
from fcn import cli
from fcn.tools.eval import main

if __name__ == '__main__':
    cli.run_main(main)
