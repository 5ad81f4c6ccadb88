"""Label sanity after a build: one `warning:` line per problem of a split; --mask_map for binary masks."""
import importlib.util
import os

import numpy as np
import pytest

import datasets_fixtures as fx
from fcn.data import folder, sanity
from fcn.data.info import DatasetInfo, SplitInfo
from fcn.data.spec import DatasetError


def _cli(repo_root):
    loader = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(repo_root, 'build_tfrecords.py'))
    cli = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(cli)
    return cli


def _binary_folder(root):
    """Four 16x16 images whose masks are 0 (background) and 255 (the object), as most tools save them."""
    rng = np.random.default_rng(0)
    for i in range(4):
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 2 + i:10 + i] = 255
        fx.write_jpeg(os.path.join(root, 'images', 'm%d.jpg' % i), fx.random_image(rng, 16, 16))
        fx.write_png(os.path.join(root, 'masks', 'm%d.png' % i), mask)
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write('background\nobject\n')


def _build(cli, root, out, *extra):
    return cli.main(['--dataset', 'folder', '--images', os.path.join(root, 'images'), '--masks',
                     os.path.join(root, 'masks'), '--class_names', os.path.join(root, 'classes.txt'),
                     '--out', out, '--val_fraction', '0.25', '--num_workers', '1', '--no_progress'] + list(extra))


def test_binary_masks_warn_and_mask_map_maps_255_to_a_class(tmp_path, repo_root, capsys):
    cli, root = _cli(repo_root), str(tmp_path / 'data')
    _binary_folder(root)
    assert _build(cli, root, str(tmp_path / 'plain')) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith('warning: ')]
    binary = [line for line in warnings if 'only 0 and 255' in line]
    assert len(binary) == 2  # one line per split (train, val)
    assert all('255 is the ignore label' in line and '--mask_map 255:1' in line for line in binary)

    assert _build(cli, root, str(tmp_path / 'mapped'), '--mask_map', '255:1') == 0
    assert 'warning:' not in capsys.readouterr().err
    info = DatasetInfo.read(str(tmp_path / 'mapped'))
    assert info.split('train').ignored_pixels == 0 and info.split('train').class_pixel_counts[1] == 3 * 64
    labels = [ex['label'] for split in ('train', 'val') for ex in fx.read_examples(str(tmp_path / 'mapped'), split)]
    assert sorted(np.unique(np.concatenate([l.ravel() for l in labels])).tolist()) == [0, 1]


def test_mask_map_errors_name_the_entry(tmp_path):
    assert folder.parse_mask_map('255:1, 128:2') == {255: 1, 128: 2}
    for bad in ('255', '255:x', '256:1', '255:1,255:2'):
        with pytest.raises(DatasetError, match='--mask_map entry'):
            folder.parse_mask_map(bad)
    root = str(tmp_path / 'data')
    _binary_folder(root)
    with pytest.raises(DatasetError, match='--mask_map 255:7: 7 is neither a class id'):
        folder.folder_spec(os.path.join(root, 'images'), os.path.join(root, 'masks'),
                           os.path.join(root, 'classes.txt'), mask_map={255: 7})


def _info(**splits):
    return DatasetInfo(num_classes=3, class_names=('bg', 'cat', 'dog'), palette=((0, 0, 0),) * 3,
                       splits={name: SplitInfo(num_images=1, class_pixel_counts=counts, ignored_pixels=ignored)
                               for name, (counts, ignored) in splits.items()})


def test_classes_without_training_pixels_and_mostly_ignored_splits_warn_once_each():
    lines = sanity.warnings_for(_info(train=((50, 0, 10), 5), val=((6, 0, 4), 30)))
    assert lines == ["split 'train': 1 of 3 classes have no pixels (cat): they cannot be learned",
                     "split 'val': 75% of the pixels are the ignore label 255"]
    assert sanity.warnings_for(_info(train=((50, 20, 10), 5), val=((10, 0, 3), 3))) == []
