"""browse_dataset.py: one PNG per record (image | label in the palette's colours | overlay +
legend), named after the record; with --augment after the training preprocessing, at crop size."""
import os

import cv2
import numpy as np
import pytest

from datasets_fixtures import read_examples
from fcn import browse, visualize
from fcn.data.info import DatasetInfo
from pipeline_fixtures import build_synthetic, run_script

SIZE, CROP = 48, 64


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=3, num_val=1, size=SIZE)


def _read_rgb(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1]


def _examples_by_stem(data_dir):
    return {os.path.splitext(ex['filename'])[0]: ex for ex in read_examples(data_dir, 'train')}


def _panels(sheet, width, height):
    """image, label and overlay panels of a sample sheet whose panels are `width` x `height`."""
    top = visualize.TITLE_HEIGHT
    return [sheet[top:top + height, i * width:(i + 1) * width] for i in range(3)]


def _colours(rgb):
    return {tuple(c) for c in rgb.reshape(-1, 3)}


def test_browser_writes_image_label_and_overlay_of_each_record(data_dir, tmp_path):
    info = DatasetInfo.read(data_dir)
    out = str(tmp_path / 'plain')
    paths = browse.write_samples(data_dir, 'train', info, out, num=10, log=lambda *_: None)
    examples = _examples_by_stem(data_dir)
    assert len(paths) == 3  # no more samples than records without augmentation
    assert sorted(os.path.basename(p).split('_', 1)[1][:-4] for p in paths) == sorted(examples)
    palette = visualize.full_palette(info.palette, info.ignore_label)
    for path in paths:
        example = examples[os.path.basename(path).split('_', 1)[1][:-4]]
        sheet = _read_rgb(path)
        assert sheet.shape[1] == 3 * SIZE + 200 and sheet.shape[0] >= visualize.TITLE_HEIGHT + SIZE
        image, label, blended = _panels(sheet, SIZE, SIZE)
        np.testing.assert_array_equal(image, example['image'])
        np.testing.assert_array_equal(label, palette[example['label']])  # exactly the palette's colours
        assert {0, 255} < set(np.unique(example['label']))  # classes, background and void all drawn
        background = example['label'] == 0
        np.testing.assert_array_equal(blended[background], example['image'][background])
        legend = sheet[visualize.TITLE_HEIGHT:, 3 * SIZE:]
        for class_id in np.unique(example['label']):  # a swatch per class present, void included
            assert (legend == palette[class_id]).all(axis=2).sum() >= 100, class_id


def test_browse_script_with_augment_shows_the_training_crop(data_dir, tmp_path):
    out = str(tmp_path / 'augmented')
    result = run_script('browse_dataset.py', '--config', 'configs/demo.yaml', '--set', 'data.dir=' + data_dir,
                        '--set', 'train.crop_size=%d' % CROP, '--set', 'augment.min_scale=1.0',
                        '--set', 'augment.max_scale=1.0', '--augment', '--num', '4', '--out', out)
    assert result.returncode == 0, result.stderr
    assert '4 samples of split \'train\' written to %s' % out in result.stdout
    names = sorted(os.listdir(out))
    assert len(names) == 4  # augmented: a second pass over the 3 records draws new crops
    info = DatasetInfo.read(data_dir)
    palette = visualize.full_palette(info.palette, info.ignore_label)
    void = tuple(palette[info.ignore_label])
    examples = _examples_by_stem(data_dir)
    for name in names:
        example = examples[name.split('_', 1)[1][:-4]]
        sheet = _read_rgb(os.path.join(out, name))
        assert sheet.shape[1] == 3 * CROP + 200
        _, label, _ = _panels(sheet, CROP, CROP)
        allowed = {tuple(palette[c]) for c in np.unique(example['label'])}
        assert _colours(label) <= allowed  # the record's classes, nearest-neighbour scaled
        # the 48 px image padded to the 64 px crop: the padding is labelled void
        assert (label == void).all(axis=2).sum() >= CROP * CROP - SIZE * SIZE


def test_browse_script_names_a_bad_split(data_dir, tmp_path):
    result = run_script('browse_dataset.py', '--config', 'configs/demo.yaml', '--set', 'data.dir=' + data_dir,
                        '--split', 'nosuch', '--out', str(tmp_path / 'x'))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith('error: ') and 'nosuch' in result.stderr
