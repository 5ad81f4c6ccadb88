"""Download, check and unpack datasets and weights: python fetch.py --help (the same tool as the console
script fcn-fetch and `python -m fcn.fetch`; fcn/fetch/main.py)."""
from fcn.fetch.main import run

if __name__ == '__main__':
    run()
