"""Export a trained model: python export.py --help (the same tool as the console script fcn-export; fcn/tools/export.py)."""
from fcn import cli
from fcn.tools.export import main

if __name__ == '__main__':
    cli.run_main(main)
