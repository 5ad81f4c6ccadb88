"""The FCN paper's protocol splits: seg11valid (the 736 ids shipped in fcn/data, VOC's labels) and
sbd_train (SBD's train.txt, SBD's labels even where VOC has one), on VOC2012 + SBD trees in the
real layouts holding every seg11valid id (8x8 images, to stay fast)."""
import os

import numpy as np
import pytest

import datasets_fixtures as fx
from fcn.data import build, voc
from fcn.data.info import DatasetInfo
from fcn.data.spec import read_list

# sha1 of fcn.berkeleyvision.org's seg11valid.txt (data/pascal/seg11valid.txt), 736 lines
REFERENCE_SHA1 = 'dc143d96cbef27941a92fe028359eb919ded5723'
SEG11VALID = read_list(voc.SEG11VALID_LIST)
VOC_TRAIN = ['2008_000002', '2008_000003', '2008_000007']           # not in seg11valid
SBD_ONLY = ['2008_100001', '2008_100002']                           # in SBD, not in VOC2012's segmentation lists
SBD_TRAIN = ['2008_000002', '2008_000003'] + SBD_ONLY              # two with a VOC label too
SBD_VAL = ['2008_000007']


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp('protocol')
    voc_dir, sbd_dir = str(root / 'VOC2012'), str(root / 'SBD' / 'dataset')
    voc_data = fx.write_voc(voc_dir, {'train': VOC_TRAIN, 'val': SEG11VALID[:5], 'seg11valid_all': SEG11VALID},
                            sizes=((8, 8), (8, 10)))
    images = {stem: image for stem, (image, _) in voc_data.items()}
    sbd_data = fx.write_sbd(sbd_dir, {'train': SBD_TRAIN, 'val': SBD_VAL}, images=images, sizes=((8, 8),))
    return voc_dir, sbd_dir, voc_data, sbd_data


def test_the_shipped_list_is_the_reference_seg11valid():
    import hashlib
    with open(voc.SEG11VALID_LIST, 'rb') as f:
        assert hashlib.sha1(f.read()).hexdigest() == REFERENCE_SHA1
    assert len(SEG11VALID) == 736 and len(set(SEG11VALID)) == 736
    assert SEG11VALID[0] == '2007_000033' and SEG11VALID[-1] == '2011_003271'


def test_seg11valid_and_sbd_train_ids_counts_and_label_sources(trees, tmp_path, capsys):
    voc_dir, sbd_dir, voc_data, sbd_data = trees
    out = str(tmp_path / 'out')
    code = fx.build_in_process('voc', voc_dir, out, '--sbd_dir', sbd_dir, '--splits', 'seg11valid,sbd_train')
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert 'seg11valid: 736 images' in printed and 'sbd_train: 4 images' in printed
    info = DatasetInfo.read(out)
    assert sorted(info.splits) == ['sbd_train', 'seg11valid']
    assert info.splits['seg11valid'].num_images == 736 and info.splits['sbd_train'].num_images == 4

    seg = {ex['filename']: ex for ex in fx.read_examples(out, 'seg11valid')}
    assert sorted(seg) == sorted(SEG11VALID)
    for stem, ex in seg.items():
        np.testing.assert_array_equal(ex['label'], voc_data[stem][1], err_msg=stem)  # VOC's labels

    sbd_train = {ex['filename']: ex for ex in fx.read_examples(out, 'sbd_train')}
    assert sorted(sbd_train) == sorted(SBD_TRAIN)
    for stem, ex in sbd_train.items():
        np.testing.assert_array_equal(ex['label'], sbd_data[stem][1], err_msg=stem)  # SBD's, always
    for stem in ('2008_000002', '2008_000003'):  # VOC has a label for these, and it differs: SBD's was used
        assert not np.array_equal(voc_data[stem][1], sbd_data[stem][1])
    with open(os.path.join(sbd_dir, 'img', '2008_100001.jpg'), 'rb') as f:
        assert sbd_train['2008_100001']['image_bytes'] == f.read()


def test_seg11valid_needs_no_sbd_and_sbd_train_needs_it(trees, tmp_path, capsys):
    voc_dir, _, _, _ = trees
    spec = voc.voc_spec(voc_dir, ['seg11valid'])
    assert [item.name for item in spec.splits['seg11valid']] == SEG11VALID
    assert fx.build_in_process('voc', voc_dir, str(tmp_path / 'out'), '--splits', 'sbd_train') != 0
    assert 'split sbd_train needs --sbd_dir' in fx.one_error_line(capsys)


def test_a_missing_seg11valid_image_is_named_with_the_list(trees, tmp_path, capsys):
    voc_dir, _, _, _ = trees
    stem = SEG11VALID[100]
    path = os.path.join(voc_dir, 'JPEGImages', stem + '.jpg')
    moved = path + '.moved'
    os.rename(path, moved)
    try:
        out = str(tmp_path / 'out')
        assert fx.build_in_process('voc', voc_dir, out, '--splits', 'seg11valid') != 0
        error = fx.one_error_line(capsys)
        assert voc.SEG11VALID_LIST in error and stem in error and path in error
        assert '1 of the 736 images listed here are missing' in error
        assert not os.path.exists(os.path.join(out, 'summary.json'))  # refused before building
    finally:
        os.rename(moved, path)


def test_a_missing_sbd_train_label_is_named_with_the_list(trees, tmp_path):
    voc_dir, sbd_dir, _, _ = trees
    mat = os.path.join(sbd_dir, 'cls', '2008_100002.mat')
    moved = mat + '.moved'
    os.rename(mat, moved)
    try:
        with pytest.raises(build.DatasetError) as error:
            voc.voc_spec(voc_dir, ['sbd_train'], sbd_dir=sbd_dir)
        assert error.value.file == os.path.join(sbd_dir, 'train.txt')
        assert '2008_100002' in error.value.reason and mat in error.value.reason
    finally:
        os.rename(moved, mat)


def test_an_sbd_train_list_overlapping_seg11valid_is_refused(trees, tmp_path):
    voc_dir, _, _, _ = trees
    sbd_dir = str(tmp_path / 'sbd')
    fx.write_sbd(sbd_dir, {'train': ['2008_000002', SEG11VALID[0]]}, sizes=((8, 8),))
    with pytest.raises(build.DatasetError, match="1 of its images are in seg11valid .*%s" % SEG11VALID[0]):
        voc.voc_spec(voc_dir, ['sbd_train'], sbd_dir=sbd_dir)
