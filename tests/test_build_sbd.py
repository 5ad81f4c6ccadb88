"""SBD .mat labels and the train_aug split (VOC train + SBD train/val - VOC val; VOC labels win)."""
import os

import numpy as np
import pytest
import scipy.io

import datasets_fixtures as fx
from fcn.data import build, sbd, voc
from fcn.data.info import DatasetInfo

VOC_TRAIN = ['2007_000001', '2007_000002', '2007_000003']
VOC_VAL = ['2007_000010', '2007_000011']
SBD_TRAIN = ['2007_000002', '2008_000100', '2007_000010']   # 2007_000010 is VOC val: left out
SBD_VAL = ['2008_000200', '2007_000003']


@pytest.fixture
def trees(tmp_path):
    voc_dir, sbd_dir = str(tmp_path / 'VOC2012'), str(tmp_path / 'SBD' / 'dataset')
    voc_data = fx.write_voc(voc_dir, {'train': VOC_TRAIN, 'val': VOC_VAL})
    images = {stem: image for stem, (image, _) in voc_data.items()}
    sbd_data = fx.write_sbd(sbd_dir, {'train': SBD_TRAIN, 'val': SBD_VAL}, images=images)
    return voc_dir, sbd_dir, voc_data, sbd_data


def test_fixture_mat_has_the_real_sbd_structure(trees):
    _, sbd_dir, _, sbd_data = trees
    mat = scipy.io.loadmat(os.path.join(sbd_dir, 'cls', '2008_000100.mat'))
    assert mat['GTcls'].shape == (1, 1)
    assert mat['GTcls'].dtype.names == ('Boundaries', 'Segmentation', 'CategoriesPresent')
    segmentation = mat['GTcls']['Segmentation'][0][0]
    assert segmentation.dtype == np.uint8
    np.testing.assert_array_equal(segmentation, sbd_data['2008_000100'][1])
    assert mat['GTcls']['Boundaries'][0][0].shape == (20, 1)


def test_train_aug_membership_and_label_sources(trees, tmp_path):
    voc_dir, sbd_dir, voc_data, sbd_data = trees
    out = str(tmp_path / 'out')
    summary = build.build(voc.voc_spec(voc_dir, ['train', 'val', 'train_aug'], sbd_dir=sbd_dir), out)
    expected = sorted(set(VOC_TRAIN) | {'2008_000100', '2008_000200'})
    examples = {ex['filename']: ex for ex in fx.read_examples(out, 'train_aug')}
    assert sorted(examples) == expected
    assert summary['splits']['train_aug']['num_images'] == len(expected)
    for stem, ex in examples.items():
        source = voc_data if stem in VOC_TRAIN else sbd_data
        np.testing.assert_array_equal(ex['label'], source[stem][1])
    # 2007_000002 and 2007_000003 have both labels, and they differ: VOC's was used.
    for stem in ('2007_000002', '2007_000003'):
        assert not np.array_equal(voc_data[stem][1], sbd_data[stem][1])
    # SBD-only images come from SBD's img/ when VOC's JPEGImages lacks them
    with open(os.path.join(sbd_dir, 'img', '2008_000100.jpg'), 'rb') as f:
        assert examples['2008_000100']['image_bytes'] == f.read()
    assert sorted(summary['splits']) == ['train', 'train_aug', 'val']


def test_cli_adds_train_aug_when_sbd_dir_given(trees, tmp_path, repo_root):
    from fcn.tools import build_records as cli  # build_tfrecords.py's main, parser and flag mapping
    voc_dir, sbd_dir, _, _ = trees
    args = cli.make_parser().parse_args(['--dataset', 'voc', '--data_dir', voc_dir, '--sbd_dir', sbd_dir,
                                         '--out', str(tmp_path / 'out')])
    spec = cli.voc_spec(args)
    assert list(spec.splits) == ['train', 'val', 'train_aug']


def test_train_aug_without_sbd_dir_is_an_error(trees):
    voc_dir = trees[0]
    with pytest.raises(build.DatasetError, match='--sbd_dir'):
        voc.voc_spec(voc_dir, ['train_aug'])


def test_not_an_sbd_folder(trees, tmp_path):
    with pytest.raises(build.DatasetError, match='cls/ is missing'):
        voc.voc_spec(trees[0], ['train_aug'], sbd_dir=str(tmp_path))


def build_error(trees, tmp_path):
    voc_dir, sbd_dir, _, _ = trees
    with pytest.raises(build.DatasetError) as info:
        build.build(voc.voc_spec(voc_dir, ['train_aug'], sbd_dir=sbd_dir), str(tmp_path / 'out'))
    return str(info.value)


def test_missing_mat_names_the_file(trees, tmp_path):
    path = os.path.join(trees[1], 'cls', '2008_000200.mat')
    os.remove(path)
    message = build_error(trees, tmp_path)
    assert path in message and 'label not found' in message


def test_corrupt_mat_names_the_file(trees, tmp_path):
    path = os.path.join(trees[1], 'cls', '2008_000200.mat')
    fx.truncate_file(path, 0.3)
    message = build_error(trees, tmp_path)
    assert path in message and 'unreadable .mat file' in message


def test_mat_without_gtcls_names_the_file(trees, tmp_path):
    path = os.path.join(trees[1], 'cls', '2008_000100.mat')
    scipy.io.savemat(path, {'GTinst': {'Segmentation': np.zeros((4, 4), np.uint8)}})
    message = build_error(trees, tmp_path)
    assert path in message and 'no GTcls.Segmentation' in message


def test_sbd_label_size_mismatch(trees, tmp_path):
    path = os.path.join(trees[1], 'cls', '2008_000100.mat')
    fx.write_sbd_mat(path, np.zeros((7, 9), np.uint8))
    message = build_error(trees, tmp_path)
    assert path in message and 'label is 7x9 but image' in message


def test_sbd_list_entry_escaping(trees, tmp_path):
    path = os.path.join(trees[1], 'val.txt')
    fx.write_list(path, SBD_VAL + ['../../../etc/passwd'])
    message = build_error(trees, tmp_path)
    assert path in message and 'escapes the data folder' in message
    summary = build.build(voc.voc_spec(trees[0], ['train_aug'], sbd_dir=trees[1]), str(tmp_path / 'out'),
                          skip_bad=True)
    assert summary['splits']['train_aug']['skipped'] == [
        {'file': path, 'reason': "list entry '../../../etc/passwd.jpg' escapes the data folder %s"
                                 % os.path.join(trees[0], 'JPEGImages')}]
    assert DatasetInfo.read(str(tmp_path / 'out')).to_dict()['splits']['train_aug']['num_images'] == 5


def test_read_sbd_label_converts_integer_doubles(tmp_path):
    path = str(tmp_path / 'x.mat')
    scipy.io.savemat(path, {'GTcls': {'Segmentation': np.array([[0.0, 15.0], [255.0, 3.0]])}})
    np.testing.assert_array_equal(sbd.read_sbd_label(path), np.array([[0, 15], [255, 3]], np.uint8))
    scipy.io.savemat(path, {'GTcls': {'Segmentation': np.array([[0.5, 300.0]])}})
    with pytest.raises(build.DatasetError, match='integers in 0..255'):
        sbd.read_sbd_label(path)
