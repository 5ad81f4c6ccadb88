"""predict.py and eval.py --save_predictions: files and folders in, any exported format, never
writing over an input or an earlier result, distinct outputs for one stem, and a record's JPEG
gets exactly the class ids eval measured (TensorFlow's decoder, not OpenCV's)."""
import os
import shutil

import cv2
import numpy as np
import pytest

from datasets_fixtures import read_examples
from fcn import eval_lib, image_decoder, predict_lib
from fcn.data.palette import read_index_png
from fcn.export import export_source
from fcn.export import frozen
from inference_fixtures import random_checkpoint
from pipeline_fixtures import build_synthetic, run_script, tiny_config, tiny_overrides

NUM_CLASSES = 5


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """(cfg, checkpoint, model.pb) of a random model; val images 64 px, eval.flip on."""
    data_dir = build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=3, size=64)
    run_dir = str(tmp_path_factory.mktemp('run') / 'run')
    cfg = tiny_config(data_dir, run_dir, extra=['eval.flip=true'])
    checkpoint = random_checkpoint(cfg, NUM_CLASSES)
    model_path = str(tmp_path_factory.mktemp('model') / 'model.pb')
    frozen.export(export_source(cfg, checkpoint), model_path)
    return cfg, checkpoint, model_path


def test_a_record_jpeg_gets_the_class_ids_eval_saved(run, tmp_path):
    cfg, checkpoint, model_path = run
    run_dir = str(tmp_path / 'run')
    shutil.copytree(cfg.train.run_dir, run_dir)
    overrides = tiny_overrides(cfg.data.dir, run_dir) + ['eval.flip=true']
    result = run_script('eval.py', '--config', 'configs/demo.yaml', '--once', '--save_predictions',
                        *[arg for o in overrides for arg in ('--set', o)])
    assert result.returncode == 0, result.stderr
    saved_dir = os.path.join(run_dir, 'eval', 'predictions-00000001')
    assert 'predictions written to %s' % saved_dir in result.stdout

    examples = read_examples(cfg.data.dir, 'val')
    assert sorted(os.listdir(saved_dir)) == sorted(ex['filename'] + '.png' for ex in examples)  # no temporaries
    evaluated = {name: prediction for name, _, prediction in eval_lib.predictions_for_split(cfg, checkpoint)}
    photos = tmp_path / 'photos'
    photos.mkdir()
    opencv_differs = False
    for ex in examples:
        saved = read_index_png(os.path.join(saved_dir, ex['filename'] + '.png'))
        np.testing.assert_array_equal(saved, evaluated[ex['filename']])
        assert ex['format'] == 'jpeg'
        (photos / (ex['filename'] + '.jpg')).write_bytes(ex['image_bytes'])
        opencv = cv2.imread(str(photos / (ex['filename'] + '.jpg')))[:, :, ::-1]
        opencv_differs |= not np.array_equal(opencv, ex['image'])
    assert opencv_differs  # OpenCV decodes these JPEGs differently: the decoder matters

    result = run_script('predict.py', '--model', model_path, '--out', str(tmp_path / 'out'), str(photos))
    assert result.returncode == 0, result.stderr
    for ex in examples:
        predicted = read_index_png(str(tmp_path / 'out' / (ex['filename'] + '.png')))
        np.testing.assert_array_equal(predicted, evaluated[ex['filename']], err_msg=ex['filename'])
        assert os.path.isfile(str(tmp_path / 'out' / (ex['filename'] + '_overlay.png')))
    assert len(np.unique(np.concatenate([p.ravel() for p in evaluated.values()]))) > 1


