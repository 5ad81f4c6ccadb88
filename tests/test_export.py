"""Export formats built on fcn/inference.py: the frozen graph and eval tile alike; the
SavedModel's two signatures (uint8 images, encoded JPEG/PNG bytes), loaded with
tf.saved_model.load in an eager process, predict exactly what the frozen graph predicts;
export.py's --format table.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from datasets_fixtures import read_examples
from fcn import eval_lib
from fcn.export import export_source, frozen, label_info
from fcn.export.common import sidecar_path
from fcn.export.frozen import FrozenModel
from fcn.export.saved_model import SavedModelRunner
from inference_fixtures import random_checkpoint
from pipeline_fixtures import REPO_ROOT, build_synthetic, run_script, tiny_config, tiny_overrides

NUM_CLASSES = 5
TILING = ['eval.tile_size=[32, 48]', 'eval.tile_overlap=0.25']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A run dir holding a random model's checkpoint; the config tiles 64-px images into 6 tiles."""
    data_dir = build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=4, num_val=3, size=64)
    run_dir = str(tmp_path_factory.mktemp('run') / 'run')
    cfg = tiny_config(data_dir, run_dir, extra=TILING)
    checkpoint = random_checkpoint(cfg, NUM_CLASSES)
    return cfg, checkpoint


def _frozen(cfg, checkpoint, path):
    frozen.export(export_source(cfg, checkpoint), str(path))
    return FrozenModel(str(path))


def test_eval_and_the_frozen_graph_tile_alike(run, tmp_path):
    cfg, checkpoint = run
    untiled_cfg = tiny_config(cfg.data.dir, cfg.train.run_dir)
    tiled, untiled = _frozen(cfg, checkpoint, tmp_path / 'tiled.pb'), _frozen(untiled_cfg, checkpoint, tmp_path / 'u.pb')
    images = {ex['filename']: ex['image'] for ex in read_examples(cfg.data.dir, 'val')}
    evaluated = eval_lib.predictions_for_split(cfg, checkpoint)
    assert len(evaluated) == 3
    for name, _, prediction in evaluated:
        assert max(images[name].shape[:2]) > 48  # larger than a tile: the tiled path
        np.testing.assert_array_equal(tiled.predict(images[name]), prediction)
    assert any((untiled.predict(images[name]) != prediction).any() for name, _, prediction in evaluated)
    with open(sidecar_path(str(tmp_path / 'tiled.pb'))) as f:
        assert json.load(f)['tile_size'] == [32, 48]
    tiled.close()
    untiled.close()


def test_the_frozen_runner_loads_its_large_weights_once_and_predicts_the_same(run, tmp_path):
    """FrozenModel turns the big weight constants into variables (memory): the graph it runs
    holds none of them, and its class ids equal those of the graph as written, tiled."""
    cfg, checkpoint = run
    path = str(tmp_path / 'model.pb')
    model = _frozen(cfg, checkpoint, path)
    graph_def = frozen.read_graph_def(path)
    big = {n.name for n in graph_def.node if n.op == 'Const' and len(n.attr['value'].tensor.tensor_content) >= 1 << 20}
    assert big and {name.split(':')[0] for name in model.weight_names} == big  # fc6, fc7 at width 0.125
    assert not [op for op in model.graph.get_operations() if op.type == 'Const' and op.name in big]
    from fcn.compat import tf, tf1
    with tf.Graph().as_default() as graph:
        tf1.import_graph_def(graph_def, name='')
        with tf1.Session(graph=graph) as sess:
            for example in read_examples(cfg.data.dir, 'val'):
                as_written = sess.run(frozen.OUTPUT_NAME + ':0', {frozen.INPUT_NAME + ':0': example['image'][None]})[0]
                np.testing.assert_array_equal(model.predict(example['image']), as_written)
    model.close()


EAGER_LOADER = r'''
import os, sys
import numpy as np
import tensorflow as tf
assert tf.executing_eagerly()
model = tf.saved_model.load(sys.argv[1])
images, encoded = model.signatures['serving_default'], model.signatures['encoded_image']
folder = sys.argv[2]
for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if name.endswith('.npy'):
        out = images(images=tf.constant(np.load(path)[None]))
    elif name.endswith('.bin'):
        out = encoded(image_bytes=tf.constant([open(path, 'rb').read()]))
    else:
        continue
    ids = out['class_ids'].numpy()
    assert ids.dtype == np.int32, ids.dtype
    np.save(path + '.out.npy', ids)
'''


