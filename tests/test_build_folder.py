"""Image + mask folders: palette, grayscale and RGB colour masks; list files and random splits; bad data."""
import os

import numpy as np
import pytest
import yaml

import datasets_fixtures as fx
from fcn.data import build, folder

STEMS = ('a1', 'a2', 'b1', 'b2', 'c1', 'sub/c2')


def make(root, kind):
    data = fx.write_folder(str(root), kind)
    return str(root), data


def spec(root, kind='palette', **kwargs):
    colors = os.path.join(root, 'colors.yaml') if kind == 'rgb' else None
    names = None if kind == 'rgb' else os.path.join(root, 'classes.txt')
    kwargs.setdefault('val_fraction', 0.34)
    return folder.folder_spec(os.path.join(root, 'images'), os.path.join(root, 'masks'), names, colors, **kwargs)


@pytest.mark.parametrize('kind', ['palette', 'gray', 'rgb'])
def test_each_mask_kind_round_trips(kind, tmp_path):
    root, data = make(tmp_path / kind, kind)
    out = str(tmp_path / 'out')
    summary = build.build(spec(root, kind), out)
    assert summary['dataset'] == 'folder' and summary['class_names'] == fx.FOLDER_CLASSES
    seen = []
    for split in ('train', 'val'):
        for ex in fx.read_examples(out, split):
            stem = ex['filename'].replace('_', '/')
            seen.append(stem)
            image, label = data[stem]
            np.testing.assert_array_equal(ex['label'], label)
            if ex['format'] == 'png':
                np.testing.assert_array_equal(ex['image'], image)  # PNG images are kept losslessly
            else:
                assert np.abs(ex['image'].astype(int) - image.astype(int)).mean() < 3
    assert sorted(seen) == sorted(STEMS)
    assert summary['splits']['val']['num_images'] == 2 and summary['splits']['train']['num_images'] == 4
    if kind == 'rgb':
        assert summary['palette'] == [fx.FOLDER_COLOURS[n] for n in fx.FOLDER_CLASSES]
    assert summary['splits']['train']['ignored_pixels'] + summary['splits']['val']['ignored_pixels'] == sum(
        int((label == 255).sum()) for _, label in data.values())


def test_random_split_is_seeded():
    stems = ['s%02d' % i for i in range(20)]
    first = folder.random_split(stems, 0.25, seed=0)
    assert first == folder.random_split(list(reversed(stems)), 0.25, seed=0)
    assert len(first['val']) == 5 and sorted(first['train'] + first['val']) == stems
    assert first != folder.random_split(stems, 0.25, seed=1)
    assert len(folder.random_split(stems[:3], 0.01, seed=0)['val']) == 1


