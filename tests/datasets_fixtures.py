"""Small datasets written in the exact real on-disk formats, plus a reader for built records.

Other tests may import these helpers. Images are tiny so that tests stay fast.
"""
import os

import cv2
import numpy as np

from fcn.data import records
from fcn.data.palette import voc_palette, write_palette_png

VOC_LIST_DIR = os.path.join('ImageSets', 'Segmentation')


def random_image(rng, height, width):
    """A smooth-ish random RGB uint8 image (JPEG-friendly, so decoded values stay close)."""
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def random_label(rng, height, width, num_classes, void_border=True):
    """Blocks of random class ids with a 1-pixel void (255) outline, like VOC labels."""
    small = rng.integers(0, num_classes, (max(2, height // 8), max(2, width // 8))).astype(np.uint8)
    label = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    if void_border:
        edges = np.zeros_like(label, bool)
        edges[:, 1:] |= label[:, 1:] != label[:, :-1]
        edges[1:, :] |= label[1:, :] != label[:-1, :]
        label[edges] = 255
    return label


def write_jpeg(path, rgb, quality=95):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise IOError('could not write %s' % path)


def write_png(path, array):
    """Writes RGB (HxWx3) or grayscale (HxW) uint8 as a plain PNG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, array):
        raise IOError('could not write %s' % path)


def write_list(path, entries):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(e + '\n' for e in entries))


def write_voc(root, splits, num_classes=21, seed=0, sizes=((40, 56), (48, 32), (32, 40)), labels=True):
    """A VOC2012-layout folder: JPEGImages/*.jpg, SegmentationClass/*.png (palette), ImageSets lists.

    splits: {split: [stem, ...]}; a stem in several splits is written once. Returns
    {stem: (rgb image, label)}. labels=False writes no SegmentationClass PNGs (SBD-only images).
    """
    rng = np.random.default_rng(seed)
    palette = voc_palette(256)
    data = {}
    os.makedirs(os.path.join(root, 'SegmentationClass'), exist_ok=True)
    for split, stems in splits.items():
        write_list(os.path.join(root, VOC_LIST_DIR, split + '.txt'), stems)
        for stem in stems:
            if stem in data:
                continue
            height, width = sizes[len(data) % len(sizes)]
            image = random_image(rng, height, width)
            label = random_label(rng, height, width, num_classes)
            write_jpeg(os.path.join(root, 'JPEGImages', stem + '.jpg'), image)
            if labels:
                write_palette_png(os.path.join(root, 'SegmentationClass', stem + '.png'), label, palette)
            data[stem] = (image, label)
    return data


def truncate_file(path, keep_fraction=0.5):
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep_fraction)])


def build_cli():
    """build_tfrecords.py loaded as a module (its main(argv) returns the exit code)."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    loader = importlib.util.spec_from_file_location('build_tfrecords', os.path.join(root, 'build_tfrecords.py'))
    cli = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(cli)
    return cli


def build_in_process(dataset, data_dir, out, *extra):
    """build_tfrecords.py main() for --dataset on one worker, no progress bar; the exit code."""
    return build_cli().main(['--dataset', dataset, '--data_dir', data_dir, '--out', out, '--num_workers', '1',
                             '--no_progress'] + list(extra))


def one_error_line(capsys):
    """The captured stderr, asserted to be exactly one `error: ...` line."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: '), err
    return err[0]


def read_examples(out_dir, split):
    """All examples of a built split, decoded with TensorFlow: a list of dicts.

    Keys: filename, format, height, width, channels, image_bytes, image (RGB uint8), label.
    Uses its own graph + session, so it works whether or not eager execution is on.
    """
    import tensorflow as tf
    examples = []
    for path in records.shard_paths(out_dir, split):
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            examples.append(_parse(tf.train.Example.FromString(raw)))
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        image_bytes, label_bytes = tf.compat.v1.placeholder(tf.string, []), tf.compat.v1.placeholder(tf.string, [])
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        label = tf.io.decode_png(label_bytes, channels=0)
        for ex in examples:  # one graph for all: a graph per example grows slow over hundreds
            ex['image'], decoded = session.run([image, label], {image_bytes: ex['image_bytes'],
                                                                label_bytes: ex['label_bytes']})
            ex['label_channels'] = decoded.shape[2]
            ex['label'] = decoded[:, :, 0]
    return examples


def _parse(example):
    feature = example.features.feature

    def text(key):
        return feature[key].bytes_list.value[0].decode()

    def integer(key):
        return feature[key].int64_list.value[0]

    return {
        'filename': text(records.IMAGE_FILENAME),
        'format': text(records.IMAGE_FORMAT),
        'label_format': text(records.LABEL_FORMAT),
        'height': integer(records.IMAGE_HEIGHT),
        'width': integer(records.IMAGE_WIDTH),
        'channels': integer(records.IMAGE_CHANNELS),
        'image_bytes': feature[records.IMAGE_ENCODED].bytes_list.value[0],
        'label_bytes': feature[records.LABEL_ENCODED].bytes_list.value[0],
    }


# ----------------------------------------------------------------------------- SBD

def write_sbd_mat(path, segmentation, num_classes=21):
    """A cls/*.mat file as SBD writes it: 1x1 struct GTcls {Boundaries, Segmentation, CategoriesPresent}.

    loadmat(path)['GTcls']['Segmentation'][0, 0] is then the uint8 HxW class map, as on the real files.
    """
    import scipy.io
    import scipy.sparse
    segmentation = np.asarray(segmentation, np.uint8)
    boundaries = np.empty((num_classes - 1, 1), object)
    for cls in range(1, num_classes):
        region = (segmentation == cls).astype(np.uint8)
        edge = region - cv2.erode(region, np.ones((3, 3), np.uint8))
        boundaries[cls - 1, 0] = scipy.sparse.csc_matrix(edge.astype(bool))
    present = np.array([c for c in np.unique(segmentation) if 0 < c < num_classes], np.uint8).reshape(-1, 1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {'GTcls': {'Boundaries': boundaries, 'Segmentation': segmentation,
                                      'CategoriesPresent': present}})


def write_sbd(root, splits, seed=1, sizes=((40, 56), (48, 32)), images=None):
    """An SBD dataset/ folder: cls/*.mat, img/*.jpg, train.txt, val.txt. Returns {stem: (image, label)}.

    images: {stem: rgb} to reuse (SBD images are VOC images); others are generated.
    """
    rng = np.random.default_rng(seed)
    data = {}
    for split, stems in splits.items():
        write_list(os.path.join(root, split + '.txt'), stems)
        for stem in stems:
            if stem in data:
                continue
            image = (images or {}).get(stem)
            if image is None:
                image = random_image(rng, *sizes[len(data) % len(sizes)])
            label = random_label(rng, image.shape[0], image.shape[1], 21, void_border=False)
            write_jpeg(os.path.join(root, 'img', stem + '.jpg'), image)
            write_sbd_mat(os.path.join(root, 'cls', stem + '.mat'), label)
            data[stem] = (image, label)
    return data


# ----------------------------------------------------------------------------- COCO

# Real COCO ids and names: the 20 VOC categories plus a few others.
COCO_CATEGORIES = [
    (1, 'person'), (2, 'bicycle'), (3, 'car'), (4, 'motorcycle'), (5, 'airplane'), (6, 'bus'), (7, 'train'),
    (9, 'boat'), (16, 'bird'), (17, 'cat'), (18, 'dog'), (19, 'horse'), (20, 'sheep'), (21, 'cow'),
    (28, 'umbrella'), (44, 'bottle'), (62, 'chair'), (63, 'couch'), (64, 'potted plant'), (67, 'dining table'),
    (72, 'tv'), (84, 'book'),
]


def rle_uncompressed(mask):
    """COCO's uncompressed RLE: column-major run lengths, starting with a run of zeros."""
    flat = np.asarray(mask, np.uint8).flatten(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': counts}


def rle_compressed(mask):
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}


def polygon_mask(polygons, height, width):
    from pycocotools import mask as mask_utils
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def box(height, width, y0, y1, x0, x1):
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def coco_scenes():
    """{split: [(file stem, height, width, [(category id, iscrowd, kind, mask-or-polygons)])]}.

    kind: 'polygon' (value = list of polygons), 'rle' (compressed), 'rle_list' (uncompressed).
    Covers: overlap of different classes, same-class overlap, crowd (uncompressed RLE), a non-VOC
    category, an image without annotations, an image with a tiny labelled area.
    """
    h, w = 40, 48
    return {
        'train': [
            ('000000000101', h, w, [
                (1, 0, 'polygon', [[2, 2, 20, 2, 20, 24, 2, 24]]),              # person
                (18, 0, 'rle', box(h, w, 10, 30, 14, 34)),                         # dog, overlaps the person
                (1, 0, 'rle', box(h, w, 0, 6, 0, 8)),                              # person overlapping person
                (28, 0, 'rle', box(h, w, 30, 38, 2, 12)),                          # umbrella: not VOC
                (1, 1, 'rle_list', box(h, w, 32, 40, 36, 48)),                     # crowd of people
            ]),
            ('000000000102', 32, 32, []),                                          # nothing labelled
            ('000000000103', 32, 40, [(17, 0, 'rle_list', box(32, 40, 0, 2, 0, 2))]),  # tiny cat
        ],
        'val': [
            ('000000000201', 36, 40, [
                (3, 0, 'polygon', [[1, 1, 10, 1, 10, 10, 1, 10], [20, 20, 30, 20, 25, 30]]),  # car, two parts
                (84, 0, 'polygon', [[12, 12, 18, 12, 18, 18, 12, 18]]),            # book
                (72, 0, 'rle_list', box(36, 40, 25, 35, 0, 8)),                    # tv, uncompressed, no crowd
            ]),
        ],
    }


def scene_masks(scene):
    """[(category id, iscrowd, bool mask)] of one scene, with polygons rasterized by pycocotools."""
    _, height, width, annotations = scene
    out = []
    for category, crowd, kind, value in annotations:
        mask = polygon_mask(value, height, width) if kind == 'polygon' else value
        out.append((category, crowd, mask))
    return out


def write_coco(root, scenes=None, seed=2):
    """A COCO tree: annotations/instances_<split>2017.json + <split>2017/*.jpg. Returns {stem: rgb}."""
    import json
    rng = np.random.default_rng(seed)
    scenes = scenes or coco_scenes()
    images = {}
    ann_id = 1
    for split, split_scenes in scenes.items():
        doc = {'info': {'description': 'fixture'}, 'licenses': [], 'images': [], 'annotations': [],
               'categories': [{'id': i, 'name': n, 'supercategory': 'x'} for i, n in COCO_CATEGORIES]}
        for image_id, (stem, height, width, annotations) in enumerate(split_scenes, start=1):
            image = random_image(rng, height, width)
            write_jpeg(os.path.join(root, split + '2017', stem + '.jpg'), image)
            images[stem] = image
            doc['images'].append({'id': image_id, 'file_name': stem + '.jpg', 'height': height, 'width': width})
            for category, crowd, kind, value in annotations:
                if kind == 'polygon':
                    segmentation = value
                    mask = polygon_mask(value, height, width)
                else:
                    segmentation = rle_compressed(value) if kind == 'rle' else rle_uncompressed(value)
                    mask = value
                ys, xs = np.nonzero(mask)
                doc['annotations'].append({
                    'id': ann_id, 'image_id': image_id, 'category_id': category, 'iscrowd': crowd,
                    'segmentation': segmentation, 'area': float(mask.sum()),
                    'bbox': [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
                ann_id += 1
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        with open(os.path.join(root, 'annotations', 'instances_%s2017.json' % split), 'w') as f:
            json.dump(doc, f)
    return images


# ----------------------------------------------------------------------------- folder datasets

FOLDER_CLASSES = ['background', 'road', 'car']
FOLDER_COLOURS = {'background': [0, 0, 0], 'road': [128, 64, 128], 'car': [0, 0, 142]}
FOLDER_IGNORE = [255, 255, 255]


def write_folder(root, kind, stems=('a1', 'a2', 'b1', 'b2', 'c1', 'sub/c2'), seed=3):
    """images/ (JPEG and PNG) + masks/ of one kind: 'palette', 'gray' or 'rgb'; classes.txt and colors.yaml.

    Returns {stem: (rgb image, label)}; labels use 255 where the rgb kind has the ignore colour.
    """
    import yaml
    rng = np.random.default_rng(seed)
    palette = voc_palette(256)
    table = np.zeros((256, 3), np.uint8)
    for i, name in enumerate(FOLDER_CLASSES):
        table[i] = FOLDER_COLOURS[name]
    table[255] = FOLDER_IGNORE
    data = {}
    for i, stem in enumerate(stems):
        height, width = (24, 32) if i % 2 else (32, 24)
        image = random_image(rng, height, width)
        label = random_label(rng, height, width, len(FOLDER_CLASSES))
        image_path = os.path.join(root, 'images', stem + ('.png' if i % 3 == 2 else '.jpg'))
        (write_png if image_path.endswith('.png') else write_jpeg)(image_path, image)
        mask_path = os.path.join(root, 'masks', stem + '.png')
        os.makedirs(os.path.dirname(mask_path), exist_ok=True)
        if kind == 'palette':
            write_palette_png(mask_path, label, palette)
        elif kind == 'gray':
            write_png(mask_path, label)
        else:
            write_png(mask_path, table[label])
        data[stem] = (image, label)
    write_list(os.path.join(root, 'classes.txt'), FOLDER_CLASSES)
    with open(os.path.join(root, 'colors.yaml'), 'w') as f:
        yaml.safe_dump({'classes': FOLDER_COLOURS, 'ignore': [FOLDER_IGNORE]}, f, sort_keys=False)
    return data
