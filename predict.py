"""Segment images with an exported model: python predict.py --help (the same tool as the console script fcn-predict; fcn/tools/predict.py)."""
from fcn import cli
from fcn.tools.predict import main

if __name__ == '__main__':
    cli.run_main(main)
