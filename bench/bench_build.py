"""Build throughput: VOC-sized images (500x375 JPEG + palette PNG) -> TFRecords, N worker processes.

  python bench/bench_build.py [--num_images 300 --num_workers 2 --repeats 3]

Writes bench/results/build.json (medians over --repeats; every timing is kept):
  build_images_per_s: fcn.data.build.build() in a process that has already imported TensorFlow
                      (what a large build sees: worker start-up included, interpreter start-up not;
                      the first repeat also starts the forkserver, later ones reuse it);
  cli_images_per_s:   `python build_tfrecords.py ...` end to end: interpreter, TensorFlow import
                      (a few seconds, once) and worker start-up included.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import cv2  # noqa: E402

from fcn.data import build, synthetic, voc  # noqa: E402
from fcn.data.palette import voc_palette, write_palette_png  # noqa: E402
from results_file import write_results  # noqa: E402

HEIGHT, WIDTH = 375, 500


def write_dataset(root, num_images, seed=0):
    """A VOC folder of num_images 500x375 JPEGs (quality 90) + palette PNG labels, all in 'train'."""
    for sub in (voc.IMAGE_DIR, voc.LABEL_DIR, voc.LIST_DIR):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    palette = voc_palette()
    names = ['%06d' % i for i in range(num_images)]
    for i, name in enumerate(names):
        image, label = synthetic.make_example(seed, i, WIDTH)
        image, label = image[:HEIGHT], label[:HEIGHT]
        cv2.imwrite(voc.image_path(root, name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        write_palette_png(os.path.join(root, voc.LABEL_DIR, name + '.png'), label, palette)
    with open(voc.list_path(root, 'train'), 'w') as f:
        f.write(''.join(n + '\n' for n in names))


def rate(num_images, seconds):
    return round(num_images / seconds, 1)


def time_library(source, out, num_workers, num_shards):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = build.build(voc.voc_spec(source, ['train']), out, num_workers=num_workers, num_shards=num_shards)
    seconds = time.perf_counter() - start
    return seconds, summary['splits']['train']['num_images']


def time_cli(source, out, num_workers, num_shards):
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, os.path.join(REPO, 'build_tfrecords.py'), '--dataset', 'voc', '--data_dir', source,
               '--splits', 'train', '--out', out, '--num_workers', str(num_workers), '--num_shards', str(num_shards),
               '--no_progress']
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def time_tensorflow_import():
    """Wall time of `python -c "import tensorflow"`: the fixed cost inside every CLI timing."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', 'import tensorflow'], check=True, env=env, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num_images', type=int, default=300)
    parser.add_argument('--num_workers', type=int, default=2)
    parser.add_argument('--num_shards', type=int, default=4)
    parser.add_argument('--repeats', type=int, default=5, help='timings per configuration (median reported)')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'build.json'))
    args = parser.parse_args()
    import tensorflow  # noqa: F401  (imported up front: the library timing excludes this one-off cost)
    tmp = tempfile.mkdtemp(prefix='bench_build_')
    try:
        source = os.path.join(tmp, 'VOC2012')
        write_dataset(source, args.num_images)
        source_mb = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(source) for f in fs) / 1e6
        lib = [time_library(source, os.path.join(tmp, 'out'), args.num_workers, args.num_shards)
               for _ in range(args.repeats)]
        cli = [time_cli(source, os.path.join(tmp, 'out'), args.num_workers, args.num_shards)
               for _ in range(args.repeats)]
        tf_import = statistics.median(time_tensorflow_import() for _ in range(args.repeats))
        serial = [time_library(source, os.path.join(tmp, 'out'), 1, args.num_shards)[0]
                  for _ in range(args.repeats)]
        shard_mb = sum(os.path.getsize(os.path.join(tmp, 'out', f)) for f in os.listdir(os.path.join(tmp, 'out'))
                       if f.endswith('.tfrecord')) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lib_seconds = [s for s, _ in lib]
    result = {
        'num_images': args.num_images, 'image_size': [HEIGHT, WIDTH], 'num_workers': args.num_workers,
        'num_shards': args.num_shards, 'repeats': args.repeats,
        'build_seconds': [round(s, 3) for s in lib_seconds],
        'build_images_per_s': rate(args.num_images, statistics.median(lib_seconds)),
        'build_images_per_s_best': rate(args.num_images, min(lib_seconds)),
        'build_images_per_s_1_worker': [rate(args.num_images, s) for s in serial],
        'cli_seconds': [round(s, 3) for s in cli],
        'cli_images_per_s': rate(args.num_images, statistics.median(cli)),
        'tensorflow_import_seconds': round(tf_import, 3),
        'source_mb': round(source_mb, 1), 'records_mb': round(shard_mb, 1), 'opencv': cv2.__version__,
    }
    write_results(args.out, result)


if __name__ == '__main__':
    main()
