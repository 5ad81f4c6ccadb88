"""Training input throughput: the slim provider pipeline vs a plain tf.data pipeline.

  python bench/bench_input.py [--num_images 200 --batches 40 --crop 512 --batch_size 8]

Both decode the same VOC-sized records (500x375 JPEG + PNG label) and run the same
augmentation (fcn.data.preprocess.preprocess_train: scale 0.5-2.0, pad, crop, flip) into
batches of `batch_size`; only the plumbing differs (slim DatasetDataProvider + queue
runners vs tf.data map/batch/prefetch). Writes bench/results/input.json and prints it.
"""
import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

from bench_build import write_dataset  # noqa: E402
from fcn.compat import tf, tf1  # noqa: E402
from fcn.config import load_config  # noqa: E402
from fcn.data import build, preprocess, provider, records, voc  # noqa: E402


def make_records(root, num_images):
    source, out = os.path.join(root, 'voc'), os.path.join(root, 'records')
    write_dataset(source, num_images)
    build.build(voc.voc_spec(source, ['train']), out, num_workers=2, num_shards=4, progress=False)
    return out


def bench_config(data_dir, args):
    return load_config(os.path.join(REPO, 'configs', 'base.yaml'), [
        'data.dir=%s' % data_dir, 'data.train_split=train', 'train.crop_size=%d' % args.crop,
        'train.batch_size=%d' % args.batch_size, 'data.num_readers=%d' % args.readers,
        'data.num_preprocess_threads=%d' % args.threads])


def time_batches(sess, fetch, warmup, batches):
    for _ in range(warmup):
        sess.run(fetch)
    start = time.perf_counter()
    for _ in range(batches):
        sess.run(fetch)
    return time.perf_counter() - start


def slim_pipeline(cfg):
    dataset = provider.dataset_from_config(cfg, 'train')
    batch = provider.train_batch(cfg, dataset, cfg.train.batch_size, preprocess.train_preprocess_fn(cfg))
    return batch['images'], batch['labels']


def tfdata_pipeline(cfg):
    files = records.shard_paths(cfg.data.dir, 'train')
    decode = provider._decoder()  # the same TFExampleDecoder the slim provider uses
    augment = preprocess.train_preprocess_fn(cfg)

    def parse(serialized):
        image, label = decode.decode(serialized, ['image', 'label'])
        return augment(image, label)

    data = (tf.data.TFRecordDataset(files).repeat().shuffle(cfg.data.shuffle_capacity)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.train.batch_size)
            .prefetch(tf.data.AUTOTUNE))
    return tf1.data.make_one_shot_iterator(data).get_next()


def measure(build_fn, cfg, args):
    with tf.Graph().as_default():
        fetch = build_fn(cfg)
        with tf1.Session() as sess:
            coord = tf1.train.Coordinator()
            threads = tf1.train.start_queue_runners(sess, coord=coord)
            seconds = time_batches(sess, fetch, args.warmup, args.batches)
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=5)
    return round(args.batches * args.batch_size / seconds, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--num_images', type=int, default=200)
    parser.add_argument('--batches', type=int, default=40)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--crop', type=int, default=512)
    parser.add_argument('--batch_size', type=int, default=8)
    parser.add_argument('--readers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'input.json'))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='bench-input-')
    try:
        cfg = bench_config(make_records(root, args.num_images), args)
        result = {'slim_images_per_s': measure(slim_pipeline, cfg, args),
                  'tfdata_images_per_s': measure(tfdata_pipeline, cfg, args)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result['slowdown_vs_tfdata'] = round(result['tfdata_images_per_s'] / result['slim_images_per_s'], 2)
    result.update({'settings': vars(args), 'machine': '%s, %d cores' % (platform.machine(), os.cpu_count()),
                   'tensorflow': tf.__version__})
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
