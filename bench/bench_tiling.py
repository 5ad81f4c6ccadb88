"""Tiled vs whole-image inference of one large image: peak memory and time.

  python bench/bench_tiling.py [--width 1.0 --size 2000 3000 --tile 512 512 --overlap 0.25 --num_classes 21]

Each mode runs in a fresh process (so peak memory is its own): it builds the inference graph
of fcn/inference.py (the graph eval and export run) on a uint8 placeholder, initialises the
model with random weights (the weights do not change memory or time), predicts a 64x64
image once to warm up, then predicts one random --size image and reports the wall time of
that prediction, the process's resident memory before it (graph + weights) and its peak
resident memory (getrusage ru_maxrss) at the end. The modes run one after the other, never
at once. Writes bench/results/tiling.json (--out) and prints it.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))


def current_rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def child(args):
    """One mode in this process; prints a JSON line with its numbers."""
    import numpy as np
    from fcn import inference
    from fcn.compat import tf, tf1
    model = dict(name='fcn32s', width=args.width, upsample_trainable=True, skip_scaling=False)
    tile = tuple(args.tile) if args.child == 'tiled' else None
    with tf.Graph().as_default():
        images = tf1.placeholder(tf.uint8, [1, None, None, 3])
        classes = inference.predict_classes(tf.cast(images, tf.float32), args.num_classes, model,
                                            tile_size=tile, tile_overlap=args.overlap)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(classes, {images: np.zeros((1, 64, 64, 3), np.uint8)})
            image = np.random.RandomState(0).randint(0, 256, (1,) + tuple(args.size) + (3,)).astype(np.uint8)
            before = current_rss_bytes()
            start = time.perf_counter()
            out = sess.run(classes, {images: image})
            seconds = time.perf_counter() - start
    assert out.shape == (1,) + tuple(args.size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'mode': args.child, 'seconds': round(seconds, 1), 'rss_before_gb': round(before / 1e9, 2),
                      'peak_rss_gb': round(peak / 1e9, 2)}))


def run_mode(mode, args):
    argv = [sys.executable, os.path.abspath(__file__), '--child', mode, '--width', str(args.width),
            '--size'] + [str(s) for s in args.size] + ['--tile'] + [str(t) for t in args.tile] + [
            '--overlap', str(args.overlap), '--num_classes', str(args.num_classes)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit('%s mode failed:\n%s' % (mode, result.stderr[-3000:]))
    line = [line for line in result.stdout.splitlines() if line.startswith('{')][-1]
    print(line, flush=True)
    return json.loads(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--width', type=float, default=1.0, help='model.width (1.0 = VGG-16)')
    parser.add_argument('--size', type=int, nargs=2, default=[2000, 3000], metavar=('H', 'W'))
    parser.add_argument('--tile', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'))
    parser.add_argument('--overlap', type=float, default=0.25)
    parser.add_argument('--num_classes', type=int, default=21)
    parser.add_argument('--modes', nargs='+', default=['tiled', 'whole'], choices=['tiled', 'whole'])
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'tiling.json'))
    parser.add_argument('--child', choices=['tiled', 'whole'], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from results_file import write_results
    results = {mode: run_mode(mode, args) for mode in args.modes}
    settings = {'width': args.width, 'size': args.size, 'tile_size': args.tile, 'tile_overlap': args.overlap,
                'num_classes': args.num_classes}
    write_results(args.out, {'benchmark': 'tiling', 'settings': settings, 'results': results})


if __name__ == '__main__':
    main()
