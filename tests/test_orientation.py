"""EXIF orientation: real JPEGs tagged 3, 6 and 8 (Pillow) and 6 (exiftool, a camera-style EXIF
block) become upright records, untagged ones keep their bytes, a tagged label file is refused,
--ignore_exif_orientation keeps the raw pixels, COCO's label follows its JSON's frame, and the
build summary counts the turned images."""
import io
import json
import os
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import datasets_fixtures as fx
from external_tools import missing
from fcn import orientation
from fcn.data import build, coco, folder
from fcn.data.info import DatasetInfo
from fcn.data.palette import voc_palette, write_palette_png

# Independent of fcn.orientation: the turn a viewer applies, as np.rot90 (k > 0: counter-clockwise).
ROT90_K = {3: 2, 6: -1, 8: 1}


def tagged_jpeg(path, rgb, tag):
    """A JPEG written by Pillow with an EXIF block holding Orientation = tag."""
    exif = Image.Exif()
    exif[orientation.TAG] = tag
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())


def raw_pixels(path):
    """The stored pixels, as the builders decode them (OpenCV, tag ignored), RGB."""
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)[:, :, ::-1]


def test_upright_matches_pillow_exif_transpose_for_every_orientation(tmp_path):
    rgb = fx.random_image(np.random.default_rng(0), 24, 40)
    for tag in range(1, 9):
        path = str(tmp_path / ('%d.jpg' % tag))
        tagged_jpeg(path, rgb, tag)
        with open(path, 'rb') as f:
            assert orientation.jpeg_orientation(f.read()) == tag
        with Image.open(path) as image:
            raw = np.asarray(image)  # Pillow does not turn on open
            expected = np.asarray(ImageOps.exif_transpose(image))
        np.testing.assert_array_equal(orientation.upright(raw, tag), expected, err_msg='orientation %d' % tag)
        assert orientation.upright(raw, tag).shape[:2] == orientation.upright_size(24, 40, tag)


def test_no_tag_broken_exif_and_non_jpeg_are_upright(tmp_path):
    rgb = fx.random_image(np.random.default_rng(0), 16, 16)
    plain = io.BytesIO()
    Image.fromarray(rgb).save(plain, 'JPEG')
    assert orientation.jpeg_orientation(plain.getvalue()) == 1
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, 'PNG')
    assert orientation.jpeg_orientation(png.getvalue()) == 1
    exif = Image.Exif()
    exif[orientation.TAG] = 9  # not an orientation
    odd = io.BytesIO()
    Image.fromarray(rgb).save(odd, 'JPEG', exif=exif.tobytes())
    assert orientation.jpeg_orientation(odd.getvalue()) == 1
    assert orientation.jpeg_orientation(b'\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage') == 1


# ----------------------------------------------------------------------------- folder builder

def write_tagged_folder(root, tags=(3, 6, 8, 1)):
    """images/t<tag>.jpg tagged (1: no EXIF at all), raw 24x40; masks/ drawn on the upright view.

    Returns {stem: upright label}."""
    rng = np.random.default_rng(5)
    labels = {}
    for tag in tags:
        stem = 't%d' % tag
        rgb = fx.random_image(rng, 24, 40)
        path = os.path.join(root, 'images', stem + '.jpg')
        if tag == 1:
            fx.write_jpeg(path, rgb)
        else:
            tagged_jpeg(path, rgb, tag)
        height, width = orientation.upright_size(24, 40, tag)
        labels[stem] = fx.random_label(rng, height, width, 3)
        os.makedirs(os.path.join(root, 'masks'), exist_ok=True)
        write_palette_png(os.path.join(root, 'masks', stem + '.png'), labels[stem], voc_palette(256))
    fx.write_list(os.path.join(root, 'classes.txt'), fx.FOLDER_CLASSES)
    fx.write_list(os.path.join(root, 'train.txt'), ['t%d' % t for t in tags])
    return labels


def folder_build(root, out, *extra):
    return fx.build_cli().main(['--dataset', 'folder', '--images', os.path.join(root, 'images'),
                                '--masks', os.path.join(root, 'masks'), '--class_names',
                                os.path.join(root, 'classes.txt'), '--train_list', os.path.join(root, 'train.txt'),
                                '--out', out, '--num_workers', '1', '--no_progress'] + list(extra))


def test_folder_records_hold_the_upright_pixels_and_count_the_turned(tmp_path, capsys):
    root = str(tmp_path / 'set')
    labels = write_tagged_folder(root)
    out = str(tmp_path / 'out')
    assert folder_build(root, out) == 0, capsys.readouterr().err
    assert 'train: 4 images in 4 shards, 0 skipped, 3 turned upright (EXIF orientation)' in capsys.readouterr().out
    examples = {ex['filename']: ex for ex in fx.read_examples(out, 'train')}
    for tag, k in ROT90_K.items():
        ex, path = examples['t%d' % tag], os.path.join(root, 'images', 't%d.jpg' % tag)
        assert ex['format'] == 'png'  # re-encoded losslessly
        np.testing.assert_array_equal(ex['image'], np.rot90(raw_pixels(path), k), err_msg='orientation %d' % tag)
        assert (ex['height'], ex['width']) == ex['image'].shape[:2]
        np.testing.assert_array_equal(ex['label'], labels['t%d' % tag])
    untagged = examples['t1']
    with open(os.path.join(root, 'images', 't1.jpg'), 'rb') as f:
        assert untagged['format'] == 'jpeg' and untagged['image_bytes'] == f.read()  # original bytes kept
    assert DatasetInfo.read(out).splits['train'].to_dict()['exif_turned'] == 3


