"""The one list of datasets build_tfrecords.py knows: --dataset name -> module.

A module either describes a dataset to build (`spec_from_args(args)` -> DatasetSpec, built by
fcn.data.build) or indexes records that exist already (`index_from_args(args)` -> DatasetInfo).
"""
import importlib

DATASETS = {
    'voc': 'fcn.data.voc',
    'synthetic': 'fcn.data.synthetic',
    'coco': 'fcn.data.coco',
    'folder': 'fcn.data.folder',
    'records': 'fcn.data.index_records',
}


def names():
    return list(DATASETS)


def module(name):
    if name not in DATASETS:
        raise KeyError('unknown dataset %r (known: %s)' % (name, ', '.join(DATASETS)))
    return importlib.import_module(DATASETS[name])
