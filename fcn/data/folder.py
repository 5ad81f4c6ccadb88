"""Any image + mask folders: masks matched to images by file stem (relative path without extension).

Masks are either
  index masks: palette PNGs (palette index = class id) or grayscale PNGs (value = class id), or
  colour masks: RGB PNGs, mapped to class ids by a YAML colour table (--colors):
      classes:            # class id = position
        background: [0, 0, 0]
        road: [128, 64, 128]
      ignore: [[255, 255, 255]]   # optional: colours that become 255
With --colors every mask is read as colours (a palette PNG is expanded to its colours).
--mask_map FROM:TO[,FROM:TO...] changes index mask values first: binary masks whose objects are
255 (the ignore label) need --mask_map 255:1.
Class names come from the colour table or a text file (--class_names, one a line).
Splits: list files of stems (--train_list / --val_list, relative to the images folder), or a
seeded random fraction of the images as val (--val_fraction, --seed).
"""
import os
import random

import numpy as np
import yaml

from fcn.data.spec import (IGNORE_LABEL, BadItem, DatasetError, DatasetSpec, read_class_names, read_list,
                           safe_join)
from fcn.data.palette import voc_palette
from fcn.data.voc import IndexPngItem, open_label_image, read_index_label

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')
MASK_EXTENSIONS = ('.png', '.bmp', '.tif', '.tiff')  # lossless only: a JPEG mask is not a label


# ----------------------------------------------------------------------------- class tables

def _colour(value, path, what):
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        raise DatasetError('%s: colour must be [r, g, b] with integers 0..255, got %r' % (what, value), path)
    return tuple(value)


def read_colour_table(path):
    """(class names, [(r, g, b) per class], [(r, g, b) ignored colours]) from the YAML table."""
    if not os.path.isfile(path):
        raise DatasetError('colour table not found', path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise DatasetError('not valid YAML (%s)' % e, path) from None
    if not isinstance(data, dict) or not isinstance(data.get('classes'), dict) or not data['classes']:
        raise DatasetError('expected a mapping with "classes: {name: [r, g, b], ...}"', path)
    unknown = set(data) - {'classes', 'ignore'}
    if unknown:
        raise DatasetError('unknown keys %s (expected classes, ignore)' % sorted(unknown), path)
    names = [str(n) for n in data['classes']]
    colours = [_colour(c, path, 'class %s' % n) for n, c in data['classes'].items()]
    ignore = [_colour(c, path, 'ignore') for c in data.get('ignore') or []]
    if len(set(colours + ignore)) != len(colours) + len(ignore):
        raise DatasetError('the same colour is given twice', path)
    return names, colours, ignore


def colour_to_label(rgb, colours, ignore, path):
    """Maps an HxWx3 colour mask to class ids; DatasetError listing unknown colours."""
    keys = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(colours)}
    table.update({(r << 16) | (g << 8) | b: IGNORE_LABEL for r, g, b in ignore})
    table_keys = np.array(sorted(table), np.int32)
    table_ids = np.array([table[k] for k in table_keys], np.uint8)
    index = np.clip(np.searchsorted(table_keys, keys), 0, len(table_keys) - 1)
    known = table_keys[index] == keys
    if not known.all():
        unknown, counts = np.unique(keys[~known], return_counts=True)
        shown = ', '.join('(%d, %d, %d) x%d' % (k >> 16, (k >> 8) & 255, k & 255, n)
                          for k, n in list(zip(unknown.tolist(), counts.tolist()))[:5])
        raise DatasetError('unknown colour%s in RGB mask: %s%s (not in the colour table)' % (
            's' if len(unknown) > 1 else '', shown, ' ...' if len(unknown) > 5 else ''), path)
    return table_ids[index]


class ColourMaskItem(IndexPngItem):
    """An image whose mask is an RGB colour PNG, mapped through the colour table."""

    def __init__(self, name, image_path, label_path, colours, ignore):
        super().__init__(name, image_path, label_path)
        self.colours, self.ignore = colours, ignore

    def load_label(self, height, width):
        image = open_label_image(self.label_path, 'mask')
        if image.mode not in ('RGB', 'RGBA', 'P'):
            raise DatasetError('colour mask expected (RGB), got image mode %s' % image.mode, self.label_path)
        rgb = np.array(image.convert('RGB'), dtype=np.uint8)
        return colour_to_label(rgb, self.colours, self.ignore, self.label_path)


class IndexMaskItem(IndexPngItem):
    """A palette / grayscale mask of class ids, its values first changed by `mask_map` ({from: to})."""

    def __init__(self, name, image_path, label_path, mask_map=None):
        super().__init__(name, image_path, label_path)
        self.mask_map = mask_map

    def load_label(self, height, width):
        label = read_index_label(self.label_path, 'mask', hint=' (RGB colour masks need --colors)')
        if not self.mask_map:
            return label
        table = np.arange(256, dtype=np.uint8)
        for source, target in self.mask_map.items():
            table[source] = target
        return table[label]


