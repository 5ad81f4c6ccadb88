"""ADE20K (ADEChallengeData2016) in the benchmark's layout: 0 -> 255 and k -> k - 1 pixel for pixel,
the 150 objectInfo150 names, the clear errors and the recipe."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import datasets_fixtures as fx
from fcn.data import ade20k
from fcn.data.info import DatasetInfo
from pipeline_fixtures import REPO_ROOT

STEMS = {'training': ['ADE_train_00000001', 'ADE_train_00000002', 'ADE_train_00020210'],
         'validation': ['ADE_val_00000001']}
HEIGHT, WIDTH = 24, 40
# MMSegmentation's ADE20KDataset METAINFO classes (mmseg/datasets/ade.py), an independent
# transcription of objectInfo150's first names: ours differ only where noted in fcn/data/ade20k.py.
MMSEG_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed ', 'windowpane', 'grass', 'cabinet',
    'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk',
    'rock', 'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand',
    'path', 'stairs', 'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove',
    'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth', 'television receiver',
    'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle',
    'buffet', 'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything',
    'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven',
    'ball', 'food', 'step', 'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher',
    'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier',
    'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')


def write_annotation(path, values):
    """As the benchmark ships them: an 8-bit single-channel ('L') PNG of 0..150."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(values.astype(np.uint8), mode='L').save(path)


def write_ade(root, seed=0):
    """images/ + annotations/ (+ objectInfo150.txt and sceneCategories.txt as in the zip); {stem: annotation}."""
    rng = np.random.default_rng(seed)
    annotations = {}
    for folder, stems in STEMS.items():
        for stem in stems:
            fx.write_jpeg(os.path.join(root, 'images', folder, stem + '.jpg'), fx.random_image(rng, HEIGHT, WIDTH))
            values = rng.permutation(np.resize(np.arange(151), HEIGHT * WIDTH)).reshape(HEIGHT, WIDTH)  # 0..150 all
            write_annotation(os.path.join(root, 'annotations', folder, stem + '.png'), values)
            annotations[stem] = values.astype(np.uint8)
    with open(os.path.join(root, 'objectInfo150.txt'), 'w') as f:
        f.write('Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n')
    with open(os.path.join(root, 'sceneCategories.txt'), 'w') as f:
        f.write('ADE_train_00000001 airport_terminal\n')
    return annotations


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path / 'ADEChallengeData2016')
    return root, write_ade(root)


def build(root, out, *extra):
    return fx.build_in_process('ade20k', root, out, *extra)


def test_zero_is_ignored_and_k_becomes_k_minus_1_pixel_for_pixel(tree, tmp_path, capsys):
    root, annotations = tree
    out = str(tmp_path / 'out')
    assert build(root, out) == 0, capsys.readouterr().err
    info = DatasetInfo.read(out)
    assert info.name == 'ade20k' and info.num_classes == 150 and info.ignore_label == 255
    assert {s: info.splits[s].num_images for s in info.splits} == {'train': 3, 'val': 1}
    assert info.palette[0] == (120, 120, 120) and info.palette[149] == (92, 0, 255)
    for split in ('train', 'val'):
        for example in fx.read_examples(out, split):
            values = annotations[example['filename']]
            expected = np.where(values == 0, 255, values.astype(np.int16) - 1).astype(np.uint8)
            np.testing.assert_array_equal(example['label'], expected)
            assert (example['label'][values == 0] == 255).all()
            assert (example['label'][values == 150] == 149).all() and (example['label'][values == 1] == 0).all()
            assert example['format'] == 'jpeg' and (example['height'], example['width']) == (HEIGHT, WIDTH)


def test_class_names_are_objectinfo150s_first_names():
    names = list(ade20k.CLASS_NAMES)
    assert len(names) == len(set(names)) == 150 == len(ade20k.PALETTE)
    differ = [(i, ours, theirs) for i, (ours, theirs) in enumerate(zip(names, MMSEG_CLASSES)) if ours != theirs]
    assert differ == [(7, 'bed', 'bed '), (89, 'television', 'television receiver')]
    assert all(0 <= c <= 255 for colour in ade20k.PALETTE for c in colour)


def test_annotation_value_above_150_is_named(tree, tmp_path, capsys):
    root, annotations = tree
    path = os.path.join(root, 'annotations', 'validation', 'ADE_val_00000001.png')
    values = annotations['ADE_val_00000001'].copy()
    values[0, 0] = 151
    write_annotation(path, values)
    assert build(root, str(tmp_path / 'out'), '--splits', 'val') == 2
    line = fx.one_error_line(capsys)
    assert path in line and 'label value 151 above 150' in line


def test_image_without_its_annotation_is_named(tree, tmp_path, capsys):
    root, _ = tree
    path = os.path.join(root, 'annotations', 'training', 'ADE_train_00000002.png')
    os.remove(path)
    assert build(root, str(tmp_path / 'out'), '--splits', 'train') == 2
    line = fx.one_error_line(capsys)
    assert path in line and 'annotation not found for image' in line and 'ADE_train_00000002.jpg' in line


def test_not_an_ade_folder_and_unknown_split(tree, tmp_path, capsys):
    root, _ = tree
    assert build(root, str(tmp_path / 'out'), '--splits', 'test') == 2
    assert "unknown ADE20K split 'test' (choose from train, val)" in fx.one_error_line(capsys)
    shutil.rmtree(os.path.join(root, 'annotations'))
    assert build(root, str(tmp_path / 'out')) == 2
    line = fx.one_error_line(capsys)
    assert root in line and 'not an ADEChallengeData2016 folder: annotations/ is missing' in line


def test_recipe_loads():
    from fcn.config import load_config
    cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'ade20k.yaml'))
    assert (cfg.model.name, cfg.data.num_classes, cfg.data.dir) == ('fcn32s', 150, 'data/ade20k')
    assert cfg.train.crop_size == 512 and cfg.init.exclude_scopes == ['vgg_16/fc8', 'fcn']
