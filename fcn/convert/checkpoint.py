"""Writes {name: float32 array} as a TensorFlow V2 checkpoint (`OUT.index` + `OUT.data-00000-of-00001`).

V2 is what every reader takes: `tf.train.load_checkpoint`, `Saver.restore`, init.checkpoint,
predict.py --imagenet and TF 1.x alike (TF-Slim's vgg_16.ckpt is V1, which new TensorFlows read
but no longer write by default). The files are written under a temporary name in the output
folder and renamed into place, so an interrupted run leaves no half checkpoint, and an existing
checkpoint is replaced only with `overwrite`.
"""
import os
import shutil
import tempfile

from fcn.convert.vgg16 import ConvertError

SHARD = '.data-00000-of-00001'


def check_out(path, overwrite):
    """Raises ConvertError unless a checkpoint can be written at prefix `path`."""
    if os.path.isdir(path):
        raise ConvertError('--out %s is a folder: name the checkpoint prefix, e.g. %s'
                           % (path, os.path.join(path, 'vgg_16.ckpt')))
    if os.path.exists(path):
        raise ConvertError('--out %s is an existing file (a V1 checkpoint such as vgg_16.ckpt?); a V2 checkpoint '
                           'there would shadow it: choose another --out' % path)
    if os.path.exists(path + '.index') and not overwrite:
        raise ConvertError('--out %s: %s already exists; pass --overwrite to replace it' % (path, path + '.index'))


def write(tensors, path, overwrite=False):
    """Saves `tensors` at prefix `path` (its folder is created)."""
    from fcn.compat import tf, tf1
    check_out(path, overwrite)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.convert-', dir=folder)
    try:
        prefix = os.path.join(staging, 'ckpt')
        names = sorted(tensors)
        with tf.Graph().as_default():
            inputs = [tf1.placeholder(tf.float32, tensors[name].shape) for name in names]
            save = tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[''] * len(names),
                                     tensors=inputs)
            with tf1.Session() as session:
                session.run(save, dict(zip(inputs, (tensors[name] for name in names))))
        os.replace(prefix + SHARD, path + SHARD)
        os.replace(prefix + '.index', path + '.index')  # last: the checkpoint exists once it is whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
