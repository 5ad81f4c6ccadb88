"""TF-Slim Dataset + DatasetDataProvider over our TFRecords, feeding batch queues."""
from tf_slim.data import dataset as slim_dataset
from tf_slim.data import dataset_data_provider
from tf_slim.data import tfexample_decoder

from fcn.compat import DecodedImage, tf, tf1
from fcn.data import records

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


def get_dataset(data_dir, split, num_classes=None, ignore_label=255):
    """A slim Dataset for `split` of `data_dir`, described by its summary.json.

    `num_classes` (from the config) must agree with the summary when given.
    """
    summary = records.read_summary(data_dir)
    info = records.split_info(summary, split, data_dir)
    found_classes = int(summary['num_classes'])
    if num_classes is not None and int(num_classes) != found_classes:
        raise ValueError('data.num_classes is %d but %s says %d classes; drop the key or fix it'
                         % (num_classes, records.summary_path(data_dir), found_classes))
    return slim_dataset.Dataset(
        data_sources=records.shard_paths(data_dir, split),
        reader=tf1.TFRecordReader,
        decoder=_decoder(),
        num_samples=int(info['num_images']),
        items_to_descriptions=_ITEMS,
        num_classes=found_classes,
        class_names=list(summary.get('class_names') or ['class_%d' % i for i in range(found_classes)]),
        palette=summary.get('palette'),
        ignore_label=int(summary.get('ignore_label', ignore_label)),
        split=split)


def dataset_from_config(cfg, split):
    return get_dataset(cfg.data.dir, split, cfg.data.num_classes, cfg.data.ignore_label)


def provider(dataset, shuffle, num_readers=1, capacity=256, seed=None, num_epochs=None):
    """A DatasetDataProvider: parallel readers into a (shuffling) common queue."""
    return dataset_data_provider.DatasetDataProvider(
        dataset, num_readers=num_readers, shuffle=shuffle, num_epochs=num_epochs,
        common_queue_capacity=capacity, common_queue_min=max(1, capacity // 2) if shuffle else 1,
        seed=seed)


def train_batch(cfg, dataset, batch_size, preprocess_fn):
    """Shuffled, augmented batches: dict(images float32 [B,h,w,3], labels int32 [B,h,w]).

    With train.deterministic the order no longer depends on thread timing: one reader, no
    shuffling queue (whose draws depend on how full the reader left it), one preprocessing
    thread (the random ops' draws go to examples in order). Examples then come in record
    order, shards in file order; build_tfrecords.py already shuffled the examples into the
    shards with its seed, but every epoch repeats the same order.
    """
    data = cfg.data
    deterministic = cfg.train.deterministic
    prov = provider(dataset, shuffle=not deterministic, num_readers=1 if deterministic else data.num_readers,
                    capacity=data.shuffle_capacity, seed=cfg.train.seed)
    image, label = prov.get(['image', 'label'])
    image, label = preprocess_fn(image, label)
    images, labels = tf1.train.batch(
        [image, label], batch_size=batch_size, num_threads=1 if deterministic else data.num_preprocess_threads,
        capacity=4 * batch_size)
    return {'images': images, 'labels': labels}


def eval_example(dataset):
    """Each example once per pass, in file order, whole: dict(image [1,H,W,3] float32, label [1,H,W] int32, filename)."""
    prov = provider(dataset, shuffle=False, num_readers=1, capacity=4)
    image, label, filename = prov.get(['image', 'label', 'filename'])
    return {'images': tf.expand_dims(tf.cast(image, tf.float32), 0),
            'labels': tf.expand_dims(tf.cast(label[:, :, 0], tf.int32), 0),
            'filename': filename}
