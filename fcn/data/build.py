"""Builds sharded TFRecords + summary.json from a dataset description (see fcn.data.records).

A dataset module (voc, sbd, coco, folder, synthetic, cityscapes, ade20k) turns plain values
(folders, split names, label choices; build_tfrecords.py maps its flags to them) into a
`DatasetSpec` (fcn.data.spec): class names, palette and, per split, a list of `Item`s. An item knows its image file and how to load its label; everything else happens
here, the same for every dataset: image decoding and checks, label range checks, parallel
encoding in worker processes, shard writing (temporary name, renamed when complete), resuming,
and the summary (written through fcn.data.info, statistics from fcn.data.stats). JPEGs with an
EXIF orientation are turned upright here (fcn.orientation; `upright=False` keeps raw pixels).

Resuming: next to each complete shard, `.build/<shard>.json` holds its statistics and a
fingerprint of the items it was built from. A rerun keeps a shard whose file and stats exist
with the same fingerprint (unless overwrite), so an interrupted build only redoes the shards
it had not finished. Shards are written as `<shard>.tmp` and renamed only after their stats
are saved: a file with a final shard name is always complete. If source files change in
place (same names), rebuild with --overwrite.
"""
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import random

import cv2
import numpy as np

from fcn import orientation as orientation_lib
from fcn import progress
from fcn.data import info as dataset_info
from fcn.data import records, stats
from fcn.data.spec import DatasetSpec, Item  # noqa: F401 (the types build() takes, re-exported)
from fcn.data.spec import IGNORE_LABEL, DatasetError

STATE_DIR = '.build'
TMP_SUFFIX = '.tmp'
IMAGES_PER_AUTO_SHARD = 1024


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An image as it goes into a record: its bytes and upright size, and the EXIF orientation
    it was turned from (1 when it was not turned)."""
    data: bytes
    format: str
    height: int
    width: int
    orientation: int = orientation_lib.UPRIGHT

    @property
    def raw_size(self):
        """(height, width) of the stored pixels before turning."""
        return orientation_lib.upright_size(self.height, self.width, self.orientation)

    @property
    def size(self):
        return self.height, self.width


def load_image(path, upright=True):
    """Reads and validates an image: a LoadedImage.

    The original bytes are kept for 3-channel 8-bit JPEGs and PNGs (no re-encoding loss, and
    fast); anything else (grayscale, alpha, 16-bit, BMP, TIFF...) is stored as an RGB PNG.
    A JPEG whose EXIF orientation is not 1 is turned upright (when `upright`) and stored as a
    lossless PNG of the turned pixels: the only images re-encoded for it. Decoding happens only
    to validate: a truncated or corrupt file is an error here, not later in training.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError('image not found', path) from None
    except OSError as e:
        raise DatasetError('cannot read image (%s)' % e.strerror, path) from None
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if array is None:
        raise DatasetError('unreadable or truncated image', path)
    fmt = _sniff_format(data)
    turn = orientation_lib.jpeg_orientation(data) if upright and fmt == 'jpeg' else orientation_lib.UPRIGHT
    if turn != orientation_lib.UPRIGHT:
        array = orientation_lib.upright(array, turn)
        fmt = None
    if fmt is None or array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        data, fmt = _encode_png(_to_bgr8(array)), 'png'
    return LoadedImage(data, fmt, array.shape[0], array.shape[1], turn)


