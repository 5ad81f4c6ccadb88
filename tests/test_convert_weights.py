"""convert_weights.py on files written by the real libraries: torchvision's vgg16 state dict
(`torch.save(model.state_dict())`), Keras 3's `VGG16.save_weights` (.weights.h5) and TensorFlow
2.15's Keras 2 (.h5). The converted checkpoint is loaded into tf_slim's own
`tf_slim.nets.vgg.vgg_16`; on the same image its logits match the source library's forward pass.

torchvision runs in its own venv (FCN_TORCHVISION_PYTHON; PyPI's torchvision needs PyPI's torch,
not the `convert` extra's CPU build), Keras 2 in TensorFlow 2.15's (FCN_TF215_PYTHON); .ci/run
creates both, and under CI=true a missing one fails its tests instead of skipping them. The
libraries run in child processes (tests/convert_sources.py): PyTorch and TensorFlow stay apart.

The border effect of the fold (fcn/convert/fold.py) measured on torchvision's file here: logits'
relative error 1.3e-4 (2.7e-6 when torchvision pads with the VGG mean as vgg_16 does).
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from tf_slim.nets import vgg as slim_vgg

from fcn import checkpoints
from fcn.compat import tf, tf1
from fcn.convert import fold, main as convert, vgg16
from fcn.convert.vgg16 import ConvertError
from fcn.nets.vgg import MEAN_RGB
from external_tools import external_python, missing
from pipeline_fixtures import build_synthetic, fine_tune_one_step, run_script

SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'convert_sources.py')
CROP = 224
RELATIVE_ERROR = 1e-3


def torch_python():
    """This Python when it has PyTorch (the `convert` extra, as .ci/run installs)."""
    if importlib.util.find_spec('torch') is not None:
        return sys.executable
    missing('PyTorch is not installed: .ci/run installs the convert extra (pip install -e ".[convert]")')


def run_source(python, *args):
    run = subprocess.run([python, SOURCES] + [str(a) for a in args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A real photo (scikit-image's cat), its central 256 x 256 (uint8 RGB), and the .npy of its
    224 x 224 centre, TF-Slim's eval crop of it."""
    photo = skimage.data.chelsea()
    top, left = (photo.shape[0] - 256) // 2, (photo.shape[1] - 256) // 2
    square = np.ascontiguousarray(photo[top:top + 256, left:left + 256])
    path = str(tmp_path_factory.mktemp('image') / 'crop.npy')
    np.save(path, square[16:16 + CROP, 16:16 + CROP])
    return square, path


def slim_logits(checkpoint, crop):
    """tf_slim.nets.vgg.vgg_16 (the library's own graph) restored from `checkpoint` on RGB minus the mean."""
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, CROP, CROP, 3])
        logits, _ = slim_vgg.vgg_16(inputs - tf.constant(MEAN_RGB), num_classes=1000, is_training=False)
        with tf1.Session() as session:
            variables = {v.op.name: v for v in tf1.global_variables()}
            checkpoints.check_shapes(checkpoint, variables)  # Saver.restore does not (TF 2.21)
            tf1.train.Saver(variables).restore(session, checkpoint)
            return session.run(logits, {inputs: crop[None].astype(np.float32)})[0]


def assert_same_logits(logits, expected):
    relative = np.linalg.norm(logits - expected) / np.linalg.norm(expected)
    assert relative < RELATIVE_ERROR, relative
    assert list(np.argsort(-logits)[:5]) == list(np.argsort(-expected)[:5])
    assert np.ptp(expected) > 1e-2  # real scores, not a constant


