"""Artifacts written by other tools, read in place from ../shared/fixtures/external/ (see its README):
DeepLab's own records (no summary.json), DeepLab's test record (labels 0-254), and the Caffe FCN
demo photo with its VOC palette label."""
import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

import datasets_fixtures as fx
from pipeline_fixtures import REPO_ROOT, run_script, tiny_config
from fcn import eval_lib, train_lib
from fcn.compat import tf
from fcn.data import build, index_records, records, voc
from fcn.data.info import DatasetInfo, SplitInfo, run_info_path, summary_path
from fcn.data.spec import DatasetError

# Beside the repo (CI clones it with shared/ next to it); FCN_EXTERNAL_FIXTURES points elsewhere (a worktree).
EXTERNAL = os.environ.get('FCN_EXTERNAL_FIXTURES') or os.path.join(REPO_ROOT, '..', 'shared', 'fixtures', 'external')
DEEPLAB_BUILT = os.path.join(EXTERNAL, 'deeplab_built')
DEEPLAB_TESTING = os.path.join(EXTERNAL, 'deeplab_testing')
FCN_DEMO = os.path.join(EXTERNAL, 'fcn_demo')



@pytest.fixture(autouse=True)
def _external_fixtures():
    if not os.path.isdir(EXTERNAL):  # fail, not skip: these tests are the evidence of interoperability
        pytest.fail('%s not found: the external fixtures sit in ../shared/fixtures/external beside the repo '
                    '(or set FCN_EXTERNAL_FIXTURES)' % EXTERNAL)