def _write_images(folder, names, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    for name in names:
        cv2.imwrite(os.path.join(folder, name), rng.randint(0, 256, (40, 56, 3)).astype(np.uint8))


def _run(model_path, inputs, out, overwrite=False):
    return list(predict_lib.predict_files(model_path, inputs, out, overwrite))


def test_inputs_with_one_stem_get_distinct_outputs_and_nothing_is_overwritten(run, tmp_path):
    _, _, model_path = run
    photos, more, out = str(tmp_path / 'photos'), str(tmp_path / 'more'), str(tmp_path / 'out')
    _write_images(photos, ['a.jpg', 'a.png', 'b.png', 'notes.txt'.replace('txt', 'png')], seed=1)
    _write_images(more, ['b.png'], seed=2)
    written = _run(model_path, [photos, os.path.join(more, 'b.png')], out)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(['a_jpg.png', 'a_jpg_overlay.png', 'a_png.png', 'a_png_overlay.png', 'b.png',
                            'b_overlay.png', 'b_2.png', 'b_2_overlay.png', 'notes.png', 'notes_overlay.png'])
    assert sorted(os.listdir(out)) == names  # no temporaries left
    decoder = image_decoder.make_decoder()
    model = frozen.FrozenModel(model_path)
    for source, target in (('photos/a.jpg', 'a_jpg'), ('photos/a.png', 'a_png'), ('more/b.png', 'b_2')):
        expected = model.predict(decoder.read(str(tmp_path / source)))
        np.testing.assert_array_equal(read_index_png(os.path.join(out, target + '.png')), expected)
    model.close()
    decoder.close()

    before = {name: open(os.path.join(out, name), 'rb').read() for name in names}
    with pytest.raises(ValueError, match='a_jpg.png exists: pass --overwrite to replace it'):
        _run(model_path, [photos], out)
    assert {name: open(os.path.join(out, name), 'rb').read() for name in names} == before  # nothing written
    assert len(_run(model_path, [photos], out, overwrite=True)) == 8


def test_an_input_is_never_written_over_even_with_overwrite(run, tmp_path):
    _, _, model_path = run
    photos = str(tmp_path / 'photos')
    _write_images(photos, ['x.png'])
    original = open(os.path.join(photos, 'x.png'), 'rb').read()
    for overwrite in (False, True):
        with pytest.raises(ValueError, match='x.png is one of the input images: predict.py never writes over an input'):
            _run(model_path, [photos], photos, overwrite)
    assert open(os.path.join(photos, 'x.png'), 'rb').read() == original
    result = run_script('predict.py', '--model', model_path, '--out', photos, os.path.join(photos, 'x.png'))
    assert result.returncode == 2 and 'error: ' in result.stderr and 'never writes over an input' in result.stderr


def test_model_formats_are_chosen_by_path(tmp_path):
    (tmp_path / 'model.h5').write_bytes(b'x')
    with pytest.raises(ValueError, match="unknown model format '.h5'"):
        predict_lib.load_model(str(tmp_path / 'model.h5'))
    with pytest.raises(FileNotFoundError, match='model not found: .*model.onnx'):
        predict_lib.load_model(str(tmp_path / 'model.onnx'))
    with pytest.raises(ValueError, match='is not a SavedModel folder'):
        predict_lib.load_model(str(tmp_path))
    with pytest.raises(ValueError, match='not a frozen GraphDef'):
        (tmp_path / 'bad.pb').write_bytes(b'not a graph')
        predict_lib.load_model(str(tmp_path / 'bad.pb'))
    with pytest.raises(FileNotFoundError, match='holds no images'):
        predict_lib.list_images([str(tmp_path)])



def _in_a_terminal(args):
    """Runs predict.py with stdout and stderr on one pseudo-terminal (as a user sees it, bars
    on); returns its exit code and the lines as the terminal shows them (a carriage return
    starts the line again)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import sys
    import termios
    from pipeline_fixtures import REPO_ROOT
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack('HHHH', 50, 200, 0, 0))  # 50 x 200: room for a bar
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='0', CUDA_VISIBLE_DEVICES='')
    process = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, 'predict.py')] + args, cwd=REPO_ROOT,
                               env=env, stdout=child, stderr=child, stdin=subprocess.DEVNULL)
    os.close(child)
    raw = b''
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(main)
    text = raw.decode('utf-8', 'replace').replace('\r\n', '\n')
    return process.wait(timeout=300), text, [line.rsplit('\r', 1)[-1].rstrip() for line in text.split('\n')]


def test_predict_output_is_quiet_and_its_bar_never_shares_a_line_with_a_path(run, tmp_path):
    """On a terminal (TF_CPP_MIN_LOG_LEVEL 0): the bar is drawn, each file written is a line of
    its own, no TensorFlow start-up line; in a pipe (a log) there is no bar at all."""
    cfg, _, model_path = run
    photos = tmp_path / 'photos'
    photos.mkdir()
    for ex in read_examples(cfg.data.dir, 'val'):
        (photos / (ex['filename'] + '.jpg')).write_bytes(ex['image_bytes'])
    code, text, shown = _in_a_terminal(['--model', model_path, '--out', str(tmp_path / 'tty'), str(photos)])
    assert code == 0, text
    assert 'predict: 100%' in text  # the bar was drawn
    written = sorted(str(tmp_path / 'tty' / name) for name in os.listdir(tmp_path / 'tty'))
    assert len(written) == 6
    for path in written:
        assert path in shown, text  # the whole line as shown, no bar before or after it
    for noise in ('absl::InitializeLog', 'cuInit', 'cudart_stub', 'oneDNN', 'cpu_feature_guard'):
        assert noise not in text, text
    piped = run_script('predict.py', '--model', model_path, '--out', str(tmp_path / 'pipe'), str(photos),
                       env={'TF_CPP_MIN_LOG_LEVEL': '0'}, merge_stderr=True)
    assert piped.returncode == 0, piped.stdout
    assert 'predict:' not in piped.stdout
    assert sorted(line for line in piped.stdout.split('\n') if line.startswith(str(tmp_path))) == \
        sorted(p.replace('/tty/', '/pipe/') for p in written)


def test_a_jpeg_with_an_exif_orientation_is_segmented_and_written_upright(run, tmp_path):
    """Tag 6 (turn clockwise to view): the outputs are those of the upright pixels, in the upright
    frame; with upright=False those of the raw pixels, as before."""
    from PIL import Image
    from fcn import orientation
    from datasets_fixtures import random_image
    _, _, model_path = run
    rgb = random_image(np.random.default_rng(4), 40, 64)
    photos = tmp_path / 'photos'
    photos.mkdir()
    exif = Image.Exif()
    exif[orientation.TAG] = 6
    Image.fromarray(rgb).save(str(photos / 'turned.jpg'), quality=95, exif=exif.tobytes())
    decoder = image_decoder.TFDecoder()
    try:
        raw = decoder.decode((photos / 'turned.jpg').read_bytes())  # decode() does not turn: the stored pixels
    finally:
        decoder.close()
    assert raw.shape == (40, 64, 3)
    Image.fromarray(np.rot90(raw, -1)).save(str(photos / 'upright.png'))
    Image.fromarray(raw).save(str(photos / 'raw.png'))

    def predict(name, out, upright=True):
        list(predict_lib.predict_files(model_path, [str(photos / name)], str(tmp_path / out), upright=upright))
        stem = os.path.splitext(name)[0]
        return (read_index_png(str(tmp_path / out / (stem + '.png'))),
                cv2.imread(str(tmp_path / out / (stem + '_overlay.png'))))

    turned, turned_overlay = predict('turned.jpg', 'a')
    expected, expected_overlay = predict('upright.png', 'b')
    assert turned.shape == (64, 40)
    np.testing.assert_array_equal(turned, expected)
    np.testing.assert_array_equal(turned_overlay, expected_overlay)
    kept, _ = predict('turned.jpg', 'c', upright=False)
    raw_ids, _ = predict('raw.png', 'd')
    assert kept.shape == (40, 64)
    np.testing.assert_array_equal(kept, raw_ids)
    flag = run_script('predict.py', '--model', model_path, '--out', str(tmp_path / 'e'), '--ignore_exif_orientation',
                      str(photos / 'turned.jpg'))
    assert flag.returncode == 0, flag.stderr
    np.testing.assert_array_equal(read_index_png(str(tmp_path / 'e' / 'turned.png')), raw_ids)
