"""A checkpoint of a random model, for tests of what exported models and eval predict.

A few-step training run predicts background almost everywhere, which would make equality
checks between formats vacuous: here the trunk keeps its initialisation and the score and
upsampling layers are random, so the class ids vary from pixel to pixel."""
import os

import numpy as np

from fcn.compat import tf, tf1
from fcn import options
from fcn.nets.fcn import build_model


def random_checkpoint(cfg, num_classes, step=1, seed=1):
    """Saves cfg.train.run_dir/model.ckpt-STEP (relative paths: the run dir can be copied)."""
    with tf.Graph().as_default():
        tf1.set_random_seed(seed)
        build_model(tf1.placeholder(tf.float32, [1, None, None, 3]), options.model(cfg), num_classes, is_training=False)
        global_step = tf1.train.get_or_create_global_step()
        rng = np.random.RandomState(seed)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for var in tf1.global_variables():
                if var.op.name.startswith(('vgg_16/fc8/', 'fcn/')):
                    var.load(rng.normal(0.0, 0.5, var.shape.as_list()).astype(np.float32), sess)
            global_step.load(step, sess)
            saver = tf1.train.Saver(save_relative_paths=True)
            return saver.save(sess, os.path.join(cfg.train.run_dir, 'model.ckpt'), global_step=step)