def parse_mask_map(text):
    """'255:1,128:2' -> {255: 1, 128: 2}; DatasetError naming the bad entry."""
    mapping = {}
    for entry in (text or '').split(','):
        parts = entry.strip().split(':')
        try:
            source, target = (int(v) for v in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            source = target = None
        if source is None or not (0 <= source <= 255 and 0 <= target <= 255) or source in mapping:
            raise DatasetError('--mask_map entry %r: expected FROM:TO with mask values 0..255, each FROM '
                               'once, e.g. 255:1 (several: 255:1,128:2)' % entry.strip())
        mapping[source] = target
    return mapping


# ----------------------------------------------------------------------------- files and splits

def index_files(root, extensions, what):
    """{relative stem: path} of files under root with one of the extensions."""
    if not root or not os.path.isdir(root):
        raise DatasetError('%s folder not found' % what, root)
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in extensions:
                continue
            key = os.path.relpath(os.path.join(folder, stem), root).replace(os.sep, '/')
            path = os.path.join(folder, name)
            if key in found:
                raise DatasetError('two %s files with the same stem: %s and %s' % (what, found[key], path), path)
            found[key] = path
    return found


def random_split(stems, val_fraction, seed):
    """{'train': [...], 'val': [...]}: a seeded shuffle; val gets round(n * fraction), at least 1."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError('--val_fraction must be between 0 and 1 (exclusive), got %g' % val_fraction)
    stems = sorted(stems)
    random.Random(seed).shuffle(stems)
    num_val = max(1, int(round(len(stems) * val_fraction))) if stems else 0
    return {'train': sorted(stems[num_val:]), 'val': sorted(stems[:num_val])}


def _strip_image_extension(entry):
    stem, ext = os.path.splitext(entry)
    return stem if ext.lower() in IMAGE_EXTENSIONS else entry


def listed_split(list_path, images_dir):
    """The entries of a list file as (stem, None) or (stem, BadItem) for entries outside the folder."""
    entries = []
    for entry in read_list(list_path):
        stem = _strip_image_extension(entry).replace(os.sep, '/')
        try:
            safe_join(images_dir, stem)
        except DatasetError as e:
            entries.append((stem, BadItem(stem, list_path, e.reason)))
            continue
        entries.append((stem, None))
    if not entries:
        raise DatasetError('split is empty: no entries in this list file', list_path)
    return entries


class _Matcher:
    """Pairs image stems with their masks and makes the right kind of item."""

    def __init__(self, images_dir, masks_dir, colours, ignore, mask_map=None):
        self.images_dir, self.masks_dir = images_dir, masks_dir
        self.images = index_files(images_dir, IMAGE_EXTENSIONS, 'images')
        self.masks = index_files(masks_dir, MASK_EXTENSIONS, 'masks')
        self.colours, self.ignore, self.mask_map = colours, ignore, mask_map

    def item(self, stem, source):
        image = self.images.get(stem)
        if image is None:
            return BadItem(stem, source, 'listed image %r not found in %s' % (stem, self.images_dir))
        mask = self.masks.get(stem, os.path.join(self.masks_dir, stem + '.png'))
        name = stem.replace('/', '_')
        if self.colours is not None:
            return ColourMaskItem(name, image, mask, self.colours, self.ignore)
        return IndexMaskItem(name, image, mask, self.mask_map)


def folder_spec(images_dir, masks_dir, class_names_file=None, colors_file=None, train_list=None, val_list=None,
                val_fraction=0.1, seed=0, mask_map=None):
    """mask_map: {mask value: label value} applied to index masks (e.g. {255: 1} for 0/255 masks)."""
    names, colours, ignore = _classes(class_names_file, colors_file)
    if mask_map and colours is not None:
        raise DatasetError('--mask_map changes index mask values; with --colors map colours in the colour table')
    for source, target in sorted((mask_map or {}).items()):
        if target >= len(names) and target != IGNORE_LABEL:
            raise DatasetError('--mask_map %d:%d: %d is neither a class id (0..%d) nor the ignore label %d'
                               % (source, target, target, len(names) - 1, IGNORE_LABEL))
    matcher = _Matcher(images_dir, masks_dir, colours, ignore, mask_map)
    splits = {}
    if train_list or val_list:
        for split, path in (('train', train_list), ('val', val_list)):
            if path:
                splits[split] = [bad or matcher.item(stem, path) for stem, bad in listed_split(path, images_dir)]
    else:
        if not matcher.images:
            raise DatasetError('no images (%s) in this folder' % ', '.join(IMAGE_EXTENSIONS), images_dir)
        for split, stems in random_split(matcher.images, val_fraction, seed).items():
            splits[split] = [matcher.item(stem, images_dir) for stem in stems]
    palette = colours if colours is not None else voc_palette(len(names))
    options = {'colours': colours, 'ignore': ignore}
    if mask_map:
        options['mask_map'] = sorted(mask_map.items())
    return DatasetSpec('folder', names, palette, splits, options)


def _classes(class_names_file, colors_file):
    """(names, colours or None, ignored colours) from --class_names and/or --colors."""
    if colors_file:
        names, colours, ignore = read_colour_table(colors_file)
        if class_names_file and read_class_names(class_names_file) != names:
            raise DatasetError('class names differ from the classes of the colour table %s' % colors_file,
                               class_names_file)
        return names, [list(c) for c in colours], [list(c) for c in ignore]
    if not class_names_file:
        raise DatasetError('--dataset folder needs --class_names (one name a line) or --colors (a colour table)')
    return read_class_names(class_names_file), None, []