def test_list_files_choose_the_splits(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    fx.write_list(os.path.join(root, 'train.txt'), ['a1', 'b1.jpg', 'sub/c2'])
    fx.write_list(os.path.join(root, 'val.txt'), ['a2'])
    s = spec(root, 'gray', train_list=os.path.join(root, 'train.txt'), val_list=os.path.join(root, 'val.txt'))
    assert sorted(i.name for i in s.splits['train']) == ['a1', 'b1', 'sub_c2']
    assert [i.name for i in s.splits['val']] == ['a2']


def expect_error(root, kind, tmp_path, *fragments, **kwargs):
    with pytest.raises(build.DatasetError) as info:
        build.build(spec(root, kind, **kwargs), str(tmp_path / 'out'))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_missing_mask(tmp_path):
    root, _ = make(tmp_path / 'd', 'palette')
    path = os.path.join(root, 'masks', 'b2.png')
    os.remove(path)
    expect_error(root, 'palette', tmp_path, path, 'mask not found')


def test_unknown_colour_in_rgb_mask(tmp_path):
    root, data = make(tmp_path / 'd', 'rgb')
    path = os.path.join(root, 'masks', 'a2.png')
    image = fx.cv2.cvtColor(fx.cv2.imread(path), fx.cv2.COLOR_BGR2RGB)
    image[0, :3] = [1, 2, 3]
    fx.write_png(path, image)
    expect_error(root, 'rgb', tmp_path, path, 'unknown colour in RGB mask: (1, 2, 3) x3')


def test_rgb_mask_without_colour_table(tmp_path):
    root, _ = make(tmp_path / 'd', 'rgb')
    expect_error(root, 'palette', tmp_path, 'masks', 'got image mode RGB', 'need --colors')


def test_size_mismatch(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    path = os.path.join(root, 'masks', 'c1.png')
    fx.write_png(path, np.zeros((5, 6), np.uint8))
    expect_error(root, 'gray', tmp_path, path, 'label is 5x6 but image')


def test_label_out_of_range(tmp_path):
    root, data = make(tmp_path / 'd', 'gray')
    path = os.path.join(root, 'masks', 'a1.png')
    label = data['a1'][1].copy()
    label[3, 3] = 7
    fx.write_png(path, label)
    expect_error(root, 'gray', tmp_path, path, 'label values [7] out of range: must be < 3')


def test_truncated_png_image(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    path = os.path.join(root, 'images', 'b1.png')
    fx.truncate_file(path, 0.6)
    expect_error(root, 'gray', tmp_path, path, 'unreadable or truncated image')


def test_list_entry_escaping_the_folder(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    train = os.path.join(root, 'train.txt')
    fx.write_list(train, ['a1', '../../outside'])
    expect_error(root, 'gray', tmp_path, train, "list entry '../../outside' escapes the data folder", train_list=train)


def test_listed_image_not_found(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    train = os.path.join(root, 'train.txt')
    fx.write_list(train, ['a1', 'zz9'])
    expect_error(root, 'gray', tmp_path, train, "listed image 'zz9' not found", train_list=train)


def test_empty_list_file(tmp_path):
    root, _ = make(tmp_path / 'd', 'gray')
    val = os.path.join(root, 'val.txt')
    fx.write_list(val, [])
    fx.write_list(os.path.join(root, 'train.txt'), ['a1'])
    expect_error(root, 'gray', tmp_path, val, 'split is empty', train_list=os.path.join(root, 'train.txt'),
                 val_list=val)


def test_skip_bad_lists_every_skipped_file(tmp_path):
    root, _ = make(tmp_path / 'd', 'rgb')
    missing = os.path.join(root, 'masks', 'a1.png')
    os.remove(missing)
    unknown = os.path.join(root, 'masks', 'b1.png')
    fx.write_png(unknown, np.full((24, 32, 3), 9, np.uint8))
    train = os.path.join(root, 'train.txt')
    fx.write_list(train, ['a1', 'b1', 'a2', 'c1', '../x'])
    summary = build.build(spec(root, 'rgb', train_list=train), str(tmp_path / 'out'), skip_bad=True)
    info = summary['splits']['train']
    assert info['num_images'] == 2
    reasons = {s['file']: s['reason'] for s in info['skipped']}
    assert reasons[missing] == 'mask not found'
    assert reasons[unknown].startswith('unknown colour in RGB mask: (9, 9, 9) x768')
    assert 'escapes the data folder' in reasons[train]
    assert len(info['skipped']) == 3


def test_colour_table_errors(tmp_path):
    path = str(tmp_path / 'colors.yaml')
    for table, message in [
        ({'classes': {'a': [0, 0, 0], 'b': [0, 0, 300]}}, 'class b: colour must be [r, g, b]'),
        ({'classes': {'a': [0, 0, 0], 'b': [0, 0, 0]}}, 'the same colour is given twice'),
        ({'classes': {'a': [0, 0, 0]}, 'ignore': [[0, 0, 0]]}, 'the same colour is given twice'),
        ({'clases': {'a': [0, 0, 0]}}, 'expected a mapping with "classes'),
        ({'classes': {'a': [0, 0, 0]}, 'extra': 1}, "unknown keys ['extra']"),
    ]:
        with open(path, 'w') as f:
            yaml.safe_dump(table, f)
        with pytest.raises(build.DatasetError) as info:
            folder.read_colour_table(path)
        assert message in str(info.value) and path in str(info.value)


def test_class_names_needed_and_must_match_colour_table(tmp_path):
    root, _ = make(tmp_path / 'd', 'rgb')
    images, masks = os.path.join(root, 'images'), os.path.join(root, 'masks')
    with pytest.raises(build.DatasetError, match='needs --class_names'):
        folder.folder_spec(images, masks)
    names = os.path.join(root, 'other.txt')
    fx.write_list(names, ['background', 'car', 'road'])
    with pytest.raises(build.DatasetError, match='class names differ'):
        folder.folder_spec(images, masks, names, os.path.join(root, 'colors.yaml'))


def test_cli_builds_a_folder_dataset(tmp_path, repo_root, capsys):
    import importlib.util
    root, _ = make(tmp_path / 'd', 'palette')
    loader = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(repo_root, 'build_tfrecords.py'))
    cli = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(cli)
    code = cli.main(['--dataset', 'folder', '--images', os.path.join(root, 'images'), '--masks',
                     os.path.join(root, 'masks'), '--class_names', os.path.join(root, 'classes.txt'),
                     '--out', str(tmp_path / 'out'), '--val_fraction', '0.5', '--seed', '3', '--num_workers', '1'])
    assert code == 0, capsys.readouterr().err
    assert 'train: 3 images' in capsys.readouterr().out