def test_ignore_exif_orientation_keeps_the_raw_pixels_and_bytes(tmp_path, capsys):
    root = str(tmp_path / 'set')
    write_tagged_folder(root, tags=(3,))  # 180 degrees: the upright mask has the raw size too
    out = str(tmp_path / 'out')
    assert folder_build(root, out, '--ignore_exif_orientation') == 0, capsys.readouterr().err
    assert 'turned' not in capsys.readouterr().out
    (ex,) = fx.read_examples(out, 'train')
    with open(os.path.join(root, 'images', 't3.jpg'), 'rb') as f:
        assert ex['format'] == 'jpeg' and ex['image_bytes'] == f.read()
    assert DatasetInfo.read(out).splits['train'].to_dict()['exif_turned'] == 0
    # the same folder built upright again: the setting is part of the fingerprint, the shard is rebuilt
    assert folder_build(root, out) == 0
    (ex,) = fx.read_examples(out, 'train')
    np.testing.assert_array_equal(ex['image'], np.rot90(raw_pixels(os.path.join(root, 'images', 't3.jpg')), 2))


def test_a_mask_on_the_raw_pixels_of_a_turned_photo_names_the_flag(tmp_path, capsys):
    root = str(tmp_path / 'set')
    write_tagged_folder(root, tags=(6,))
    mask = os.path.join(root, 'masks', 't6.png')
    write_palette_png(mask, np.zeros((24, 40), np.uint8), voc_palette(256))  # raw frame, not upright
    assert folder_build(root, str(tmp_path / 'out')) != 0
    error = fx.one_error_line(capsys)
    assert mask in error and 'label is 24x40 but image' in error and 'is 40x24' in error
    assert 'EXIF orientation 6' in error and '--ignore_exif_orientation' in error
    assert folder_build(root, str(tmp_path / 'raw'), '--ignore_exif_orientation') == 0


def test_a_label_file_with_an_orientation_tag_is_an_error_naming_it(tmp_path, capsys):
    root = str(tmp_path / 'set')
    labels = write_tagged_folder(root, tags=(1,))
    mask = os.path.join(root, 'masks', 't1.png')
    exif = Image.Exif()
    exif[orientation.TAG] = 8
    image = Image.fromarray(labels['t1'], 'P')
    image.putpalette(voc_palette(256).ravel().tolist())
    image.save(mask, exif=exif.tobytes())
    assert orientation.file_orientation(mask) == 8
    assert folder_build(root, str(tmp_path / 'out')) != 0
    error = fx.one_error_line(capsys)
    assert mask in error and 'carries an EXIF orientation 8' in error and '--ignore_exif_orientation' in error
    assert folder_build(root, str(tmp_path / 'raw'), '--ignore_exif_orientation') == 0  # today's behaviour


