"""python -m fcn.fetch NAME... (the same tool as fcn-fetch)."""
from fcn.fetch.main import run

run()
