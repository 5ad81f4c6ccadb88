"""VOC records: pixel-exact round trip, summary, bad-data errors, resume, parallel build, CLI."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import datasets_fixtures as fx
from fcn.data import build, records, voc
from fcn.data.info import DatasetInfo, summary_path
from fcn.data.palette import VOC_CLASSES, voc_palette

TRAIN = ['2007_000001', '2007_000002', '2007_000003', '2008_000004', '2008_000005']
VAL = ['2009_000006', '2009_000007']


def build_voc(voc_dir, out, splits=('train', 'val'), **options):
    return build.build(voc.voc_spec(str(voc_dir), list(splits)), str(out), **options)


@pytest.fixture
def voc_dir(tmp_path):
    root = tmp_path / 'VOC2012'
    data = fx.write_voc(str(root), {'train': TRAIN, 'val': VAL})
    return root, data


def test_round_trip_pixels_and_summary(voc_dir, tmp_path):
    root, data = voc_dir
    out = tmp_path / 'out'
    summary = build_voc(root, out, num_shards=2)
    for split, stems in (('train', TRAIN), ('val', VAL)):
        examples = fx.read_examples(str(out), split)
        assert sorted(ex['filename'] for ex in examples) == sorted(stems)
        for ex in examples:
            image, label = data[ex['filename']]
            with open(root / 'JPEGImages' / (ex['filename'] + '.jpg'), 'rb') as f:
                assert ex['image_bytes'] == f.read()  # original JPEG bytes, not re-encoded
            assert ex['format'] == 'jpeg' and ex['label_format'] == 'png' and ex['channels'] == 3
            assert (ex['height'], ex['width']) == label.shape
            np.testing.assert_array_equal(ex['label'], label)
            assert ex['label_channels'] == 1
            assert np.abs(ex['image'].astype(int) - image.astype(int)).mean() < 3
        info = summary['splits'][split]
        labels = [data[s][1] for s in stems]
        counts = np.bincount(np.concatenate([l.ravel() for l in labels]), minlength=256)
        assert info['num_images'] == len(stems)
        assert info['class_pixel_counts'] == counts[:21].tolist()
        assert info['ignored_pixels'] == counts[255]
        assert info['height_range'] == [min(l.shape[0] for l in labels), max(l.shape[0] for l in labels)]
        assert info['width_range'] == [min(l.shape[1] for l in labels), max(l.shape[1] for l in labels)]
        assert info['skipped'] == []
    assert summary['splits']['train']['num_shards'] == 2
    assert summary['splits']['val']['num_shards'] == 2
    assert summary == DatasetInfo.read(str(out)).to_dict()
    assert summary['dataset'] == 'voc' and summary['num_classes'] == 21 and summary['ignore_label'] == 255
    assert summary['class_names'] == list(VOC_CLASSES)
    assert summary['palette'] == voc_palette(21).tolist()
    assert len(records.shard_paths(str(out), 'train')) == 2


def test_voc_palette_is_the_standard_colour_map():
    palette = voc_palette()
    assert palette.shape == (256, 3)
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128]   # person
    assert palette[20].tolist() == [0, 64, 128]      # tvmonitor
    assert palette[255].tolist() == [224, 224, 192]  # void
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == 'person'


def test_grayscale_jpeg_is_stored_as_rgb_png(voc_dir, tmp_path):
    root, data = voc_dir
    path = str(root / 'JPEGImages' / (TRAIN[0] + '.jpg'))
    gray = cv2.cvtColor(data[TRAIN[0]][0], cv2.COLOR_RGB2GRAY)
    cv2.imwrite(path, gray)
    build_voc(root, tmp_path / 'out', splits=['train'])
    ex = next(e for e in fx.read_examples(str(tmp_path / 'out'), 'train') if e['filename'] == TRAIN[0])
    assert ex['format'] == 'png' and ex['channels'] == 3
    decoded = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(ex['image'], np.repeat(decoded[:, :, None], 3, axis=2))


def expect_error(root, out, match_file, match_reason, splits=('train', 'val')):
    with pytest.raises(build.DatasetError) as info:
        build_voc(root, out, splits=splits)
    message = str(info.value)
    assert match_file in message and match_reason in message, message
    return message


def test_size_mismatch_names_the_label(voc_dir, tmp_path):
    root, _ = voc_dir
    label_path = str(root / 'SegmentationClass' / (TRAIN[1] + '.png'))
    fx.write_png(label_path, np.zeros((10, 12), np.uint8))
    expect_error(root, tmp_path / 'out', label_path, 'label is 10x12 but image')


def test_truncated_image_names_the_image(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'JPEGImages' / (VAL[0] + '.jpg'))
    fx.truncate_file(path)
    expect_error(root, tmp_path / 'out', path, 'unreadable or truncated image')


def test_garbage_image_names_the_image(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'JPEGImages' / (VAL[0] + '.jpg'))
    with open(path, 'wb') as f:
        f.write(b'this is not a jpeg')
    expect_error(root, tmp_path / 'out', path, 'unreadable or truncated image')


def test_missing_label_names_the_label(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'SegmentationClass' / (TRAIN[2] + '.png'))
    os.remove(path)
    expect_error(root, tmp_path / 'out', path, 'label not found')


def test_missing_image_names_the_image(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'JPEGImages' / (TRAIN[2] + '.jpg'))
    os.remove(path)
    expect_error(root, tmp_path / 'out', path, 'image not found')


def test_label_out_of_range_names_the_label_and_values(voc_dir, tmp_path):
    root, data = voc_dir
    label = data[TRAIN[3]][1].copy()
    label[0, :3] = [21, 40, 254]
    path = str(root / 'SegmentationClass' / (TRAIN[3] + '.png'))
    fx.write_png(path, label)  # grayscale index PNG: read the same way as a palette PNG
    message = expect_error(root, tmp_path / 'out', path, 'out of range')
    assert '[21, 40, 254]' in message and '< 21' in message


def test_rgb_label_is_rejected(voc_dir, tmp_path):
    root, data = voc_dir
    path = str(root / 'SegmentationClass' / (TRAIN[0] + '.png'))
    fx.write_png(path, voc_palette()[data[TRAIN[0]][1]])
    expect_error(root, tmp_path / 'out', path, 'palette or grayscale PNG')


def test_empty_split_names_the_list_file(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'ImageSets' / 'Segmentation' / 'val.txt')
    fx.write_list(path, [])
    expect_error(root, tmp_path / 'out', path, "split 'val' is empty")


def test_missing_list_file(voc_dir, tmp_path):
    root, _ = voc_dir
    expect_error(root, tmp_path / 'out', 'trainval.txt', 'list file not found', splits=['trainval'])


def test_list_entry_escaping_the_folder(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'ImageSets' / 'Segmentation' / 'train.txt')
    fx.write_list(path, TRAIN + ['../../secret'])
    message = expect_error(root, tmp_path / 'out', path, 'escapes the data folder')
    assert '../../secret' in message


def test_not_a_voc_folder(tmp_path):
    with pytest.raises(build.DatasetError, match='JPEGImages/ is missing'):
        voc.voc_spec(str(tmp_path), ['train'])


def test_skip_bad_lists_every_skipped_file(voc_dir, tmp_path):
    root, _ = voc_dir
    truncated = str(root / 'JPEGImages' / (TRAIN[0] + '.jpg'))
    missing = str(root / 'SegmentationClass' / (TRAIN[1] + '.png'))
    fx.truncate_file(truncated)
    os.remove(missing)
    summary = build_voc(root, tmp_path / 'out', skip_bad=True)
    info = summary['splits']['train']
    assert info['num_images'] == len(TRAIN) - 2
    assert sorted(s['file'] for s in info['skipped']) == sorted([truncated, missing])
    assert {s['reason'] for s in info['skipped']} == {'unreadable or truncated image', 'label not found'}
    assert len(fx.read_examples(str(tmp_path / 'out'), 'train')) == len(TRAIN) - 2


def test_all_skipped_is_an_empty_split(voc_dir, tmp_path):
    root, _ = voc_dir
    for stem in VAL:
        os.remove(str(root / 'SegmentationClass' / (stem + '.png')))
    with pytest.raises(build.DatasetError, match="split 'val' is empty: all 2 images were skipped"):
        build_voc(root, tmp_path / 'out', skip_bad=True)


def shard_mtimes(out):
    return {p: os.stat(p).st_mtime_ns for p in records.shard_paths(str(out), 'train')}


def test_failed_build_leaves_only_complete_shards_and_resumes(voc_dir, tmp_path):
    root, data = voc_dir
    out = tmp_path / 'out'
    # One image a shard; find which stem lands in the last shard after the seeded shuffle, and break it.
    build.build(voc.voc_spec(str(root), ['train']), str(out), num_shards=len(TRAIN))
    last = [e['filename'] for e in fx.read_examples(str(out), 'train')][-1]
    label_path = str(root / 'SegmentationClass' / (last + '.png'))
    os.remove(label_path)
    out2 = tmp_path / 'out2'
    with pytest.raises(build.DatasetError, match='label not found'):
        build.build(voc.voc_spec(str(root), ['train']), str(out2), num_shards=len(TRAIN))
    names = sorted(os.listdir(out2))
    shards = [n for n in names if n.endswith('.tfrecord')]
    assert len(shards) == len(TRAIN) - 1  # all but the broken last shard, each complete
    assert not [n for n in names if n.endswith('.tmp')]
    assert not os.path.exists(summary_path(str(out2)))
    before = {n: os.stat(out2 / n).st_mtime_ns for n in shards}
    fx.write_png(label_path, data[last][1])
    build.build(voc.voc_spec(str(root), ['train']), str(out2), num_shards=len(TRAIN))
    after = {n: os.stat(out2 / n).st_mtime_ns for n in shards}
    assert before == after  # complete shards were not rewritten
    assert len(fx.read_examples(str(out2), 'train')) == len(TRAIN)


def test_rerun_skips_complete_shards_unless_overwrite(voc_dir, tmp_path):
    root, _ = voc_dir
    out = tmp_path / 'out'
    first = build_voc(root, out, num_shards=2)
    before = shard_mtimes(out)
    assert build_voc(root, out, num_shards=2) == first
    assert shard_mtimes(out) == before
    build_voc(root, out, num_shards=2, overwrite=True)
    assert all(shard_mtimes(out)[p] != t for p, t in before.items())


def test_rerun_rebuilds_shards_saved_without_the_present_pixel_counts(voc_dir, tmp_path):
    """A shard state from before class_present_pixel_counts was kept is rebuilt, not trusted."""
    root, _ = voc_dir
    out = tmp_path / 'out'
    first = build_voc(root, out, num_shards=2)
    before = shard_mtimes(out)
    old_state = out / build.STATE_DIR / 'train-00000-of-00002.tfrecord.json'
    with open(old_state) as f:
        state = json.load(f)
    for key in ('class_present_pixel_counts', 'class_image_counts'):
        del state[key]
    with open(old_state, 'w') as f:
        json.dump(state, f)
    assert build_voc(root, out, num_shards=2) == first
    after = shard_mtimes(out)
    rebuilt = [os.path.basename(p) for p in before if after[p] != before[p]]
    assert rebuilt == ['train-00000-of-00002.tfrecord']


def test_changed_shard_count_removes_old_shards(voc_dir, tmp_path):
    root, _ = voc_dir
    out = tmp_path / 'out'
    build_voc(root, out, num_shards=3)
    summary = build_voc(root, out, num_shards=2)
    assert [os.path.basename(p) for p in records.shard_paths(str(out), 'train')] == [
        'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord']
    assert summary['splits']['train']['num_images'] == len(TRAIN)


def test_parallel_build_matches_serial(voc_dir, tmp_path):
    root, _ = voc_dir
    serial = build_voc(root, tmp_path / 'serial', num_shards=2, num_workers=1)
    parallel = build_voc(root, tmp_path / 'parallel', num_shards=2, num_workers=2)
    assert serial == parallel
    for name in sorted(os.listdir(tmp_path / 'serial')):
        if name.endswith('.tfrecord'):
            assert (tmp_path / 'serial' / name).read_bytes() == (tmp_path / 'parallel' / name).read_bytes()


def test_parallel_build_reports_bad_file(voc_dir, tmp_path):
    root, _ = voc_dir
    path = str(root / 'JPEGImages' / (TRAIN[4] + '.jpg'))
    fx.truncate_file(path)
    with pytest.raises(build.DatasetError, match='truncated') as info:
        build_voc(root, tmp_path / 'out', num_workers=2)
    assert path in str(info.value)
    assert not [n for n in os.listdir(tmp_path / 'out') if n.endswith('.tmp')]


def test_progress_bar_counts_images_with_eta(voc_dir, tmp_path, capsys):
    root, _ = voc_dir
    build_voc(root, tmp_path / 'out', progress=True)
    err = capsys.readouterr().err
    assert 'train: 100%' in err and '5/5' in err and 'val: 100%' in err and '2/2' in err
    assert '<00:00' in err  # elapsed<remaining: the ETA field


def load_cli(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(repo_root, 'build_tfrecords.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_error_is_one_line_exit_2(voc_dir, tmp_path, capsys, repo_root):
    root, _ = voc_dir
    path = str(root / 'SegmentationClass' / (VAL[1] + '.png'))
    os.remove(path)
    code = load_cli(repo_root).main(['--dataset', 'voc', '--data_dir', str(root), '--out', str(tmp_path / 'out'),
                            '--num_workers', '1', '--no_progress'])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith('error: ') and path in err and 'Traceback' not in err


def test_cli_script_builds_and_fails_cleanly(voc_dir, tmp_path, repo_root):
    root, _ = voc_dir
    script = os.path.join(repo_root, 'build_tfrecords.py')
    ok = subprocess.run([sys.executable, script, '--dataset', 'voc', '--data_dir', str(root), '--splits', 'val',
                         '--out', str(tmp_path / 'out')], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert DatasetInfo.read(str(tmp_path / 'out')).to_dict()['splits']['val']['num_images'] == len(VAL)
    bad = subprocess.run([sys.executable, script, '--dataset', 'voc', '--data_dir', str(tmp_path / 'nope'),
                          '--out', str(tmp_path / 'out2')], capture_output=True, text=True)
    assert bad.returncode == 2
    assert 'error: ' in bad.stderr and 'nope' in bad.stderr and 'Traceback' not in bad.stderr


def _count_records(path):
    from fcn.compat import tf1
    return sum(1 for _ in tf1.io.tf_record_iterator(path))


def test_build_killed_mid_run_leaves_no_incomplete_shard_and_the_rerun_finishes(tmp_path, repo_root):
    """SIGKILL (no cleanup runs) as soon as the first shard is in place: every file with a
    shard's final name holds all the records its saved stats count; the rerun completes."""
    import signal
    import time
    stems = ['%06d' % i for i in range(120)]
    fx.write_voc(str(tmp_path / 'VOC2012'), {'train': stems}, sizes=((375, 500),))
    out = tmp_path / 'out'
    command = [sys.executable, os.path.join(repo_root, 'build_tfrecords.py'), '--dataset', 'voc',
               '--data_dir', str(tmp_path / 'VOC2012'), '--splits', 'train', '--out', str(out),
               '--num_shards', '40', '--num_workers', '1', '--no_progress']
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(n.endswith('.tfrecord') for n in os.listdir(out))):
            assert process.poll() is None and time.monotonic() < deadline, 'build ended before any shard'
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    shards = sorted(n for n in os.listdir(out) if n.endswith('.tfrecord'))
    assert 0 < len(shards) < 40, 'the kill should land mid-build'
    assert not os.path.exists(summary_path(str(out)))
    for name in shards:
        with open(out / build.STATE_DIR / (name + '.json')) as f:
            assert _count_records(str(out / name)) == json.load(f)['num_images'] == 3
    before = {n: os.stat(out / n).st_mtime_ns for n in shards}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert {n: os.stat(out / n).st_mtime_ns for n in shards} == before  # complete shards kept
    assert sorted(e['filename'] for e in fx.read_examples(str(out), 'train')) == stems