def test_a_camera_style_exif_block_written_by_exiftool_is_turned(tmp_path, capsys):
    if subprocess.run(['sh', '-c', 'command -v exiftool'], capture_output=True).returncode:
        missing('exiftool is not installed (Debian: apt-get install libimage-exiftool-perl)')
    root = str(tmp_path / 'set')
    write_tagged_folder(root, tags=(1,))
    path = os.path.join(root, 'images', 't1.jpg')
    raw = raw_pixels(path)
    upright_label = fx.random_label(np.random.default_rng(9), 40, 24, 3)
    write_palette_png(os.path.join(root, 'masks', 't1.png'), upright_label, voc_palette(256))
    result = subprocess.run(['exiftool', '-overwrite_original', '-n', '-Orientation=6', '-Make=Canon',
                             '-Model=Canon EOS 5D', '-DateTimeOriginal=2024:05:01 10:00:00', '-FNumber=4.0',
                             '-ExposureTime=0.004', '-ISO=200', path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(raw_pixels(path), raw)  # exiftool changed the tags, not the pixels
    out = str(tmp_path / 'out')
    assert folder_build(root, out) == 0, capsys.readouterr().err
    (ex,) = fx.read_examples(out, 'train')
    np.testing.assert_array_equal(ex['image'], np.rot90(raw, -1))
    np.testing.assert_array_equal(ex['label'], upright_label)


# ----------------------------------------------------------------------------- COCO

def write_tagged_coco(root, json_size, tag=6):
    """One train image, raw 24x40, tagged `tag`; its JSON says json_size ('raw' or 'upright') and
    the person box is drawn in that frame. Returns the label expected in the record."""
    scenes = {'train': [('000000000501', 24, 40, [])], 'val': [('000000000601', 24, 40, [])]}
    fx.write_coco(root, scenes)
    path = os.path.join(root, 'train2017', '000000000501.jpg')
    tagged_jpeg(path, raw_pixels(path).copy(), tag)
    height, width = (24, 40) if json_size == 'raw' else orientation.upright_size(24, 40, tag)
    mask = fx.box(height, width, 2, 12, 3, 20)
    with open(coco.annotation_path(root, 'train')) as f:
        doc = json.load(f)
    doc['images'][0].update(height=height, width=width)
    doc['annotations'] = [{'id': 1, 'image_id': 1, 'category_id': 1, 'iscrowd': 0, 'area': float(mask.sum()),
                           'bbox': [3.0, 2.0, 17.0, 10.0], 'segmentation': fx.rle_compressed(mask)}]
    with open(coco.annotation_path(root, 'train'), 'w') as f:
        json.dump(doc, f)
    label = np.where(mask, 15, 0).astype(np.uint8)  # person = 15 in voc20
    return np.rot90(label, ROT90_K[tag]) if json_size == 'raw' else label


@pytest.mark.parametrize('json_size, tag', [('raw', 6), ('upright', 6), ('raw', 3)])
def test_coco_label_follows_the_frame_its_json_describes(json_size, tag, tmp_path):
    """The JSON's size tells the frame; where it cannot (180 degrees), the raw pixels' (COCO's own)."""
    root = str(tmp_path / 'coco')
    expected = write_tagged_coco(root, json_size, tag)
    out = str(tmp_path / 'out')
    summary = build.build(coco.coco_spec(root, ['train', 'val'], min_labeled_pixels=0), out)
    (ex,) = fx.read_examples(out, 'train')
    raw = raw_pixels(os.path.join(root, 'train2017', '000000000501.jpg'))
    np.testing.assert_array_equal(ex['image'], np.rot90(raw, ROT90_K[tag]))
    np.testing.assert_array_equal(ex['label'], expected)
    assert summary['splits']['train']['exif_turned'] == 1 and summary['splits']['val']['exif_turned'] == 0


def test_folder_items_take_masks_as_upright():
    item = folder.IndexMaskItem('a', 'a.jpg', 'a.png')
    assert not item.labelled_on_raw_pixels((40, 24), (24, 40))


def test_voc_and_sbd_builders_turn_tagged_jpegs_too(tmp_path):
    """Every builder reads its photos through fcn.data.build.load_image: VOC's JPEGImages and
    SBD's img/ alike (a 180-degree tag keeps the size, so only the pixels tell)."""
    from fcn.data import voc
    voc_dir, sbd_dir = str(tmp_path / 'VOC2012'), str(tmp_path / 'sbd')
    data = fx.write_voc(voc_dir, {'train': ['2007_000001'], 'val': ['2007_000002']})
    fx.write_sbd(sbd_dir, {'train': ['2008_000100'], 'val': []})
    paths = [os.path.join(voc_dir, 'JPEGImages', '2007_000001.jpg'), os.path.join(sbd_dir, 'img', '2008_000100.jpg')]
    for path in paths:
        tagged_jpeg(path, raw_pixels(path).copy(), 3)
    out = str(tmp_path / 'out')
    summary = build.build(voc.voc_spec(voc_dir, ['train', 'train_aug'], sbd_dir=sbd_dir), out)
    examples = {ex['filename']: ex for ex in fx.read_examples(out, 'train_aug')}
    for stem, path in zip(('2007_000001', '2008_000100'), paths):
        np.testing.assert_array_equal(examples[stem]['image'], np.rot90(raw_pixels(path), 2), err_msg=stem)
    np.testing.assert_array_equal(examples['2007_000001']['label'], data['2007_000001'][1])
    assert summary['splits']['train']['exif_turned'] == 1 and summary['splits']['train_aug']['exif_turned'] == 2


def test_indexed_records_with_tagged_jpegs_get_a_warning(tmp_path, capsys):
    """Records of another tool keep their bytes: `--dataset records` counts the tagged JPEGs
    (`exif_tagged`) and warns that training reads them unturned."""
    root = str(tmp_path / 'set')
    write_tagged_folder(root, tags=(3, 1))
    raw_records = str(tmp_path / 'raw')
    assert folder_build(root, raw_records, '--ignore_exif_orientation') == 0, capsys.readouterr().err
    capsys.readouterr()
    out = str(tmp_path / 'indexed')
    assert fx.build_in_process('records', raw_records, out, '--num_classes', '3') == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "warning: split 'train': 1 image carries an EXIF orientation: these records hold the raw pixels" in err
    assert DatasetInfo.read(out).splits['train'].to_dict()['exif_tagged'] == 1
    upright_records = str(tmp_path / 'upright')
    assert folder_build(root, upright_records) == 0
    assert fx.build_in_process('records', upright_records, str(tmp_path / 'indexed2'), '--num_classes', '3') == 0
    assert 'EXIF' not in capsys.readouterr().err
