"""Checking TFRecord shards: each record's framing and checksums (CRC32C), and optionally that
its image and label decode as training decodes them (`build_tfrecords.py --verify DIR`).

A truncated or corrupted record ends the reading of its shard (the length of what follows is
unknown), so a shard reports at most one framing problem; decoding problems are reported per
record.
"""
import os

from fcn.compat import tf, tf1
from fcn.data import records


class Problem:
    def __init__(self, path, index, reason):
        self.path = path
        self.index = index
        self.reason = reason

    def __str__(self):
        return '%s: record %d: %s' % (self.path, self.index, self.reason)


class CorruptShardError(ValueError):
    """A shard that cannot be read: names the file, the record index and the problem."""

    def __init__(self, problem, message=None):
        self.problem = problem
        super().__init__(message or str(problem))


def _framing_reason(error):
    """'truncated record at 4441' failed with ...' -> 'truncated (the file ends inside it)'."""
    text = getattr(error, 'message', None) or str(error)
    if text.startswith('truncated'):
        return 'truncated: the file ends inside this record (%s)' % text.split("'")[0].strip()
    if text.startswith('corrupted'):
        return 'checksum mismatch: the record is corrupted (%s)' % text.split("'")[0].strip()
    return text.splitlines()[0]


def iterate(path):
    """Yields (index, serialized record); raises CorruptShardError at a framing/checksum error."""
    index = 0
    try:
        for record in tf1.io.tf_record_iterator(path):
            yield index, record
            index += 1
    except tf.errors.OpError as e:
        raise CorruptShardError(Problem(path, index, _framing_reason(e))) from None


class _Decoder:
    """Decodes records in a graph of its own, with the ops the input pipeline uses."""

    def __init__(self):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.image_bytes = tf1.placeholder(tf.string, [])
            self.label_bytes = tf1.placeholder(tf.string, [])
            self.image = tf.shape(tf.io.decode_image(self.image_bytes, channels=3, expand_animations=False))
            self.label = tf.shape(tf.io.decode_image(self.label_bytes, channels=0, expand_animations=False))
        self.session = tf1.Session(graph=self.graph)

    def problem(self, serialized):
        """Why the record does not decode, or None."""
        try:
            example = tf.train.Example.FromString(serialized)
        except Exception:  # protobuf's DecodeError
            return 'not a tf.train.Example'
        feature = example.features.feature
        for key in (records.IMAGE_ENCODED, records.LABEL_ENCODED):
            if key not in feature or not feature[key].bytes_list.value:
                return 'no %s feature' % key
        fetches = {}
        for name, key, tensor, placeholder in (('image', records.IMAGE_ENCODED, self.image, self.image_bytes),
                                               ('label', records.LABEL_ENCODED, self.label, self.label_bytes)):
            try:
                fetches[name] = self.session.run(tensor, {placeholder: feature[key].bytes_list.value[0]})
            except tf.errors.OpError as e:
                return '%s (%s) does not decode: %s' % (name, key, e.message.splitlines()[0])
        image, label = fetches['image'], fetches['label']
        if label[2] != 1:
            return 'label has %d channels, expected 1 (class ids)' % label[2]
        if list(image[:2]) != list(label[:2]):
            return 'label is %dx%d but the image %dx%d' % (label[1], label[0], image[1], image[0])
        return None

    def close(self):
        self.session.close()


def check_shard(path, decoder=None):
    """(number of records read, [Problem]) for one shard; decodes each record if `decoder`."""
    problems, count = [], 0
    try:
        for index, record in iterate(path):
            count += 1
            reason = decoder.problem(record) if decoder is not None else None
            if reason:
                problems.append(Problem(path, index, reason))
    except CorruptShardError as e:
        problems.append(e.problem)
    return count, problems


def shards_of(data_dir, split=None):
    """Shard paths of `split` (all splits if None), sorted."""
    names = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
    paths = []
    for name in names:
        match = records.SHARD_PATTERN.match(name)
        if match and (split is None or match.group('split') == split):
            paths.append(os.path.join(data_dir, name))
    return paths


def find_bad_shard(data_dir, split, decode=False):
    """The first Problem among the shards of `split`, or None (a checksum pass; with `decode`,
    also a decoding pass)."""
    decoder = _Decoder() if decode else None
    try:
        for path in shards_of(data_dir, split):
            _, problems = check_shard(path, decoder)
            if problems:
                return problems[0]
    finally:
        if decoder is not None:
            decoder.close()
    return None


def verify_dir(data_dir, progress=print):
    """Checks every record of every shard in `data_dir`: (records read, [Problem])."""
    paths = shards_of(data_dir)
    if not paths:
        raise FileNotFoundError('no shards named SPLIT-NNNNN-of-NNNNN.tfrecord in %s' % data_dir)
    decoder = _Decoder()
    total, problems = 0, []
    try:
        for path in paths:
            count, found = check_shard(path, decoder)
            total += count
            problems.extend(found)
            progress('%s: %d records%s' % (os.path.basename(path), count,
                                           ', %d bad' % len(found) if found else ', ok'))
    finally:
        decoder.close()
    return total, problems