def _listing(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


@pytest.fixture(scope='module')
def indexed(tmp_path_factory):
    """DeepLab's records indexed by the command a user runs."""
    out = str(tmp_path_factory.mktemp('deeplab') / 'records')
    before = _listing(DEEPLAB_BUILT)
    result = run_script('build_tfrecords.py', '--dataset', 'records', '--data_dir', DEEPLAB_BUILT,
                        '--num_classes', '5', '--out', out)
    assert result.returncode == 0, result.stderr
    assert _listing(DEEPLAB_BUILT) == before  # the original folder is never written to
    return out, result


@pytest.fixture(scope='module')
def trained(indexed, tmp_path_factory):
    out, _ = indexed
    run_dir = str(tmp_path_factory.mktemp('deeplab_run') / 'run')
    cfg = tiny_config(out, run_dir, steps=3, extra=['train.save_every_steps=3'])
    assert train_lib.train(cfg, log=lambda *a: None) == 3
    return cfg


def test_deeplab_records_index_train_and_eval_once_per_image(indexed, trained):
    out, result = indexed
    info = DatasetInfo.read(out)
    assert info.num_classes == 5 and info.ignore_label == 255 and info.name == 'records'
    assert (info.split('train').num_images, info.split('val').num_images) == (48, 12)
    assert (info.split('train').num_shards, info.split('val').num_shards) == (4, 4)
    for split, entry in info.splits.items():  # statistics = a numpy count over the original shards
        histogram = np.zeros(256, np.int64)
        for path in records.shard_paths(DEEPLAB_BUILT, split):
            for raw in records.read_records(path):
                example = fx._parse(tf.train.Example.FromString(raw))
                label = cv2.imdecode(np.frombuffer(example['label_bytes'], np.uint8), cv2.IMREAD_UNCHANGED)
                histogram += np.bincount(label.ravel(), minlength=256)
        assert list(entry.class_pixel_counts) == histogram[:5].tolist()
        assert entry.ignored_pixels == histogram[255]
    for name in os.listdir(DEEPLAB_BUILT):
        linked = os.path.join(out, name)
        assert os.path.samefile(linked, os.path.join(DEEPLAB_BUILT, name)) or \
            open(linked, 'rb').read() == open(os.path.join(DEEPLAB_BUILT, name), 'rb').read()
    assert 'train: 48 images in 4 shards' in result.stdout and 'val: 12 images in 4 shards' in result.stdout

    # A wrong image count in the descriptions (records' and run's) does not make eval count twice.
    for path in (summary_path(out), run_info_path(trained.train.run_dir)):
        with open(path) as f:
            data = json.load(f)
        data['splits']['val']['num_images'] = 24
        with open(path, 'w') as f:
            json.dump(data, f)
    results = eval_lib.evaluate_once(trained, progress=False)
    assert results['num_images'] == 12 and results['global_step'] == 3
    val = info.split('val')
    assert np.asarray(results['confusion_matrix']).sum() == sum(val.class_pixel_counts)


def test_deeplab_test_record_is_refused_at_21_classes_naming_the_value(tmp_path):
    out = str(tmp_path / 'out')
    result = run_script('build_tfrecords.py', '--dataset', 'records', '--data_dir', DEEPLAB_TESTING,
                        '--num_classes', '21', '--out', out)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    match = re.search(r"label value (\d+) in record '(2007_\d+)' is neither a class id \(0..20\)", message)
    assert message.startswith('error: ') and match, message
    assert 21 <= int(match.group(1)) <= 254
    assert 'val-00000-of-00001.tfrecord' in message
    assert not os.path.exists(summary_path(out))


@pytest.mark.parametrize('num_classes, ignore_label', [(255, 255), (254, 254)])
def test_deeplab_test_record_indexes_with_enough_classes(tmp_path, num_classes, ignore_label):
    info = index_records.index(DEEPLAB_TESTING, str(tmp_path / 'out'), num_classes, ignore_label=ignore_label)
    val = DatasetInfo.read(str(tmp_path / 'out')).split('val')
    assert val.num_images == 3 and val == info.split('val')
    assert sum(val.class_image_counts) > 3 * 200  # random labels: most values in every image


def test_label_outside_the_classes_stops_train_and_eval_naming_value_and_split(indexed, trained, tmp_path):
    """Records whose summary says 5 classes but whose val labels run 0-254 (DeepLab's test record)."""
    out = str(tmp_path / 'mixed')
    index_records.index(DEEPLAB_BUILT, out, 5, splits=['train'])
    index_records.link_shards([os.path.join(DEEPLAB_TESTING, 'val-00000-of-00001.tfrecord')], out, 'val')
    info = DatasetInfo.read(out)
    info.with_split('val', SplitInfo(num_images=3, num_shards=1)).write(summary_path(out))
    expected = r"label value \d+ in record '2007_\d+' \(.*val-00000-of-00001.tfrecord:\d+\) of split 'val'"

    cfg = tiny_config(out, str(tmp_path / 'run_on_val'), steps=2, extra=['data.train_split=val'])
    with pytest.raises(DatasetError, match=expected):
        train_lib.train(cfg, log=lambda *a: None)

    cfg = tiny_config(out, trained.train.run_dir, steps=3)
    with pytest.raises(DatasetError, match=expected):
        eval_lib.evaluate_once(cfg, progress=False)


def test_caffe_fcn_demo_photo_and_label_round_trip_pixel_exact(tmp_path):
    voc_dir = tmp_path / 'VOC2012'
    for sub, name, source in (('JPEGImages', 'demo.jpg', 'image.jpg'), ('SegmentationClass', 'demo.png', 'label.png')):
        os.makedirs(voc_dir / sub)
        shutil.copyfile(os.path.join(FCN_DEMO, source), voc_dir / sub / name)
    for split in ('train', 'val'):
        fx.write_list(str(voc_dir / fx.VOC_LIST_DIR / (split + '.txt')), ['demo'])
    summary = build.build(voc.voc_spec(str(voc_dir), ['train', 'val']), str(tmp_path / 'out'))

    [example] = fx.read_examples(str(tmp_path / 'out'), 'train')
    with open(os.path.join(FCN_DEMO, 'image.jpg'), 'rb') as f:
        assert example['image_bytes'] == f.read()  # the JPEG is kept, not re-encoded
    original = cv2.cvtColor(cv2.imread(os.path.join(FCN_DEMO, 'image.jpg')), cv2.COLOR_BGR2RGB)
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(example['image_bytes'], np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, original)
    assert example['image'].shape == original.shape and (example['height'], example['width']) == original.shape[:2]
    palette_label = Image.open(os.path.join(FCN_DEMO, 'label.png'))
    assert palette_label.mode == 'P'
    indices = np.array(palette_label)
    np.testing.assert_array_equal(example['label'], indices)
    assert sorted(np.unique(example['label']).tolist()) == [0, 2, 15, 255]
    counts = np.bincount(indices.ravel(), minlength=256)
    assert summary['splits']['train']['class_pixel_counts'] == counts[:21].tolist()
    assert summary['splits']['train']['ignored_pixels'] == counts[255]


def test_indexing_records_prints_no_tensorflow_start_up_lines(tmp_path):
    """As a terminal shows it (stdout and stderr merged, TF_CPP_MIN_LOG_LEVEL 0, two workers):
    the indexer and the processes it starts are as quiet as every other tool."""
    result = run_script('build_tfrecords.py', '--dataset', 'records', '--data_dir', DEEPLAB_BUILT,
                        '--num_classes', '5', '--out', str(tmp_path / 'out'), '--num_workers', '2',
                        env={'TF_CPP_MIN_LOG_LEVEL': '0'}, merge_stderr=True)
    assert result.returncode == 0, result.stdout
    assert 'wrote %s' % os.path.join(str(tmp_path / 'out'), 'summary.json') in result.stdout
    for noise in ('absl::InitializeLog', 'cuInit', 'cudart_stub', 'oneDNN', 'cpu_feature_guard'):
        assert noise not in result.stdout, result.stdout