def _inputs(data_dir):
    """(name, pixels for the uint8 signature or bytes for the encoded one, the pixels the bytes hold)."""
    cases = []
    for i, ex in enumerate(read_examples(data_dir, 'val')):
        odd = np.ascontiguousarray(ex['image'][3:50, 1:38])  # odd sizes, one axis within a tile
        ok, png = cv2.imencode('.png', odd[:, :, ::-1])
        assert ok
        cases += [('img%d.npy' % i, ex['image'], ex['image']), ('odd%d.npy' % i, odd, odd),
                  ('rec%d.bin' % i, ex['image_bytes'], ex['image']), ('png%d.bin' % i, png.tobytes(), odd)]
    assert {ex['format'] for ex in read_examples(data_dir, 'val')} & {'jpeg', 'jpg'}, 'the records hold JPEGs'
    return cases


@pytest.mark.tf_subset
def test_saved_model_signatures_predict_as_the_frozen_graph(run, tmp_path):
    cfg, checkpoint = run
    out_dir = str(tmp_path / 'export' / 'voc' / '1')
    overrides = tiny_overrides(cfg.data.dir, cfg.train.run_dir) + TILING
    args = ['--config', 'configs/demo.yaml', '--format', 'saved_model', '--out', out_dir]
    result = run_script('export.py', *args + [arg for o in overrides for arg in ('--set', o)])
    assert result.returncode == 0, result.stderr
    assert 'saved_model' in result.stdout and sorted(os.listdir(tmp_path / 'export' / 'voc')) == ['1']

    folder = tmp_path / 'inputs'
    folder.mkdir()
    cases = _inputs(cfg.data.dir)
    for name, value, _ in cases:
        if name.endswith('.npy'):
            np.save(str(folder / name), value)
        else:
            (folder / name).write_bytes(value)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    loaded = subprocess.run([sys.executable, '-c', EAGER_LOADER, out_dir, str(folder)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]

    model = _frozen(cfg, checkpoint, tmp_path / 'model.pb')
    runner = SavedModelRunner(out_dir)
    for name, value, pixels in cases:
        expected = model.predict(pixels)
        got = np.load(str(folder / (name + '.out.npy')))
        assert got.shape == (1,) + pixels.shape[:2], name
        np.testing.assert_array_equal(got[0], expected, err_msg=name)
        graph_mode = runner.predict(value) if name.endswith('.npy') else runner.predict_encoded(value)
        np.testing.assert_array_equal(graph_mode, expected, err_msg=name)
    assert len(np.unique(np.concatenate([model.predict(p).ravel() for _, _, p in cases]))) > 1

    with open(os.path.join(out_dir, 'assets', 'labels.json')) as f:
        labels = json.load(f)
    expected_labels = label_info(cfg)
    assert labels['class_names'] == expected_labels['class_names'] and len(labels['class_names']) == NUM_CLASSES
    assert labels['palette'] == expected_labels['palette'] and labels['tile_size'] == [32, 48]
    assert runner.labels == labels
    model.close()
    runner.close()


def test_saved_model_is_not_written_over_an_existing_folder(run, tmp_path):
    cfg, checkpoint = run
    from fcn import export
    (tmp_path / '1').mkdir()
    with pytest.raises(ValueError, match='1 exists: a SavedModel is written into a new folder'):
        export.export('saved_model', cfg, checkpoint, str(tmp_path / '1'))


def test_export_format_table_rejects_options_that_do_not_apply(run, tmp_path):
    cfg, checkpoint = run
    from fcn import export
    with pytest.raises(ValueError, match='--input_size does not apply to --format frozen'):
        export.export('frozen', cfg, checkpoint, str(tmp_path / 'm.pb'), input_size=[64, 64])
    with pytest.raises(ValueError, match="unknown export format 'keras'"):
        export.export('keras', cfg, checkpoint, str(tmp_path / 'm.pb'))
    with pytest.raises(ValueError, match='--format tflite needs --input_size'):
        export.export('tflite', cfg, checkpoint, str(tmp_path / 'm.tflite'), quantize='float16')
    assert set(export.FORMATS) == {'frozen', 'saved_model', 'onnx', 'tflite'}
    assert export.format_of(str(tmp_path)).name == 'saved_model'
    for name, fmt in export.FORMATS.items():
        if fmt.suffix:
            (tmp_path / ('m' + fmt.suffix)).write_bytes(b'')
            assert export.format_of(str(tmp_path / ('m' + fmt.suffix))) is fmt
    help_text = run_script('export.py', '--help').stdout  # export.py's --format choices are the table's
    assert '{%s}' % ','.join(export.FORMATS) in help_text
