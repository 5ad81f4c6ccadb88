"""Deploy without TensorFlow: predict.py with a .tflite (LiteRT) or .onnx (ONNX Runtime) model in
a venv that has no TensorFlow gives the class ids that predict.py gives next to TensorFlow (its
decoder, the record JPEGs' pixels). The venv is .ci/run's (FCN_LITE_PYTHON): the README's
"Deploy without TensorFlow" install."""
import os
import subprocess

import numpy as np
import pytest

from datasets_fixtures import read_examples
from external_tools import external_python
from fcn.data.palette import read_index_png
from fcn.export import export
from inference_fixtures import random_checkpoint
from pipeline_fixtures import REPO_ROOT, build_synthetic, run_script, tiny_config

NUM_CLASSES = 5
SIZE = 64


@pytest.fixture(scope='module')
def deployed(tmp_path_factory):
    """(photos folder, {format: model path}) of a random model, exported as ONNX and TFLite."""
    external_python('FCN_LITE_PYTHON', 'no TensorFlow, LiteRT and ONNX Runtime')
    data_dir = build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=4, size=SIZE)
    cfg = tiny_config(data_dir, str(tmp_path_factory.mktemp('run') / 'run'))
    checkpoint = random_checkpoint(cfg, NUM_CLASSES)
    models = tmp_path_factory.mktemp('models')
    paths = {'onnx': str(models / 'model.onnx'), 'tflite': str(models / 'model.tflite')}
    export('onnx', cfg, checkpoint, paths['onnx'])
    export('tflite', cfg, checkpoint, paths['tflite'], input_size=(SIZE, SIZE))
    photos = tmp_path_factory.mktemp('photos')
    for ex in read_examples(data_dir, 'val'):
        assert ex['format'] == 'jpeg'
        (photos / (ex['filename'] + '.jpg')).write_bytes(ex['image_bytes'])
    return str(photos), paths


def _lite(*args, cwd=None):
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env['PYTHONPATH'] = REPO_ROOT  # this checkout's fcn, the venv's everything else
    python = external_python('FCN_LITE_PYTHON', 'no TensorFlow, LiteRT and ONNX Runtime')
    return subprocess.run([python] + list(args), cwd=cwd or REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _ids(folder):
    return {name: read_index_png(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
            if not name.endswith('_overlay.png')}


def test_the_lite_venv_has_no_tensorflow_but_litert_and_onnxruntime(deployed):
    run = _lite('-c', 'import importlib.util as u; print([bool(u.find_spec(m)) for m in '
                '("tensorflow", "tf_slim", "ai_edge_litert", "onnxruntime", "simplejpeg")])')
    assert run.returncode == 0, run.stderr
    assert run.stdout.split('\n')[0] == '[False, False, True, True, True]'


@pytest.mark.parametrize('fmt', ['tflite', 'onnx'])
def test_predict_without_tensorflow_gives_the_ids_of_predict_with_it(deployed, fmt, tmp_path):
    photos, paths = deployed
    with_tf = run_script('predict.py', '--model', paths[fmt], '--out', str(tmp_path / 'tf'), photos)
    assert with_tf.returncode == 0, with_tf.stderr
    code = ('import runpy, sys\n'
            'sys.argv = ["predict.py"] + sys.argv[1:]\n'
            'try:\n'
            '    runpy.run_path("predict.py", run_name="__main__")\n'
            'finally:\n'
            '    assert "tensorflow" not in sys.modules\n'
            '    from fcn.export import tflite_runner\n'
            '    print("litert" if "ai_edge_litert" in sys.modules else "other")\n')
    without = _lite('-c', code, '--model', paths[fmt], '--out', str(tmp_path / 'lite'), photos)
    assert without.returncode == 0, without.stdout + without.stderr
    if fmt == 'tflite':
        assert without.stdout.strip().endswith('litert')  # the TFLite runner ran on LiteRT
    expected, got = _ids(str(tmp_path / 'tf')), _ids(str(tmp_path / 'lite'))
    assert sorted(got) == sorted(expected) and len(got) == 4
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert len(np.unique(np.concatenate([ids.ravel() for ids in got.values()]))) >= 2  # not one flat class


@pytest.mark.parametrize('fmt', ['tflite', 'onnx'])
def test_predict_without_tensorflow_turns_a_jpeg_with_an_exif_orientation_upright(deployed, fmt, tmp_path):
    """A val photo re-saved by Pillow with EXIF orientation 6: in the lite venv its ids are those
    of its upright pixels (a lossless PNG of TensorFlow's decode turned clockwise), as with TensorFlow."""
    from PIL import Image
    from fcn import image_decoder, orientation
    photos, paths = deployed
    turned_dir = tmp_path / 'photos'
    turned_dir.mkdir()
    source = sorted(os.listdir(photos))[0]
    with Image.open(os.path.join(photos, source)) as image:
        exif = Image.Exif()
        exif[orientation.TAG] = 6
        image.save(str(turned_dir / 'turned.jpg'), quality=95, exif=exif.tobytes())
    decoder = image_decoder.TFDecoder()
    try:
        raw = decoder.decode((turned_dir / 'turned.jpg').read_bytes())
    finally:
        decoder.close()
    Image.fromarray(np.rot90(raw, -1)).save(str(turned_dir / 'upright.png'))
    Image.fromarray(raw).save(str(turned_dir / 'raw.png'))
    without = _lite('predict.py', '--model', paths[fmt], '--out', str(tmp_path / 'lite'), str(turned_dir))
    assert without.returncode == 0, without.stdout + without.stderr
    with_tf = run_script('predict.py', '--model', paths[fmt], '--out', str(tmp_path / 'tf'), str(turned_dir))
    assert with_tf.returncode == 0, with_tf.stderr
    lite, tf_ids = _ids(str(tmp_path / 'lite')), _ids(str(tmp_path / 'tf'))
    np.testing.assert_array_equal(lite['turned.png'], lite['upright.png'])
    np.testing.assert_array_equal(lite['turned.png'], tf_ids['turned.png'])
    assert not np.array_equal(lite['raw.png'], lite['upright.png'])  # the turn changes the ids: the test can fail
