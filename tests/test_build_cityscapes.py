"""Cityscapes in its official layout: labelIds -> the 19 training ids pixel for pixel, labelTrainIds
as they are, the clear errors, the recipe, and a few training steps on the built records."""
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

import datasets_fixtures as fx
from fcn.data.info import DatasetInfo
from pipeline_fixtures import REPO_ROOT

# cityscapesScripts helpers/labels.py, written out independently of fcn.data.cityscapes:
# labelId -> trainId of the 19 evaluated classes; every other id (0..33) is ignored (255).
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NAMES = ['road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation',
         'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle']
TREE = {'train': {'aachen': ['000000_000019', '000001_000019'], 'bochum': ['000000_000313']},
        'val': {'frankfurt': ['000000_000294']}}
HEIGHT, WIDTH = 32, 64


def expected_train_ids(label_ids):
    table = np.full(256, 255, np.uint8)
    for label_id, train_id in TRAIN_IDS.items():
        table[label_id] = train_id
    return table[label_ids]


def write_label(path, ids):
    """As cityscapesScripts' json2labelImg.py saves them: an 8-bit single-channel ('L') PNG of ids."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), mode='L').save(path)


def write_cityscapes(root, seed=0):
    """The official tree: images, labelIds, labelTrainIds, plus the color / instanceIds / polygons
    files a download also holds (the builder must leave them alone). Returns {stem: labelIds}."""
    rng = np.random.default_rng(seed)
    label_ids = {}
    for split, cities in TREE.items():
        for city, frames in cities.items():
            for frame in frames:
                stem = '%s_%s' % (city, frame)
                fx.write_png(os.path.join(root, 'leftImg8bit', split, city, stem + '_leftImg8bit.png'),
                             fx.random_image(rng, HEIGHT, WIDTH))
                ids = rng.permutation(np.resize(np.arange(34), HEIGHT * WIDTH)).reshape(HEIGHT, WIDTH)  # every id 0..33
                base = os.path.join(root, 'gtFine', split, city, stem + '_gtFine_')
                write_label(base + 'labelIds.png', ids)
                write_label(base + 'labelTrainIds.png', expected_train_ids(ids))
                fx.write_png(base + 'color.png', rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
                cv2.imwrite(base + 'instanceIds.png', (ids.astype(np.uint16) * 1000))  # 16-bit, as shipped
                with open(base + 'polygons.json', 'w') as f:
                    json.dump({'imgHeight': HEIGHT, 'imgWidth': WIDTH, 'objects': []}, f)
                label_ids[stem] = ids.astype(np.uint8)
    return label_ids


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path / 'cityscapes')
    return root, write_cityscapes(root)


def build(root, out, *extra):
    return fx.build_in_process('cityscapes', root, out, *extra)


def test_label_ids_become_the_19_train_ids_pixel_for_pixel(tree, tmp_path, capsys):
    root, label_ids = tree
    out = str(tmp_path / 'out')
    assert build(root, out) == 0, capsys.readouterr().err
    info = DatasetInfo.read(out)
    assert info.name == 'cityscapes' and list(info.class_names) == NAMES and info.ignore_label == 255
    assert info.palette[0] == (128, 64, 128) and info.palette[13] == (0, 0, 142) and info.palette[18] == (119, 11, 32)
    assert {s: info.splits[s].num_images for s in info.splits} == {'train': 3, 'val': 1}
    for split in ('train', 'val'):
        for example in fx.read_examples(out, split):
            ids = label_ids[example['filename']]
            np.testing.assert_array_equal(example['label'], expected_train_ids(ids))
            for label_id in range(34):  # each id of the table, train and ignored (0 'unlabeled' included)
                assert set(np.unique(example['label'][ids == label_id])) == {TRAIN_IDS.get(label_id, 255)}
            assert example['label_channels'] == 1 and (example['height'], example['width']) == (HEIGHT, WIDTH)
            city = example['filename'].split('_')[0]
            image = cv2.imread(os.path.join(root, 'leftImg8bit', split, city, example['filename'] + '_leftImg8bit.png'))
            np.testing.assert_array_equal(example['image'], cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def test_label_train_ids_are_taken_as_they_are(tree, tmp_path, capsys):
    root, label_ids = tree
    out = str(tmp_path / 'out')
    assert build(root, out, '--label_type', 'labelTrainIds', '--splits', 'train') == 0, capsys.readouterr().err
    examples = fx.read_examples(out, 'train')
    assert len(examples) == 3
    for example in examples:
        np.testing.assert_array_equal(example['label'], expected_train_ids(label_ids[example['filename']]))


def test_license_plate_minus_one_as_uint8_is_ignored(tree, tmp_path, capsys):
    """-1 is never drawn into labelIds; a tool that writes it as uint8 writes 255, which stays ignored."""
    root, label_ids = tree
    path = os.path.join(root, 'gtFine', 'val', 'frankfurt', 'frankfurt_000000_000294_gtFine_labelIds.png')
    ids = label_ids['frankfurt_000000_000294'].copy()
    ids[:4, :4] = 255
    write_label(path, ids)
    out = str(tmp_path / 'out')
    assert build(root, out, '--splits', 'val') == 0, capsys.readouterr().err
    [example] = fx.read_examples(out, 'val')
    np.testing.assert_array_equal(example['label'], expected_train_ids(ids))
    assert (example['label'][:4, :4] == 255).all()


def test_folder_without_gtfine_is_a_clear_error(tree, tmp_path, capsys):
    import shutil
    root, _ = tree
    shutil.rmtree(os.path.join(root, 'gtFine'))
    assert build(root, str(tmp_path / 'out')) == 2
    line = fx.one_error_line(capsys)
    assert root in line and 'not a Cityscapes folder: gtFine/ is missing' in line


def test_image_without_its_label_is_named(tree, tmp_path, capsys):
    root, _ = tree
    label = os.path.join(root, 'gtFine', 'train', 'bochum', 'bochum_000000_000313_gtFine_labelIds.png')
    os.remove(label)
    assert build(root, str(tmp_path / 'out')) == 2
    line = fx.one_error_line(capsys)
    assert label in line and 'label not found for image' in line and 'bochum_000000_000313_leftImg8bit.png' in line
    out = str(tmp_path / 'skipped')
    assert build(root, out, '--skip_bad') == 0
    train = DatasetInfo.read(out).splits['train']
    assert train.num_images == 2 and [s['file'] for s in train.skipped] == [label]


def test_label_id_outside_the_table_is_named(tree, tmp_path, capsys):
    root, label_ids = tree
    path = os.path.join(root, 'gtFine', 'train', 'aachen', 'aachen_000001_000019_gtFine_labelIds.png')
    ids = label_ids['aachen_000001_000019'].copy()
    ids[0, 0], ids[1, 1] = 34, 40
    write_label(path, ids)
    assert build(root, str(tmp_path / 'out'), '--splits', 'train') == 2
    line = fx.one_error_line(capsys)
    assert path in line and "label values 34, 40 not in Cityscapes' labelIds table (ids 0..33" in line


def test_train_id_outside_the_classes_is_named(tree, tmp_path, capsys):
    root, label_ids = tree
    path = os.path.join(root, 'gtFine', 'val', 'frankfurt', 'frankfurt_000000_000294_gtFine_labelTrainIds.png')
    write_label(path, np.full((HEIGHT, WIDTH), 19, np.uint8))
    assert build(root, str(tmp_path / 'out'), '--label_type', 'labelTrainIds') == 2
    line = fx.one_error_line(capsys)
    assert path in line and 'label values [19] out of range: must be < 19' in line


def test_unknown_split_is_a_clear_error(tree, tmp_path, capsys):
    root, _ = tree
    assert build(root, str(tmp_path / 'out'), '--splits', 'train,test') == 2
    assert "split 'test' not found: no leftImg8bit/test/ folder" in fx.one_error_line(capsys)


def test_recipe_loads_and_trains_on_the_built_records(tree, tmp_path, capsys):
    from fcn import train_lib
    from fcn.compat import tf1
    from fcn.config import load_config
    root, _ = tree
    out = str(tmp_path / 'out')
    assert build(root, out) == 0, capsys.readouterr().err
    recipe = load_config(os.path.join(REPO_ROOT, 'configs', 'cityscapes.yaml'))
    assert (recipe.model.name, recipe.train.crop_size, recipe.data.num_classes) == ('fcn32s', [512, 1024], 19)
    assert recipe.data.dir == 'data/cityscapes' and recipe.init.checkpoint.endswith('vgg_16.ckpt')
    run_dir = str(tmp_path / 'run')
    cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'cityscapes.yaml'), [
        'data.dir=%s' % out, 'train.run_dir=%s' % run_dir, 'init.checkpoint=null', 'model.width=0.125',
        'train.crop_size=[32, 64]', 'train.batch_size=2', 'train.steps=3', 'train.log_every_steps=1',
        'augment.min_scale=1.0', 'augment.max_scale=1.0'])
    train_lib.train(cfg, log=lambda *_: None)
    assert train_lib.checkpoint_step(tf1.train.latest_checkpoint(run_dir)) == 3
    reader = tf1.train.load_checkpoint(tf1.train.latest_checkpoint(run_dir))
    fc8 = [name for name in reader.get_variable_to_shape_map() if name.endswith('fc8/weights')]
    assert fc8 and reader.get_variable_to_shape_map()[fc8[0]][-1] == 19
