"""COCO -> semantic labels: polygons, compressed / uncompressed RLE, crowds, overlaps, both label maps."""
import dataclasses
import json
import os

import numpy as np
import pytest

import datasets_fixtures as fx
from fcn.data import build, coco
from fcn.data.info import DatasetInfo
from fcn.data.palette import VOC_CLASSES, voc_palette


@pytest.fixture
def coco_dir(tmp_path):
    root = str(tmp_path / 'coco')
    return root, fx.write_coco(root)


def expected_label(scene, class_map):
    """Independent rule: a pixel is the class covering it, 255 if two classes or a mapped crowd cover it."""
    _, height, width, _ = scene
    classes = np.zeros((256, height, width), bool)
    crowd = np.zeros((height, width), bool)
    for category, iscrowd, mask in fx.scene_masks(scene):
        if category not in class_map:
            continue
        if iscrowd:
            crowd |= mask
        else:
            classes[class_map[category]] |= mask
    label = np.argmax(classes, axis=0).astype(np.uint8)
    label[classes.sum(axis=0) > 1] = 255
    label[crowd] = 255
    return label


def build_coco(root, out, **kwargs):
    """Builds train and val; min_labeled_pixels defaults to 0 here (the fixture's images are
    smaller than the 1,000-pixel default: the threshold has its own tests below)."""
    kwargs.setdefault('min_labeled_pixels', 0)
    fields = {f.name for f in dataclasses.fields(build.BuildOptions)}
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
    return build.build(coco.coco_spec(root, ['train', 'val'], **kwargs), str(out), **options)


def check_labels(out, class_map, images):
    for split, scenes in fx.coco_scenes().items():
        examples = {ex['filename']: ex for ex in fx.read_examples(str(out), split)}
        assert sorted(examples) == sorted(s[0] for s in scenes)
        for scene in scenes:
            ex = examples[scene[0]]
            np.testing.assert_array_equal(ex['label'], expected_label(scene, class_map))
            assert np.abs(ex['image'].astype(int) - images[scene[0]].astype(int)).mean() < 3


def test_voc20_labels(coco_dir, tmp_path):
    root, images = coco_dir
    summary = build_coco(root, tmp_path / 'out', labels='voc20')
    voc_map = {cat: cls for cls, cat in enumerate(coco.VOC_COCO_IDS) if cls}
    check_labels(tmp_path / 'out', voc_map, images)
    assert summary['dataset'] == 'coco' and summary['class_names'] == list(VOC_CLASSES)
    assert summary['palette'] == voc_palette(21).tolist()
    label = {ex['filename']: ex['label'] for ex in fx.read_examples(str(tmp_path / 'out'), 'train')}['000000000101']
    person, dog = VOC_CLASSES.index('person'), VOC_CLASSES.index('dog')
    assert label[3, 3] == person                 # person polygon (and a second person overlapping: same class)
    assert label[12, 16] == 255                  # person x dog overlap
    assert label[28, 30] == dog
    assert label[34, 6] == 0                     # umbrella is background for voc20
    assert label[36, 40] == 255                  # crowd
    assert summary['splits']['train']['num_images'] == 3


def test_coco_labels_are_contiguous(coco_dir, tmp_path):
    root, images = coco_dir
    summary = build_coco(root, tmp_path / 'out', labels='coco')
    ids = [i for i, _ in fx.COCO_CATEGORIES]
    assert summary['class_names'] == ['background'] + [n for _, n in fx.COCO_CATEGORIES]
    assert summary['num_classes'] == len(ids) + 1
    check_labels(tmp_path / 'out', {cat: i + 1 for i, cat in enumerate(ids)}, images)
    label = {ex['filename']: ex['label'] for ex in fx.read_examples(str(tmp_path / 'out'), 'train')}['000000000101']
    assert label[34, 6] == summary['class_names'].index('umbrella')


def test_min_labeled_fraction_drops_training_images_only(coco_dir, tmp_path):
    root, _ = coco_dir
    summary = build_coco(root, tmp_path / 'out', labels='voc20', min_labeled_fraction=0.05)
    train = summary['splits']['train']
    assert train['num_images'] == 1
    skipped = {os.path.basename(s['file']): s['reason'] for s in train['skipped']}
    assert sorted(skipped) == ['000000000102.jpg', '000000000103.jpg']
    assert 'labelled area 0.0031 below --min_labeled_fraction 0.05' == skipped['000000000103.jpg']
    assert summary['splits']['val']['num_images'] == 1 and summary['splits']['val']['skipped'] == []


def edit_json(root, split, change):
    path = coco.annotation_path(root, split)
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    with open(path, 'w') as f:
        json.dump(doc, f)
    return path


def expect_error(root, tmp_path, *fragments):
    with pytest.raises(build.DatasetError) as info:
        build_coco(root, tmp_path / 'out')
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_missing_image_names_the_file(coco_dir, tmp_path):
    root, _ = coco_dir
    path = os.path.join(root, 'val2017', '000000000201.jpg')
    os.remove(path)
    expect_error(root, tmp_path, path, 'image not found')


def test_missing_annotation_file(coco_dir, tmp_path):
    root, _ = coco_dir
    os.remove(coco.annotation_path(root, 'val'))
    expect_error(root, tmp_path, 'instances_val2017.json', 'annotation file not found')


def test_image_size_differs_from_json(coco_dir, tmp_path):
    root, _ = coco_dir
    path = edit_json(root, 'val', lambda doc: doc['images'][0].update(height=30))
    expect_error(root, tmp_path, path, 'image id 1 is 30x40 here but', '000000000201.jpg is 36x40')


def test_file_name_escaping_the_image_folder(coco_dir, tmp_path):
    root, _ = coco_dir
    path = edit_json(root, 'val', lambda doc: doc['images'][0].update(file_name='../../x.jpg'))
    expect_error(root, tmp_path, path, 'escapes the data folder')