@pytest.fixture(scope='module')
def torchvision_converted(image, tmp_path_factory):
    """(converted checkpoint, torchvision's logits on the crop) from a real vgg16 state dict."""
    python = external_python('FCN_TORCHVISION_PYTHON', 'torch and torchvision')
    folder = tmp_path_factory.mktemp('torchvision')
    pth, logits = folder / 'vgg16.pth', folder / 'logits.npy'
    run_source(python, 'torchvision', pth, image[1], logits)
    out = str(folder / 'converted' / 'vgg_16.ckpt')
    lines = []
    convert.convert('torchvision', str(pth), out, torch_python=torch_python(), log=lines.append)
    os.remove(pth)
    return out, np.load(logits), lines


def test_torchvision_vgg16_converted_gives_torchvisions_logits_in_tf_slims_vgg_16(torchvision_converted, image):
    out, expected, lines = torchvision_converted
    shapes = tf.train.load_checkpoint(out).get_variable_to_shape_map()
    assert shapes == {layer.scope + '/weights': list(vgg16.slim_shape(layer)) for layer in vgg16.LAYERS} | {
        layer.scope + '/biases': [layer.out_channels] for layer in vgg16.LAYERS}
    assert os.path.exists(out + '.index') and not os.path.exists(out)  # V2
    assert_same_logits(slim_logits(out, np.load(image[1])), expected)
    assert any('at most' in line and '(123.675, 116.280, 103.530)' in line for line in lines), lines


def test_predict_imagenet_takes_the_converted_checkpoint(torchvision_converted, image, tmp_path):
    """predict.py --imagenet (fc6 as a SAME 7x7 conv, the centre cell of a 256 x 256 image's
    central crop) prints torchvision's top-5."""
    from PIL import Image
    out, expected, _ = torchvision_converted
    path = str(tmp_path / 'cat.png')
    Image.fromarray(image[0]).save(path)
    run = run_script('predict.py', '--imagenet', '--config', 'configs/imagenet.yaml', '--checkpoint', out,
                     '--out', str(tmp_path / 'out'), path)
    assert run.returncode == 0, run.stderr
    printed = [int(line.rsplit('(class ', 1)[1].rstrip(')')) for line in run.stdout.splitlines()[1:6]]
    assert printed == list(np.argsort(-expected)[:5])


def test_fcn32s_fine_tunes_from_the_converted_checkpoint(torchvision_converted, tmp_path):
    """init.checkpoint takes the converted file: the trunk (conv1_1 ... fc7) is restored bit-exact,
    fc8 re-initialised for the dataset's classes."""
    out, _, _ = torchvision_converted
    records = build_synthetic(tmp_path / 'records', num_train=2, num_val=1, size=32)
    messages, source, trained = fine_tune_one_step(records, str(tmp_path / 'run'), out)
    assert 'initialising from %s' % out in messages
    for layer in vgg16.LAYERS[:-1]:
        for kind in ('weights', 'biases'):
            name = '%s/%s' % (layer.scope, kind)
            np.testing.assert_array_equal(trained.get_tensor(name), source.get_tensor(name))
    assert trained.get_variable_to_shape_map()['vgg_16/fc8/weights'] == [1, 1, 4096, 5]


@pytest.fixture(scope='module')
def keras3_converted(image, tmp_path_factory):
    """(converted checkpoint, Keras's logits, Keras's weights .npz) from a real VGG16 .weights.h5."""
    folder = tmp_path_factory.mktemp('keras3')
    h5, logits, weights = folder / 'vgg16.weights.h5', folder / 'logits.npy', folder / 'weights.npz'
    run_source(sys.executable, 'keras3', h5, image[1], logits, weights)
    out = str(folder / 'vgg_16.ckpt')
    convert.convert('keras', str(h5), out, log=lambda *_: None)
    os.remove(h5)
    return out, np.load(logits), str(weights)


def test_keras3_vgg16_converted_gives_keras_logits_in_tf_slims_vgg_16(keras3_converted, image):
    out, expected, _ = keras3_converted
    assert_same_logits(slim_logits(out, np.load(image[1])), expected)