def _sniff_format(data):
    if data[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        return 'png'
    return None


def _to_bgr8(array):
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    if array.shape[2] == 1:
        return cv2.cvtColor(array[:, :, 0], cv2.COLOR_GRAY2BGR)
    return array[:, :, :3]


def _encode_png(array):
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise DatasetError('could not PNG-encode an array of shape %s' % (array.shape,))
    return buf.tobytes()


# ----------------------------------------------------------------------------- per-item work

LABEL_IMAGE_EXTENSIONS = ('.png', '.tif', '.tiff', '.jpg', '.jpeg', '.webp')


def encode_item(item, num_classes, upright=True):
    """Loads and checks one item. Returns ('ok', fields, counts, orientation) or ('bad', file,
    reason, dropped).

    fields = (name, image_bytes, format, height, width, label_png); counts = per-value pixel
    counts (256); orientation = the EXIF orientation the image was turned from (1: not turned).
    upright: turn tagged JPEGs upright (see load_image) and refuse tagged label files.
    Runs in worker processes, so it returns data instead of raising.
    """
    try:
        item.check()
        image = load_image(item.image_path, upright)
        label = _load_label(item, image, upright)
        counts = np.bincount(label.ravel(), minlength=256)
        out_of_range = np.nonzero(counts[num_classes:IGNORE_LABEL])[0] + num_classes
        if out_of_range.size:
            raise DatasetError('label values %s out of range: must be < %d (number of classes) or %d' % (
                out_of_range.tolist(), num_classes, IGNORE_LABEL), item.label_file)
        rejected = item.reject_reason(counts, num_classes)
        if rejected:
            return ('bad', item.image_path, rejected, True)
    except DatasetError as e:
        return ('bad', e.file or item.image_path, e.reason, False)
    fields = (item.name, image.data, image.format, image.height, image.width, records.encode_label_png(label))
    return ('ok', fields, counts, image.orientation)


def _load_label(item, image, upright):
    """The item's label in the frame of the (upright) image, its size checked.

    A turned image's label is read in the raw frame and turned with it only for items whose
    annotations are on the raw pixels (Item.labelled_on_raw_pixels, e.g. COCO by its JSON sizes)."""
    turned = image.orientation != orientation_lib.UPRIGHT
    on_raw = turned and item.labelled_on_raw_pixels(image.size, image.raw_size)
    frame = image.raw_size if on_raw else image.size
    label = item.load_label(*frame)
    if label.shape != frame:
        hint = ''
        if turned and label.shape == image.raw_size:
            hint = ('; the image was turned upright from its %s and this label has the size of its raw pixels: '
                    'if the set was annotated on the raw pixels, build with --ignore_exif_orientation'
                    % orientation_lib.describe(image.orientation))
        raise DatasetError('label is %dx%d but image %s is %dx%d%s' % (
            label.shape[0], label.shape[1], item.image_path, frame[0], frame[1], hint), item.label_file)
    if upright:
        _check_label_tag(item.label_file)
    return orientation_lib.upright(label, image.orientation) if on_raw else label


def _check_label_tag(path):
    """A label file with an EXIF orientation is an error: its pixels may be raw or already
    upright, and guessing wrong misaligns every pixel without a sign."""
    if not path or os.path.splitext(str(path))[1].lower() not in LABEL_IMAGE_EXTENSIONS:
        return
    tag = orientation_lib.file_orientation(path)
    if tag != orientation_lib.UPRIGHT:
        raise DatasetError('this label file carries an %s: labels are taken as upright pixels and the tag would '
                           'make viewers show it turned; remove the tag (exiftool -Orientation= FILE), or build '
                           'with --ignore_exif_orientation if the set was annotated on the raw pixels'
                           % orientation_lib.describe(tag), path)


def _worker_context():
    """Never plain fork: the parent may already run TensorFlow / OpenCV threads.

    forkserver starts one clean, single-threaded server that imports the readers once and
    forks the workers from it (about half the start-up time of spawn, which imports them in
    every worker); spawn where forkserver is not available.
    """
    if 'forkserver' not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context('spawn')
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(['fcn.data.build', 'fcn.data.voc', 'fcn.data.folder'])
    return context


@contextlib.contextmanager
def _encoded(items, num_classes, num_workers, upright=True):
    """An iterator of encode_item results, in order, from a pool of worker processes (in-process if 1).

    The workers start at once, so they encode while the caller imports TensorFlow; leaving the
    context stops them, also on error or Ctrl-C.
    """
    work = functools.partial(encode_item, num_classes=num_classes, upright=upright)
    if num_workers <= 1 or len(items) <= 1:
        yield map(work, items)
        return
    chunksize = max(1, min(16, len(items) // (num_workers * 8)))
    with _worker_context().Pool(num_workers) as pool:
        yield pool.imap(work, items, chunksize=chunksize)


# ----------------------------------------------------------------------------- shards

def auto_num_shards(num_items):
    return max(min(4, num_items), math.ceil(num_items / IMAGES_PER_AUTO_SHARD))


def partition(items, num_shards):
    """Contiguous, near-equal chunks of items."""
    n = len(items)
    return [items[i * n // num_shards:(i + 1) * n // num_shards] for i in range(num_shards)]


def fingerprint(spec, items, upright=True):
    """Of what decides a shard's content: the spec's classes and options, EXIF handling, the items."""
    content = [spec.name, spec.class_names, spec.options, {'exif_orientation': 'upright' if upright else 'ignored'}]
    digest = hashlib.sha1(json.dumps(content, sort_keys=True).encode())
    for item in items:
        digest.update(item.key().encode('utf-8', 'surrogateescape'))
        digest.update(b'\n')
    return digest.hexdigest()


def _state_path(out_dir, shard):
    return os.path.join(out_dir, STATE_DIR, shard + '.json')


def _load_complete_stats(out_dir, shard, expected_fingerprint):
    """The saved stats of a complete shard built from the same items, else None."""
    path = _state_path(out_dir, shard)
    if not os.path.isfile(os.path.join(out_dir, shard)) or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    if saved.get('fingerprint') != expected_fingerprint or not stats.is_complete(saved):
        return None  # other items, or saved before every statistic was kept: rebuild it
    return saved


def _write_json_atomic(path, data):
    tmp = path + TMP_SUFFIX
    with open(tmp, 'w') as f:
        json.dump(data, f)
    os.replace(tmp, path)


class _ShardWriter:
    """Writes `<path>.tmp`; commit() saves the stats, then renames the shard into place."""

    def __init__(self, out_dir, shard):
        from fcn.compat import tf  # quiet: no TensorFlow start-up lines under the progress bar
        self.out_dir = out_dir
        self.shard = shard
        self.path = os.path.join(out_dir, shard)
        self.writer = tf.io.TFRecordWriter(self.path + TMP_SUFFIX)

    def write(self, fields):
        name, image, fmt, height, width, label_png = fields
        example = records.make_example(image, label_png, name, height, width, image_format=fmt)
        self.writer.write(example.SerializeToString())

    def commit(self, entry):
        self.writer.close()
        _write_json_atomic(_state_path(self.out_dir, self.shard), entry)
        os.replace(self.path + TMP_SUFFIX, self.path)

    def abort(self):
        self.writer.close()
        if os.path.exists(self.path + TMP_SUFFIX):
            os.remove(self.path + TMP_SUFFIX)


def _build_pending(spec, out_dir, split, pending, options, upright):
    """Encodes and writes the pending shards [(shard, fingerprint, items)]; returns their stats."""
    all_items = [item for _, _, items in pending for item in items]
    built = {}
    with _encoded(all_items, spec.num_classes, options.num_workers, upright) as results, \
            progress.bar(len(all_items), split, enabled=options.progress) as bar:
        for shard, expected, items in pending:
            writer, shard_stats = _ShardWriter(out_dir, shard), stats.LabelStats(spec.num_classes, IGNORE_LABEL)
            try:
                for _ in items:
                    _add_result(writer, shard_stats, next(results), options.skip_bad)
                    bar.update(1)
            except BaseException:
                writer.abort()
                raise
            built[shard] = dict(shard_stats.to_dict(), fingerprint=expected)
            writer.commit(built[shard])
    return built


def _add_result(writer, shard_stats, result, skip_bad):
    if result[0] == 'ok':
        _, fields, counts, orientation = result
        writer.write(fields)
        shard_stats.add(fields[3], fields[4], counts, turned=orientation != orientation_lib.UPRIGHT)
        return
    _, file, reason, dropped = result
    if not (skip_bad or dropped):
        raise DatasetError(reason, file)
    shard_stats.skip(file, reason, dropped)


def _remove_stale(out_dir, split, keep):
    """Deletes shards (and their state) of `split` not in `keep`: leftovers of another shard count."""
    for name in os.listdir(out_dir):
        base = name[:-len(TMP_SUFFIX)] if name.endswith(TMP_SUFFIX) else name
        match = records.SHARD_PATTERN.match(base)
        if match and match.group('split') == split and name not in keep:
            os.remove(os.path.join(out_dir, name))
            state = _state_path(out_dir, base)
            if base not in keep and os.path.exists(state):
                os.remove(state)


def build_split(spec, out_dir, split, items, options, upright=True):
    """Writes the shards of one split; returns its summary entry."""
    if not items:
        raise DatasetError('split %r is empty: no images listed' % split)
    num_shards = min(options.num_shards or auto_num_shards(len(items)), len(items))
    shards = [records.shard_name(split, i, num_shards) for i in range(num_shards)]
    done, pending = {}, []
    for shard, shard_items in zip(shards, partition(items, num_shards)):
        expected = fingerprint(spec, shard_items, upright)
        saved = None if options.overwrite else _load_complete_stats(out_dir, shard, expected)
        if saved is None:
            pending.append((shard, expected, shard_items))
        else:
            done[shard] = saved
    done.update(_build_pending(spec, out_dir, split, pending, options, upright))
    _remove_stale(out_dir, split, keep=set(shards))
    entry = stats.merged([done[shard] for shard in shards], spec.num_classes, IGNORE_LABEL)
    entry['num_shards'] = num_shards
    if entry['num_images'] == 0:
        raise DatasetError('split %r is empty: all %d images were skipped (see %s)' % (
            split, len(items), ', '.join(s['file'] for s in entry['skipped'][:3])))
    return entry


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How to build (not what): these never change a record's content, so they are not fingerprinted.

    num_shards: shards per split (None = automatic); seed: the order of examples is shuffled
    with it, so that shards mix the whole split.
    """
    num_shards: int = None
    num_workers: int = 1
    overwrite: bool = False
    skip_bad: bool = False
    progress: bool = False
    seed: int = 0


def build(spec, out_dir, *, num_shards=None, num_workers=1, overwrite=False, skip_bad=False, progress=False,
          seed=0, upright=True):
    """Builds every split of `spec` into out_dir and writes summary.json; returns the summary
    (DatasetInfo.to_dict() of what was written). The keywords are BuildOptions' fields, and
    `upright`: turn JPEGs with an EXIF orientation upright (False: keep their raw pixels, for
    sets annotated on them; --ignore_exif_orientation). It changes content, so it is part of
    every shard's fingerprint."""
    options = BuildOptions(num_shards, num_workers, overwrite, skip_bad, progress, seed)
    os.makedirs(os.path.join(out_dir, STATE_DIR), exist_ok=True)
    info = _previous_info(out_dir, spec)
    path = dataset_info.summary_path(out_dir)
    for split, items in spec.splits.items():
        items = list(items)
        if split in info.splits:
            info = dataclasses.replace(info, splits={k: v for k, v in info.splits.items() if k != split})
            info.write(path)  # readers must not mix old and new shards
        random.Random('%s:%s' % (options.seed, split)).shuffle(items)
        entry = build_split(spec, out_dir, split, items, options, upright)
        info = info.with_split(split, dataset_info.SplitInfo.from_dict(entry, split))
        info.write(path)
    return info.to_dict()


def _previous_info(out_dir, spec):
    """The description to update: the existing one keeps its other splits if the classes match."""
    info = dataset_info.DatasetInfo(num_classes=spec.num_classes, class_names=tuple(spec.class_names),
                                    palette=tuple(tuple(c) for c in spec.palette), ignore_label=IGNORE_LABEL,
                                    name=spec.name, source=dataset_info.summary_path(out_dir))
    try:
        previous = dataset_info.DatasetInfo.read(out_dir)
    except (FileNotFoundError, ValueError):
        return info
    same = (previous.name, previous.class_names, previous.palette) == (info.name, info.class_names, info.palette)
    return dataclasses.replace(info, splits=dict(previous.splits)) if same else info
