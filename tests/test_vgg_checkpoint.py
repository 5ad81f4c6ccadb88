"""The model at width 1.0 has vgg_16.ckpt's names and shapes, and train.py starts from one.

The expected names and shapes are written out here by hand from TF-Slim's released
checkpoint (vgg_16_2016_08_28.tar.gz), not taken from our model code.
"""
import numpy as np
import pytest

from fcn import checkpoints, train_lib
from fcn.compat import tf, tf1
from fcn.nets.fcn import fcn32s
from pipeline_fixtures import build_synthetic, run_script, tiny_config, tiny_overrides

VGG_16_CKPT = {
    'vgg_16/conv1/conv1_1': (3, 3, 3, 64), 'vgg_16/conv1/conv1_2': (3, 3, 64, 64),
    'vgg_16/conv2/conv2_1': (3, 3, 64, 128), 'vgg_16/conv2/conv2_2': (3, 3, 128, 128),
    'vgg_16/conv3/conv3_1': (3, 3, 128, 256), 'vgg_16/conv3/conv3_2': (3, 3, 256, 256),
    'vgg_16/conv3/conv3_3': (3, 3, 256, 256),
    'vgg_16/conv4/conv4_1': (3, 3, 256, 512), 'vgg_16/conv4/conv4_2': (3, 3, 512, 512),
    'vgg_16/conv4/conv4_3': (3, 3, 512, 512),
    'vgg_16/conv5/conv5_1': (3, 3, 512, 512), 'vgg_16/conv5/conv5_2': (3, 3, 512, 512),
    'vgg_16/conv5/conv5_3': (3, 3, 512, 512),
    'vgg_16/fc6': (7, 7, 512, 4096), 'vgg_16/fc7': (1, 1, 4096, 4096), 'vgg_16/fc8': (1, 1, 4096, 1000),
}


def _checkpoint_shapes():
    shapes = {}
    for scope, shape in VGG_16_CKPT.items():
        shapes[scope + '/weights'] = shape
        shapes[scope + '/biases'] = (shape[-1],)
    return shapes


def write_checkpoint(path, shapes, seed=0):
    """Writes a checkpoint holding exactly `shapes` (name -> shape) with random values."""
    rng = np.random.RandomState(seed)
    values = {name: (rng.standard_normal(shape) * 0.01).astype(np.float32) for name, shape in shapes.items()}
    with tf.Graph().as_default():
        variables = [tf1.Variable(value, name=name) for name, value in values.items()]
        saver = tf1.train.Saver(variables)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, path, write_meta_graph=False)
    return values


def test_model_variables_have_the_checkpoint_names_and_shapes():
    with tf.Graph().as_default():
        fcn32s(tf1.placeholder(tf.float32, [1, 64, 64, 3]), num_classes=1000)
        model = {v.op.name: tuple(v.shape.as_list()) for v in tf1.global_variables()
                 if v.op.name.startswith('vgg_16/')}
    assert model == _checkpoint_shapes()


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=2, size=64)


def test_missing_init_checkpoint_is_a_clear_error(records, tmp_path):
    run = run_script('train.py', '--config', 'configs/demo.yaml',
                     *sum([['--set', o] for o in tiny_overrides(records, str(tmp_path / 'run'), 1)], []),
                     '--set', 'init.checkpoint=%s' % (tmp_path / 'nowhere' / 'vgg_16.ckpt'))
    assert run.returncode == 2
    assert 'error: init.checkpoint' in run.stderr and 'nowhere/vgg_16.ckpt' in run.stderr
    assert 'Traceback' not in run.stderr


def test_shape_mismatch_names_the_variable(records, tmp_path):
    ckpt = str(tmp_path / 'small.ckpt')
    shapes = {'vgg_16/conv1/conv1_1/weights': (3, 3, 3, 64)}  # the model at width 0.125 has 8 channels
    write_checkpoint(ckpt, shapes)
    cfg = tiny_config(records, str(tmp_path / 'run'), steps=1, extra=['init.checkpoint=%s' % ckpt])
    with pytest.raises(checkpoints.CheckpointError, match=r'vgg_16/conv1/conv1_1/weights .* shape \[3, 3, 3, 64\] '
                                                          r'but the model expects \[3, 3, 3, 8\]'):
        train_lib.train(cfg, log=lambda *_: None)


def test_missing_variables_need_ignore_missing_vars(records, tmp_path):
    ckpt = str(tmp_path / 'partial.ckpt')
    values = write_checkpoint(ckpt, {'vgg_16/conv1/conv1_1/weights': (3, 3, 3, 8)})
    cfg = tiny_config(records, str(tmp_path / 'run'), steps=1, extra=['init.checkpoint=%s' % ckpt])
    with pytest.raises(checkpoints.CheckpointError, match='ignore_missing_vars'):
        train_lib.train(cfg, log=lambda *_: None)
    cfg = tiny_config(records, str(tmp_path / 'run2'), steps=1,
                      extra=['init.checkpoint=%s' % ckpt, 'init.ignore_missing_vars=true', 'train.learning_rate=0.0'])
    train_lib.train(cfg, log=lambda *_: None)
    reader = tf.train.load_checkpoint(tf1.train.latest_checkpoint(str(tmp_path / 'run2')))
    np.testing.assert_array_equal(reader.get_tensor('vgg_16/conv1/conv1_1/weights'),
                                  values['vgg_16/conv1/conv1_1/weights'])
