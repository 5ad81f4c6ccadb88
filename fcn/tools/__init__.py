"""The command-line tools, one module each, installed as console scripts (setup.cfg):
fcn-train (train.py), fcn-eval (eval.py), fcn-export (export.py), fcn-build-records
(build_tfrecords.py), fcn-predict (predict.py). The repository's top-level scripts of those
names call the same `main`."""