def test_keras2_h5_of_the_same_weights_converts_to_the_same_checkpoint(keras3_converted, tmp_path):
    """TensorFlow 2.15's Keras 2 writes the other HDF5 layout (layer_names, weight_names), by
    save_weights and, under model_weights, by model.save; the same weights give the Keras 3
    file's checkpoint, tensor for tensor."""
    python = external_python('FCN_TF215_PYTHON', 'TensorFlow 2.15 (Keras 2)')
    keras3_out, _, weights = keras3_converted
    theirs = tf.train.load_checkpoint(keras3_out)
    run_source(python, 'keras2', tmp_path / 'vgg16.h5', weights, tmp_path / 'whole_model.h5')
    for h5 in ('vgg16.h5', 'whole_model.h5'):
        out = str(tmp_path / (h5 + '.ckpt'))
        convert.convert('keras', str(tmp_path / h5), out, log=lambda *_: None)
        os.remove(tmp_path / h5)
        ours = tf.train.load_checkpoint(out)
        names = ours.get_variable_to_shape_map()
        assert len(names) == 32 and names == theirs.get_variable_to_shape_map()
        for name in names:
            np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name))
        os.remove(out + '.data-00000-of-00001')


# ----------------------------------------------------------------------------- the fold, small

@pytest.mark.parametrize('convention', [fold.TORCHVISION, fold.KERAS_CAFFE], ids=lambda c: c.name)
def test_fold_is_exact_inside_and_border_error_bounds_the_border(convention):
    """conv1_1 (SAME) of the source's input vs the folded conv1_1 of vgg_16's input: equal where
    the window is inside the image; at the border they differ, by at most `border_error`, which
    is reached."""
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 256, (1, 12, 12, 3)).astype(np.float64)
    weights, biases = rng.standard_normal((3, 3, 3, 8)) * 0.2, rng.standard_normal(8) * 0.1
    channels, std = list(convention.channels), np.asarray(convention.std)
    source_input = (pixels[..., channels] * convention.scale - np.asarray(convention.mean)) / std
    folded_weights, folded_biases = fold.fold_first_conv(weights, biases, convention)
    with tf.Graph().as_default(), tf1.Session() as session:
        source, folded = session.run([
            tf.nn.conv2d(source_input, weights, 1, 'SAME') + biases,
            tf.nn.conv2d(pixels - np.asarray(MEAN_RGB), folded_weights.astype(np.float64), 1, 'SAME')
            + folded_biases])
    difference = np.abs(folded - source)[0]
    np.testing.assert_allclose(difference[1:-1, 1:-1], 0, atol=1e-4)
    bound = fold.border_error(weights, convention)
    assert difference.max() <= bound * (1 + 1e-5) + 1e-5 and difference.max() >= 0.99 * bound - 1e-5
    assert bound > 0


def test_padding_pixels_are_each_librarys_zero():
    np.testing.assert_allclose(fold.TORCHVISION.padding_pixel(), [123.675, 116.28, 103.53])
    np.testing.assert_allclose(fold.KERAS_CAFFE.padding_pixel(), [123.68, 116.779, 103.939])


def test_take_names_an_unexpected_tensor():
    arrays = {'a': np.zeros(2), 'b.running_mean': np.zeros(1)}
    with pytest.raises(ConvertError, match=r'f.pth is not VGG: it also holds b.running_mean'):
        vgg16.take(arrays, [('a', (2,))], 'f.pth', 'VGG')


# ----------------------------------------------------------------------------- bad input

