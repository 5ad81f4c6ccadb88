"""Training input throughput: the slim provider pipeline vs a plain tf.data pipeline.

  python bench/bench_input.py [--num_images 200 --batches 40 --crop 512 (or HxW, e.g. 512x1024) --batch_size 8 --repeats 3]

Both decode the same VOC-sized records (500x375 JPEG + PNG label) and run the same
augmentation (fcn.input.preprocess.preprocess_train: scale 0.5-2.0, pad, crop, flip) into
batches of `batch_size`; only the plumbing differs (slim DatasetDataProvider + queue
runners vs tf.data map/batch/prefetch). The two are timed alternately, --repeats times each,
so a change in machine load hits both; medians are reported, every timing is kept.
Writes bench/results/input.json and prints it.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

from bench_build import write_dataset  # noqa: E402
from fcn import options  # noqa: E402
from fcn.compat import tf, tf1  # noqa: E402
from fcn.config import load_config  # noqa: E402
from fcn.data import build, records, voc  # noqa: E402
from fcn.input import preprocess, provider  # noqa: E402
from fcn.data import info as dataset_info  # noqa: E402
from results_file import write_results  # noqa: E402


def make_records(root, num_images):
    source, out = os.path.join(root, 'voc'), os.path.join(root, 'records')
    write_dataset(source, num_images)
    build.build(voc.voc_spec(source, ['train']), out, num_workers=2, num_shards=4, progress=False)
    return out


def bench_config(data_dir, args):
    return load_config(os.path.join(REPO, 'configs', 'base.yaml'), [
        'data.dir=%s' % data_dir, 'data.train_split=train', 'train.crop_size=%s' % args.crop,
        'train.batch_size=%d' % args.batch_size, 'data.num_readers=%d' % args.readers,
        'data.num_preprocess_threads=%d' % args.threads])


def crop_arg(text):
    """'512' -> 512, '512x1024' -> [512, 1024] (train.crop_size checks the multiples of 32)."""
    sides = [int(side) for side in text.lower().split('x')]
    return sides[0] if len(sides) == 1 else sides


def time_batches(sess, fetch, warmup, batches):
    for _ in range(warmup):
        sess.run(fetch)
    start = time.perf_counter()
    for _ in range(batches):
        sess.run(fetch)
    return time.perf_counter() - start


def slim_pipeline(cfg):
    dataset = provider.get_dataset(cfg.data.dir, 'train', dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes))
    batch = provider.train_batch(dataset, cfg.train.batch_size,
                                 preprocess.train_preprocess_fn(options.augment(cfg), dataset.ignore_label),
                                 options.input_pipeline(cfg))
    return batch['images'], batch['labels']


def tfdata_pipeline(cfg):
    files = records.shard_paths(cfg.data.dir, 'train')
    decode = provider._decoder()  # the same TFExampleDecoder the slim provider uses
    augment = preprocess.train_preprocess_fn(options.augment(cfg), dataset_info.for_run(cfg.train.run_dir, cfg.data.dir, cfg.data.num_classes).ignore_label)

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
    parser.add_argument('--crop', type=crop_arg, default=512, help='crop side, or HxW (train.crop_size [H, W])')
    parser.add_argument('--batch_size', type=int, default=8)
    parser.add_argument('--readers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3, help='timings per pipeline (median reported)')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'input.json'))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='bench-input-')
    timings = {'slim': [], 'tfdata': []}
    try:
        cfg = bench_config(make_records(root, args.num_images), args)
        for _ in range(args.repeats):
            timings['slim'].append(measure(slim_pipeline, cfg, args))
            timings['tfdata'].append(measure(tfdata_pipeline, cfg, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    slim, tfdata = statistics.median(timings['slim']), statistics.median(timings['tfdata'])
    write_results(args.out, {
        'slim_images_per_s': slim, 'tfdata_images_per_s': tfdata,
        'slowdown_vs_tfdata': round(tfdata / slim, 2),
        'slim_images_per_s_all': timings['slim'], 'tfdata_images_per_s_all': timings['tfdata'],
        'settings': {k: v for k, v in vars(args).items() if k != 'out'}})


if __name__ == '__main__':
    main()