def test_bad_segmentation_names_the_json(coco_dir, tmp_path):
    root, _ = coco_dir
    path = edit_json(root, 'val', lambda doc: doc['annotations'][0].update(segmentation={'counts': 5}))
    expect_error(root, tmp_path, path, 'bad segmentation in the annotations of image id 1')


def test_not_a_coco_file(coco_dir, tmp_path):
    root, _ = coco_dir
    path = coco.annotation_path(root, 'train')
    with open(path, 'w') as f:
        json.dump({'images': 'nope'}, f)
    expect_error(root, tmp_path, path, 'not a COCO instances file')


def test_voc20_needs_the_voc_categories(coco_dir, tmp_path):
    root, _ = coco_dir
    path = edit_json(root, 'train', lambda doc: doc.update(categories=[c for c in doc['categories'] if c['id'] != 72]))
    expect_error(root, tmp_path, path, 'categories [72] of the voc20 map')


def test_label_map_names():
    names, mapping = coco.label_map('voc20', [{'id': i, 'name': n} for i, n in fx.COCO_CATEGORIES], 'x')
    assert mapping[1] == names.index('person') and mapping[63] == names.index('sofa')
    assert mapping[5] == names.index('aeroplane') and mapping[72] == names.index('tvmonitor')
    assert 28 not in mapping and 0 not in mapping


def test_cli_coco_label_map_and_threshold(coco_dir, tmp_path, repo_root, capsys):
    import importlib.util
    root, _ = coco_dir
    loader = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(repo_root, 'build_tfrecords.py'))
    cli = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(cli)
    out = str(tmp_path / 'out')
    code = cli.main(['--dataset', 'coco', '--data_dir', root, '--labels', 'coco', '--min_labeled_fraction', '0.05',
                     '--min_labeled_pixels', '0', '--out', out, '--num_workers', '1', '--no_progress'])
    assert code == 0, capsys.readouterr().err
    summary = DatasetInfo.read(out).to_dict()
    assert summary['num_classes'] == len(fx.COCO_CATEGORIES) + 1
    assert summary['splits']['train']['num_images'] == 1 and len(summary['splits']['train']['skipped']) == 2


# ----------------------------------------------------------------------------- --min_labeled_pixels

def threshold_scenes():
    """Training images of 40x50 around the 1,000-pixel default, and a small val image.

    Labelled pixels (not background, not ignore): 999, 1000, 900 + a 300-pixel crowd (ignored,
    so 900), 0; val: 100."""
    h, w = 40, 50
    return {
        'train': [
            ('000000000301', h, w, [(1, 0, 'rle', box(h, w, 0, 27, 0, 37))]),                       # 999
            ('000000000302', h, w, [(18, 0, 'rle', box(h, w, 0, 25, 0, 40))]),                      # 1000
            ('000000000303', h, w, [(17, 0, 'rle', box(h, w, 0, 30, 0, 30)),                        # 900
                                    (1, 1, 'rle_list', box(h, w, 30, 40, 0, 30))]),                 # crowd 300
            ('000000000304', h, w, [(28, 0, 'rle', box(h, w, 0, 40, 0, 50))]),                      # umbrella: 0
        ],
        'val': [('000000000401', h, w, [(3, 0, 'rle', box(h, w, 0, 10, 0, 10))])],                  # 100
    }


def box(h, w, y0, y1, x0, x1):
    return fx.box(h, w, y0, y1, x0, x1)


def test_default_threshold_drops_training_images_below_1000_labelled_pixels(tmp_path, capsys):
    root = str(tmp_path / 'coco')
    fx.write_coco(root, threshold_scenes())
    out = str(tmp_path / 'out')
    assert fx.build_in_process('coco', root, out) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    summary = DatasetInfo.read(out).to_dict()
    train, val = summary['splits']['train'], summary['splits']['val']
    assert [ex['filename'] for ex in fx.read_examples(out, 'train')] == ['000000000302']
    reasons = {os.path.basename(s['file']): s['reason'] for s in train['skipped']}
    assert reasons == {'000000000301.jpg': '999 labelled pixels below --min_labeled_pixels 1000',
                       '000000000303.jpg': '900 labelled pixels below --min_labeled_pixels 1000',
                       '000000000304.jpg': '0 labelled pixels below --min_labeled_pixels 1000'}
    assert train['dropped'] == 3 and train['num_images'] == 1
    assert val['num_images'] == 1 and val['dropped'] == 0 and val['skipped'] == []   # val keeps every image
    assert 'train: 1 images in 4 shards, 0 skipped, 3 dropped (below --min_labeled_pixels' in printed


def test_min_labeled_pixels_flag_moves_the_threshold(tmp_path, capsys):
    root = str(tmp_path / 'coco')
    fx.write_coco(root, threshold_scenes())
    out = str(tmp_path / 'out')
    assert fx.build_in_process('coco', root, out, '--min_labeled_pixels', '900') == 0, capsys.readouterr().err
    kept = sorted(ex['filename'] for ex in fx.read_examples(out, 'train'))
    assert kept == ['000000000301', '000000000302', '000000000303']
    assert DatasetInfo.read(out).splits['train'].to_dict()['dropped'] == 1
    assert fx.build_in_process('coco', root, out, '--min_labeled_pixels', '0') == 0
    assert DatasetInfo.read(out).splits['train'].num_images == 4


def test_min_labeled_pixels_must_be_non_negative(tmp_path):
    with pytest.raises(build.DatasetError, match='--min_labeled_pixels must be an integer >= 0'):
        coco.coco_spec(str(tmp_path), ['train'], min_labeled_pixels=-1)
