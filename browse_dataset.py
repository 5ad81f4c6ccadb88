"""Look at what the network is fed: python browse_dataset.py --help (the same tool as the console script
fcn-browse-dataset; fcn/tools/browse_dataset.py)."""
from fcn import cli
from fcn.tools.browse_dataset import main

if __name__ == '__main__':
    cli.run_main(main)
