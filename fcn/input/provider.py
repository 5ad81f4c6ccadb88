"""TF-Slim Dataset + DatasetDataProvider over our TFRecords, feeding batch queues.

Every label read for training or eval is checked in the graph: a value that is neither a class
id nor the ignore label stops the run with a DatasetError naming the value, the split and the
record (`checked_label`, `label_error`), not a raw InvalidArgumentError deep in the loss.
"""
import contextlib
import dataclasses

from tf_slim.data import dataset as slim_dataset
from tf_slim.data import dataset_data_provider
from tf_slim.data import tfexample_decoder

from fcn.compat import DecodedImage, tf, tf1
from fcn.data import records
from fcn.data.spec import DatasetError

_CHECK_START = '<<fcn label check: '
_CHECK_END = ' >>'

_ITEMS = {
    'image': 'RGB image, uint8 [H, W, 3]',
    'label': 'class ids, uint8 [H, W, 1], ignore_label where void',
    'filename': 'file stem of the source image',
}


def _decoder():
    keys_to_features = {
        records.IMAGE_ENCODED: tf1.FixedLenFeature((), tf.string, default_value=''),
        records.IMAGE_FILENAME: tf1.FixedLenFeature((), tf.string, default_value=''),
        records.IMAGE_FORMAT: tf1.FixedLenFeature((), tf.string, default_value='jpeg'),
        records.IMAGE_HEIGHT: tf1.FixedLenFeature((), tf.int64, default_value=0),
        records.IMAGE_WIDTH: tf1.FixedLenFeature((), tf.int64, default_value=0),
        records.LABEL_ENCODED: tf1.FixedLenFeature((), tf.string, default_value=''),
        records.LABEL_FORMAT: tf1.FixedLenFeature((), tf.string, default_value='png'),
    }
    items_to_handlers = {
        'image': DecodedImage(records.IMAGE_ENCODED, channels=3),
        'label': DecodedImage(records.LABEL_ENCODED, channels=1),
        'filename': tfexample_decoder.Tensor(records.IMAGE_FILENAME),
    }
    return tfexample_decoder.TFExampleDecoder(keys_to_features, items_to_handlers)


def get_dataset(data_dir, split, info):
    """A slim Dataset for `split` of the records in `data_dir`, described by `info` (DatasetInfo).

    The dataset carries the description's values: num_classes, class_names, palette,
    ignore_label (the one source of the ignore label, for loss, padding and metrics).
    """
    return slim_dataset.Dataset(
        data_sources=records.shard_paths(data_dir, split),
        reader=tf1.TFRecordReader,
        decoder=_decoder(),
        num_samples=info.split(split).num_images,
        items_to_descriptions=_ITEMS,
        num_classes=info.num_classes,
        class_names=list(info.class_names),
        palette=[list(c) for c in info.palette],
        ignore_label=info.ignore_label,
        split=split)


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """How `train_batch` reads (fcn.options builds it from `data` and train.deterministic / seed)."""
    num_readers: int = 2
    num_preprocess_threads: int = 2
    shuffle_capacity: int = 256
    deterministic: bool = False
    seed: int = None


def provider(dataset, shuffle, num_readers=1, capacity=256, seed=None, num_epochs=None):
    """A DatasetDataProvider: parallel readers into a (shuffling) common queue."""
    return dataset_data_provider.DatasetDataProvider(
        dataset, num_readers=num_readers, shuffle=shuffle, num_epochs=num_epochs,
        common_queue_capacity=capacity, common_queue_min=max(1, capacity // 2) if shuffle else 1,
        seed=seed)


def train_batch(dataset, batch_size, preprocess_fn, options):
    """Shuffled, augmented batches: dict(images float32 [B,h,w,3], labels int32 [B,h,w]),
    read as `options` (InputOptions) say.

    With options.deterministic the order no longer depends on thread timing: one reader, no
    shuffling queue (whose draws depend on how full the reader left it), one preprocessing
    thread (the random ops' draws go to examples in order). Examples then come in record
    order, shards in file order; build_tfrecords.py already shuffled the examples into the
    shards with its seed, but every epoch repeats the same order.
    """
    deterministic = options.deterministic
    prov = provider(dataset, shuffle=not deterministic, num_readers=1 if deterministic else options.num_readers,
                    capacity=options.shuffle_capacity, seed=options.seed)
    image, label, filename, key = prov.get(['image', 'label', 'filename', 'record_key'])
    image, label = preprocess_fn(image, checked_label(label, dataset, filename, key))
    images, labels = tf1.train.batch(
        [image, label], batch_size=batch_size, num_threads=1 if deterministic else options.num_preprocess_threads,
        capacity=4 * batch_size)
    return {'images': images, 'labels': labels}


def eval_example(dataset):
    """Each example once per pass, in file order, whole: dict(image [1,H,W,3] float32, label [1,H,W] int32, filename)."""
    prov = provider(dataset, shuffle=False, num_readers=1, capacity=4)
    image, label, filename, key = prov.get(['image', 'label', 'filename', 'record_key'])
    label = checked_label(label, dataset, filename, key)
    return {'images': tf.expand_dims(tf.cast(image, tf.float32), 0),
            'labels': tf.expand_dims(tf.cast(label[:, :, 0], tf.int32), 0),
            'filename': filename}


def checked_label(label, dataset, filename, record_key):
    """`label`, once every value is a class id of `dataset` or its ignore label; otherwise the
    session run fails with an InvalidArgumentError that `label_error` turns into a DatasetError."""
    values = tf.cast(label, tf.int32)
    bad = tf.logical_and(values >= dataset.num_classes, tf.not_equal(values, dataset.ignore_label))
    message = tf.strings.join([
        _CHECK_START, 'label value ', tf.strings.as_string(tf.reduce_max(tf.where(bad, values, -1))),
        " in record '", filename, "' (", record_key, ') of split %r is neither a class id (0..%d) nor the '
        'ignore label %d: the records do not match their summary.json (rebuild or re-index them with '
        'build_tfrecords.py)' % (dataset.split, dataset.num_classes - 1, dataset.ignore_label), _CHECK_END])
    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message], name='label_check')
    with tf.control_dependencies([check]):
        return tf.identity(label)


def label_error(error):
    """The DatasetError for a TensorFlow error raised by `checked_label`, else None."""
    text = getattr(error, 'message', None) or str(error)
    start = text.find(_CHECK_START)
    end = text.find(_CHECK_END, start + 1)
    if start < 0 or end < 0:
        return None
    return DatasetError(text[start + len(_CHECK_START):end].replace("\\'", "'"))  # the assert escapes quotes


@contextlib.contextmanager
def running_queues(sess):
    """Runs the block with the graph's queue runners started in `sess` (stopped and joined
    after); a failed label check in it becomes its DatasetError (`label_error`)."""
    coord = tf1.train.Coordinator()
    threads = tf1.train.start_queue_runners(sess, coord=coord)
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        error = label_error(e)  # a label outside the classes: a user error
        if error is None:
            raise
        raise error from None
    finally:
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=5)