@pytest.fixture(scope='module')
def bad_pth(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bad_pth')
    run_source(torch_python(), 'torch-bad-files', folder)
    (folder / 'text.pth').write_text('not a pickle')
    return folder


@pytest.mark.parametrize('name, message', [
    ('missing_bias.pth', r"missing_bias.pth is not torchvision's VGG-16 state dict .*: features.0.bias is missing"),
    ('misshaped.pth', r'misshaped.pth is not .*: features.0.bias has shape \[32\], expected \[64\]'),
    ('list.pth', r'list.pth is not .*: it holds a list, not a dict of tensors'),
    ('with_epoch.pth', r"with_epoch.pth is not .*: key 'epoch' holds a int, not a tensor"),
    ('text.pth', r'text.pth cannot be read as a PyTorch file'),
])
def test_a_pth_that_is_not_a_vgg16_state_dict_is_named(bad_pth, name, message, tmp_path):
    with pytest.raises(ConvertError, match=message):
        convert.convert('torchvision', str(bad_pth / name), str(tmp_path / 'out.ckpt'), torch_python=torch_python())
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize('name, reason', [('whole_module.pth', 'torch.nn.modules.conv.Conv2d'),
                                          ('runs_code.pth', 'system')])
def test_a_pth_that_needs_more_than_weights_only_is_refused_and_runs_nothing(bad_pth, name, reason, tmp_path):
    with pytest.raises(ConvertError, match=r'%s is refused: torch.load\(weights_only=True\) does not load it '
                                           r'\(.*%s.*\)\. A .pth is a pickle' % (name, reason)):
        convert.convert('torchvision', str(bad_pth / name), str(tmp_path / 'out.ckpt'), torch_python=torch_python())
    assert not (bad_pth / 'code_ran').exists()


def test_the_command_prints_one_error_line_and_keeps_an_existing_checkpoint(bad_pth, tmp_path):
    run = run_script('convert_weights.py', '--from', 'torchvision', str(bad_pth / 'runs_code.pth'),
                     '--out', str(tmp_path / 'out.ckpt'), '--torch-python', torch_python())
    assert run.returncode == 2 and run.stderr.startswith('error: ') and 'Traceback' not in run.stderr, run.stderr
    assert 'runs_code.pth is refused' in run.stderr
    (tmp_path / 'out.ckpt.index').write_text('kept')
    with pytest.raises(ConvertError, match='out.ckpt.index already exists; pass --overwrite'):
        convert.convert('torchvision', str(bad_pth / 'missing_bias.pth'), str(tmp_path / 'out.ckpt'))
    assert (tmp_path / 'out.ckpt.index').read_text() == 'kept'


def test_a_python_without_torch_is_named(bad_pth, tmp_path):
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(tmp_path / 'venv')], check=True)
    python = str(tmp_path / 'venv' / 'bin' / 'python')
    with pytest.raises(ConvertError, match=r'reading .*missing_bias.pth needs PyTorch, which %s cannot import'
                                           % python):
        convert.convert('torchvision', str(bad_pth / 'missing_bias.pth'), str(tmp_path / 'o.ckpt'),
                        torch_python=python)


@pytest.fixture(scope='module')
def bad_h5(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bad_h5')
    run_source(sys.executable, 'keras-bad-files', folder)
    (folder / 'text.h5').write_text('not HDF5')
    return folder


@pytest.mark.parametrize('name, message', [
    ('notop.weights.h5', r"notop.weights.h5 is not Keras's VGG16 .*: fc1/kernel is missing \(an include_top=False"),
    ('narrow.weights.h5', r'narrow.weights.h5 is not .*: block1_conv1/kernel has shape \[3, 3, 3, 32\], '
                          r'expected \[3, 3, 3, 64\]'),
    ('text.h5', r'text.h5 is not an HDF5 file Keras wrote'),
])
def test_an_h5_that_is_not_vgg16s_weights_is_named(bad_h5, name, message, tmp_path):
    with pytest.raises(ConvertError, match=message):
        convert.convert('keras', str(bad_h5 / name), str(tmp_path / 'out.ckpt'))
    assert not os.listdir(tmp_path)


def test_out_must_not_shadow_a_v1_file(tmp_path):
    (tmp_path / 'vgg_16.ckpt').write_text('V1')
    with pytest.raises(ConvertError, match='existing file .*would shadow it'):
        convert.convert('keras', 'any.h5', str(tmp_path / 'vgg_16.ckpt'))
