"""Synthetic shapes dataset: deterministic, learnable-looking labels, built through the VOC reader."""
import os

import cv2
import numpy as np

import datasets_fixtures as fx
from fcn.data import synthetic
from fcn.data.info import DatasetInfo
from fcn.data.palette import read_index_png, voc_palette


def test_examples_are_deterministic_by_seed():
    a_image, a_label = synthetic.make_example(0, 3, 64)
    b_image, b_label = synthetic.make_example(0, 3, 64)
    c_image, _ = synthetic.make_example(1, 3, 64)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_label, b_label)
    assert not np.array_equal(a_image, c_image)
    assert a_image.shape == (64, 64, 3) and a_label.shape == (64, 64)


def test_labels_have_shapes_void_borders_and_class_colours():
    seen = set()
    for i in range(20):
        image, label = synthetic.make_example(0, i, 96)
        values = set(np.unique(label).tolist())
        assert values <= {0, 1, 2, 3, 4, 255}
        assert 255 in values and len(values - {0, 255}) >= 1
        seen |= values
        # every void pixel touches a shape pixel or background on both sides: a thin border, not blobs
        void = (label == 255).astype(np.uint8)
        assert cv2.erode(void, np.ones((5, 5), np.uint8)).sum() == 0
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        for cls, hue in synthetic.HUE_DEGREES.items():
            inner = cv2.erode((label == cls).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            if inner.sum() > 20:
                diff = np.abs(((hsv[..., 0][inner].astype(int) * 2 - hue) + 180) % 360 - 180)
                assert np.median(diff) < 25, (i, cls)
    assert seen == {0, 1, 2, 3, 4, 255}


def test_writes_voc_layout_and_builds_records(tmp_path):
    out = str(tmp_path / 'demo')
    source = os.path.join(out, 'source')
    spec = synthetic.synthetic_spec(source, num_train=6, num_val=2, size=48, seed=0)
    lists = {split: open(os.path.join(source, 'ImageSets', 'Segmentation', split + '.txt')).read().split()
             for split in ('train', 'val')}
    assert len(lists['train']) == 6 and len(lists['val']) == 2
    stem = lists['train'][0]
    from PIL import Image
    assert Image.open(os.path.join(source, 'SegmentationClass', stem + '.png')).mode == 'P'
    np.testing.assert_array_equal(read_index_png(os.path.join(source, 'SegmentationClass', stem + '.png')),
                                  synthetic.make_example(0, int(stem), 48)[1])
    from fcn.data import build
    summary = build.build(spec, out)
    assert summary['dataset'] == 'synthetic' and summary['num_classes'] == 5
    assert summary['class_names'] == list(synthetic.CLASS_NAMES)
    assert summary['palette'] == voc_palette(5).tolist()
    assert summary['splits']['train']['num_images'] == 6 and summary['splits']['val']['num_images'] == 2
    for ex in fx.read_examples(out, 'train'):
        np.testing.assert_array_equal(ex['label'], synthetic.make_example(0, int(ex['filename']), 48)[1])
    assert DatasetInfo.read(out).to_dict() == summary


def test_source_is_reused_when_parameters_match_and_replaced_otherwise(tmp_path):
    root = str(tmp_path / 'source')
    synthetic.ensure_source(root, 2, 1, 32, 0)
    jpeg = os.path.join(root, 'JPEGImages', '000000.jpg')
    before = os.stat(jpeg).st_mtime_ns
    synthetic.ensure_source(root, 2, 1, 32, 0)
    assert os.stat(jpeg).st_mtime_ns == before
    synthetic.ensure_source(root, 2, 1, 32, 5)
    label = read_index_png(os.path.join(root, 'SegmentationClass', '000000.png'))
    np.testing.assert_array_equal(label, synthetic.make_example(5, 0, 32)[1])
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.source-')]


def test_build_output_has_no_tensorflow_noise_and_bars_end_their_lines(tmp_path):
    """As a terminal shows it (stdout and stderr merged, progress bars on, TF_CPP_MIN_LOG_LEVEL
    unset): the summary lines stand alone and no TensorFlow start-up line appears."""
    from pipeline_fixtures import run_script
    out = str(tmp_path / 'demo')
    run = run_script('build_tfrecords.py', '--dataset', 'synthetic', '--out', out, '--num_train', '4',
                     '--num_val', '2', '--size', '32', '--num_shards', '1', '--num_workers', '1',
                     env={'TF_CPP_MIN_LOG_LEVEL': '0'}, merge_stderr=True)
    assert run.returncode == 0, run.stdout
    shown = [line.rsplit('\r', 1)[-1] for line in run.stdout.split('\n')]
    assert 'train: 4 images in 1 shards, 0 skipped' in shown and 'val: 2 images in 1 shards, 0 skipped' in shown
    assert 'wrote %s' % os.path.join(out, 'summary.json') in shown
    for noise in ('absl::InitializeLog', 'cuInit', 'cudart_stub', 'oneDNN', 'cpu_feature_guard'):
        assert noise not in run.stdout, run.stdout
