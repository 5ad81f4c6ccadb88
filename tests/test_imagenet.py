"""ImageNet classification with the VGG-16 seed: class list, top-5, coarse label map, predict.py.

The checkpoint is written here (width 0.125, fc8 with 1000 classes, random values): the real
528 MB vgg_16.ckpt is not reachable and too slow at width 1.0.
"""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from fcn import checkpoints, imagenet
from fcn.compat import tf, tf1
from fcn.config import load_config
from fcn.nets import fcn
from pipeline_fixtures import REPO_ROOT, run_script
from test_fcn_heads import random_vgg_checkpoint

WIDTH = 0.125
OVERRIDES = ['model.width=%s' % WIDTH]


def test_class_list_is_the_1000_sorted_ilsvrc_synsets():
    rows = imagenet.class_names()
    wnids = [wnid for wnid, _ in rows]
    assert len(set(wnids)) == 1000 and wnids == sorted(wnids)  # TF-Slim's synset order, no background
    assert all(w.startswith('n') and len(w) == 9 for w in wnids)
    assert rows[0] == ('n01440764', 'tench, Tinca tinca')
    assert rows[281] == ('n02123045', 'tabby, tabby cat')
    assert rows[999] == ('n15075141', 'toilet tissue, toilet paper, bathroom tissue')
    assert imagenet.short_name(rows[281][1]) == 'tabby'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('ckpt') / 'vgg_16.ckpt')
    return path, random_vgg_checkpoint(path, num_classes=1000, width=WIDTH, seed=1)


@pytest.fixture(scope='module')
def image_path(tmp_path_factory):
    """A 300 x 400 PNG (lossless: every decoder gives the same pixels) with some structure."""
    rng = np.random.RandomState(0)
    y, x = np.mgrid[:300, :400]
    image = np.stack([x * 255 // 400, y * 255 // 300, (x + y) % 256], axis=-1).astype(np.uint8)
    for _ in range(12):
        top, left = rng.randint(0, 250), rng.randint(0, 350)
        image[top:top + 50, left:left + 50] = rng.randint(0, 256, 3)
    path = str(tmp_path_factory.mktemp('images') / 'scene.png')
    Image.fromarray(image).save(path)
    return path


def _tf_slim_eval_inputs(image):
    """TF-Slim vgg_preprocessing for eval, written out here: (224 crop, whole resized image)."""
    height, width = image.shape[:2]
    scale = 256.0 / min(height, width)
    size = [int(np.rint(height * scale)), int(np.rint(width * scale))]
    with tf.Graph().as_default(), tf1.Session() as sess:
        resized = sess.run(tf1.image.resize_bilinear(image[None], size, align_corners=False))[0]
    top, left = (size[0] - 224) // 2, (size[1] - 224) // 2
    return resized[top:top + 224, left:left + 224], resized


def _pool5_and_fc8(images, path):
    """pool5 and fc8 maps from the trunk graph, restored with a plain Saver."""
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, None, None, 3])
        scores, end_points = fcn.vgg_scores(inputs, 1000, width=WIDTH)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, path)
            return [sess.run([end_points['pool5'], scores], {inputs: image[None]}) for image in images]


def _classify_like_tf_slim(pool5, values):
    """fc6 as TF-Slim's VALID 7x7 conv on the 7x7 pool5 (a dense layer), fc7, fc8, in numpy."""
    def dense(x, name):
        weights = values['vgg_16/%s/weights' % name]
        return x @ weights.reshape(-1, weights.shape[-1]) + values['vgg_16/%s/biases' % name]
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    return dense(relu(dense(relu(dense(pool5.reshape(-1), 'fc6')), 'fc7')), 'fc8')


def test_top5_is_tf_slim_classification_and_label_map_is_argmax_of_fc8(checkpoint, image_path):
    path, values = checkpoint
    image = np.array(Image.open(image_path).convert('RGB'))
    crop, resized = _tf_slim_eval_inputs(image)
    (pool5, _), (_, whole_scores) = _pool5_and_fc8([crop, resized], path)
    expected = _classify_like_tf_slim(pool5[0], values)

    classifier = imagenet.Classifier(WIDTH, path)
    try:
        logits, label_map, resized_used = classifier.classify(image)
        top = classifier.top_k(logits)
    finally:
        classifier.close()
    np.testing.assert_allclose(resized_used, resized)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert [row[0] for row in top] == list(np.argsort(-expected)[:5])
    assert np.ptp(expected) > 1.0  # a spread of scores, not a tie-break
    probabilities = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    np.testing.assert_allclose([row[3] for row in top], probabilities[[row[0] for row in top]], rtol=1e-3)
    assert label_map.shape == (8, 11)  # 256 x 341 at stride 32, the last cells partly padding
    np.testing.assert_array_equal(label_map, whole_scores[0].argmax(-1))
    assert len(np.unique(label_map)) > 1


def test_predict_cli_prints_top5_names_and_writes_the_label_map(checkpoint, image_path, tmp_path):
    path, _ = checkpoint
    out = tmp_path / 'out'
    run = run_script('predict.py', '--imagenet', '--config', 'configs/imagenet.yaml', '--set', OVERRIDES[0],
                     '--checkpoint', path, '--out', str(out), image_path)
    assert run.returncode == 0, run.stderr
    classifier = imagenet.Classifier(WIDTH, path)
    try:
        top = classifier.top_k(classifier.classify(np.array(Image.open(image_path).convert('RGB')))[0])
    finally:
        classifier.close()
    lines = run.stdout.splitlines()
    assert lines[0] == image_path
    names = open(imagenet.CLASSES_PATH).read().splitlines()
    for line, (class_id, _, _, _) in zip(lines[1:6], top):
        assert names[class_id] in line and line.strip().endswith('(class %d)' % class_id)
    labels_path, panel_path = str(out / 'scene_imagenet_labels.png'), str(out / 'scene_imagenet.png')
    assert lines[6:] == [labels_path, panel_path]
    labels = cv2.imread(labels_path, cv2.IMREAD_UNCHANGED)
    assert labels.dtype == np.uint16 and labels.shape == (8, 11) and labels.max() < 1000
    panel = cv2.imread(panel_path)
    assert panel.shape[0] >= 256 and panel.shape[1] > 341  # the resized image + the legend


def test_a_segmentation_checkpoint_is_a_clear_error(tmp_path):
    path = str(tmp_path / 'voc.ckpt')
    random_vgg_checkpoint(path, num_classes=21, width=WIDTH)
    with pytest.raises(checkpoints.CheckpointError, match=r'vgg_16/fc8/weights .*\[1, 1, 512, 21\].*1000'):
        imagenet.Classifier(WIDTH, path)
    with pytest.raises(ValueError, match='needs data.num_classes to be null or one of 1000, got 21'):
        list(imagenet.predict_files(load_config('configs/imagenet.yaml', OVERRIDES + ['data.num_classes=21']),
                                    path, [], str(tmp_path / 'out')))


def test_recipe_is_the_real_vgg_16(repo_root):
    cfg = load_config(os.path.join(REPO_ROOT, 'configs', 'imagenet.yaml'))
    assert cfg.model.width == 1.0 and cfg.data.num_classes == 1000
    assert cfg.init.checkpoint.endswith('vgg_16.ckpt') and 'vgg_16/fc8' not in cfg.init.exclude_scopes
