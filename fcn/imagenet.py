"""ImageNet classification with the VGG-16 seed (vgg_16.ckpt, fc8 with 1000 classes).

- top-5: the image as TF-Slim's vgg_preprocessing prepares it for eval (smaller side resized
  to 256 with bilinear interpolation, central 224 x 224 crop), through the trunk and fc8. fc6
  here is a 7x7 SAME convolution; on the 7x7 pool5 of a 224 crop its centre output sees
  exactly the 7x7 window that TF-Slim's VALID fc6 sees, so the centre cell of the 7x7 fc8 map
  is TF-Slim's classification.
- label map: the same classifier applied fully convolutionally to the whole resized image:
  argmax of fc8 at stride 32, without any upsampling layer (Long et al.'s starting point).

TF-Slim's VGG has 1000 classes, no background class (Inception's checkpoints have 1001):
line i of fcn/data/imagenet_classes.txt ("wnid names") is fc8 output i.
"""
import os

import cv2
import numpy as np

from fcn import checkpoints, config, visualize
from fcn.compat import tf, tf1
from fcn.nets import fcn
from fcn.predict_lib import check_files, read_rgb

NUM_CLASSES = 1000
CLASSES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'imagenet_classes.txt')
RESIZE_SIDE = 256  # TF-Slim vgg_preprocessing's _RESIZE_SIDE_MIN, used for eval
CROP_SIZE = 224
TOP_K = 5
LEGEND_SIZE = 10  # classes named in the label map's legend; the rest share one colour


def class_names(path=CLASSES_PATH):
    """[(wnid, names)] of the 1000 classes in fc8 order."""
    with open(path) as f:
        rows = [line.rstrip('\n').split(' ', 1) for line in f if line.strip()]
    if len(rows) != NUM_CLASSES:
        raise ValueError('%s has %d classes, expected %d' % (path, len(rows), NUM_CLASSES))
    return [(wnid, names) for wnid, names in rows]


def short_name(names):
    """'tabby, tabby cat' -> 'tabby'."""
    return names.split(',')[0]


def aspect_preserving_resize(image, smallest_side=RESIZE_SIDE):
    """uint8 [H, W, 3] -> float32, smaller side `smallest_side`, as TF-Slim's vgg_preprocessing
    (rint of the scaled sizes, resize_bilinear without align_corners or half-pixel centres)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = smallest_side / tf.reduce_min(shape)
    size = tf.cast(tf.math.rint(shape * scale), tf.int32)
    resized = tf1.image.resize_bilinear(image[None], size, align_corners=False)
    return resized[0]


def central_crop(image, size=CROP_SIZE):
    """The central `size` x `size` window; offsets rounded down, as TF-Slim's _central_crop."""
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return image[top:top + size, left:left + size]


class Classifier:
    """vgg_16 trunk + fc8 (1000 classes) restored from a checkpoint; one graph, one session."""

    def __init__(self, width, checkpoint):
        self.names = class_names()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.image = tf1.placeholder(tf.uint8, [None, None, 3], name='image')
            self.resized = aspect_preserving_resize(self.image)
            self.crop = central_crop(self.resized)
            self.inputs = tf1.placeholder(tf.float32, [1, None, None, 3], name='inputs')
            self.scores, _ = fcn.vgg_scores(self.inputs, NUM_CLASSES, is_training=False, width=width)
            path = checkpoints.resolve(checkpoint)
            saver = tf1.train.Saver(checkpoints.variables_to_restore(path, variables=tf1.global_variables()))
            self.session = tf1.Session(graph=self.graph)
            saver.restore(self.session, path)

    def classify(self, image):
        """(logits [1000] of the central crop, coarse label map [ceil(h/32), ceil(w/32)], resized image)."""
        resized, crop = self.session.run([self.resized, self.crop], {self.image: image})
        crop_scores = self.session.run(self.scores, {self.inputs: crop[None]})[0]
        centre = CROP_SIZE // fcn.STRIDE // 2
        whole_scores = self.session.run(self.scores, {self.inputs: resized[None]})[0]
        return crop_scores[centre, centre], whole_scores.argmax(-1), resized

    def top_k(self, logits, k=TOP_K):
        """[(class id, wnid, names, probability)] of the k largest logits, best first."""
        probabilities = _softmax(logits)
        return [(int(i),) + tuple(self.names[i]) + (float(probabilities[i]),)
                for i in np.argsort(-logits, kind='stable')[:k]]

    def close(self):
        self.session.close()


def _check_config(cfg):
    config.require(cfg, 'data.num_classes', config.nullable(config.one_of(NUM_CLASSES)),
                   'ImageNet classification (TF-Slim vgg_16 has no background class)')


def _softmax(logits):
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def render_label_map(image, label_map, names):
    """The image with the coarse label map over it (nearest, 32 px cells) and a legend naming the
    LEGEND_SIZE largest classes; smaller ones share the 'other' colour."""
    ids, counts = np.unique(label_map, return_counts=True)
    ranked = ids[np.argsort(-counts, kind='stable')]
    shown = ranked[:LEGEND_SIZE]
    local = np.full(label_map.shape, len(shown) + 1, np.int32)  # display ids: 1.. by area, then other
    for rank, class_id in enumerate(shown, 1):
        local[label_map == class_id] = rank
    cells = np.repeat(np.repeat(local, fcn.STRIDE, axis=0), fcn.STRIDE, axis=1)
    cells = cells[:image.shape[0], :image.shape[1]]
    legend = [''] + [short_name(names[c][1]) for c in shown]
    legend_ids = list(range(1, len(shown) + 1))
    if len(ranked) > len(shown):
        legend.append('other (%d classes)' % (len(ranked) - len(shown)))
        legend_ids.append(len(shown) + 1)
    blended = visualize.overlay(image, cells, None)
    return visualize.add_legend(blended, legend_ids, legend, None)


def format_top_k(rows):
    """Printable lines: rank, probability, wnid, names."""
    return ['%d. %.4f  %s %s  (class %d)' % (rank, probability, wnid, names, class_id)
            for rank, (class_id, wnid, names, probability) in enumerate(rows, 1)]


def predict_files(cfg, checkpoint, image_paths, out_dir):
    """Classifies each image; yields lines to print: the image, its top-5, the files written
    (NAME_imagenet_labels.png: 16-bit class ids at stride 32; NAME_imagenet.png: overlay + legend)."""
    _check_config(cfg)
    check_files(image_paths)
    classifier = Classifier(float(cfg.model.width), checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    try:
        for path in image_paths:
            logits, label_map, resized = classifier.classify(read_rgb(path))
            yield path
            for line in format_top_k(classifier.top_k(logits)):
                yield '  ' + line
            stem = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0])
            ids_path, panel_path = stem + '_imagenet_labels.png', stem + '_imagenet.png'
            cv2.imwrite(ids_path, label_map.astype(np.uint16))
            panel = render_label_map(np.clip(np.rint(resized), 0, 255).astype(np.uint8), label_map,
                                     classifier.names)
            cv2.imwrite(panel_path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
            yield ids_path
            yield panel_path
    finally:
        classifier.close()
