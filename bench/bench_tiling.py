"""Tiled vs whole-image inference of one large image: peak memory and time.

  python bench/bench_tiling.py [--width 1.0 --size 2000 3000 --tile 512 512 --overlap 0.25 --num_classes 21]
  python bench/bench_tiling.py --source saved_model --modes tiled --out bench/results/tiling_saved_model.json

Each mode runs in a fresh process (so peak memory is its own): it builds the inference graph
of fcn/inference.py (the graph eval and export run) on a uint8 placeholder, initialises the
model with random weights (the weights do not change memory or time) or, with --source frozen
or saved_model, loads that export of the model, written by another process, as predict.py's
runners do (the peak includes loading it), predicts a 64x64
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
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))


def current_rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _graph(args, tf, tf1):
    """(images placeholder, class ids) of the inference graph for args.child's mode."""
    from fcn import inference
    model = dict(name='fcn32s', width=args.width, upsample='learnable', skip_scaling=False)
    tile = tuple(args.tile) if args.child == 'tiled' else None
    images = tf1.placeholder(tf.uint8, [1, None, None, 3], name='ImageTensor')
    classes = inference.predict_classes(tf.cast(images, tf.float32), args.num_classes, model,
                                        tile_size=tile, tile_overlap=args.overlap)
    return images, tf.identity(classes, name='SemanticPredictions')


def write_export(args, path):
    """--source frozen|saved_model, first process: the random model exported as export.py does."""
    from fcn.compat import tf, tf1
    from fcn.export import saved_model
    with tf.Graph().as_default() as graph:
        images, classes = _graph(args, tf, tf1)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if args.source == 'frozen':
                frozen = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(),
                                                                       ['SemanticPredictions'])
                with open(path, 'wb') as f:
                    f.write(frozen.SerializeToString())
                return
            builder = tf1.saved_model.Builder(path)
            signature = saved_model._signature(saved_model.IMAGES_INPUT, images, classes)
            builder.add_meta_graph_and_variables(sess, saved_model.TAGS, {saved_model.IMAGES_SIGNATURE: signature})
            builder.save()


def child(args):
    """One mode in this process; prints a JSON line with its numbers."""
    import numpy as np
    from fcn.compat import tf, tf1
    if args.source == 'frozen':  # what predict.py does: load the .pb written by another process
        from fcn.export.frozen import FrozenModel
        model = FrozenModel(args.export_path)
        sess, images, classes = model.session, 'ImageTensor:0', 'SemanticPredictions:0'
    elif args.source == 'saved_model':  # SavedModelRunner's session and tensors, without assets
        from fcn.export import saved_model
        sess = tf1.Session(graph=tf.Graph())
        with sess.graph.as_default():
            signature = tf1.saved_model.loader.load(sess, saved_model.TAGS, args.export_path).signature_def[
                saved_model.IMAGES_SIGNATURE]
        images = signature.inputs[saved_model.IMAGES_INPUT].name
        classes = signature.outputs[saved_model.OUTPUT_KEY].name
    else:
        tf.Graph().as_default().__enter__()
        images, classes = _graph(args, tf, tf1)
        sess = tf1.Session()
        sess.run(tf1.global_variables_initializer())
    sess.run(classes, {images: np.zeros((1, 64, 64, 3), np.uint8)})
    image = np.random.RandomState(0).randint(0, 256, (1,) + tuple(args.size) + (3,)).astype(np.uint8)
    before = current_rss_bytes()
    start = time.perf_counter()
    out = sess.run(classes, {images: image})
    seconds = time.perf_counter() - start
    assert out.shape == (1,) + tuple(args.size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({'mode': args.child, 'source': args.source, 'seconds': round(seconds, 1),
                      'rss_before_gb': round(before / 1e9, 2), 'peak_rss_gb': round(peak / 1e9, 2)}))


def run_mode(mode, args):
    argv = [sys.executable, os.path.abspath(__file__), '--child', mode, '--width', str(args.width),
            '--size'] + [str(s) for s in args.size] + ['--tile'] + [str(t) for t in args.tile] + [
            '--overlap', str(args.overlap), '--num_classes', str(args.num_classes), '--source', args.source]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    with tempfile.TemporaryDirectory() as tmp:
        if args.source != 'variables':
            path = os.path.join(tmp, 'model.pb' if args.source == 'frozen' else 'saved_model')
            written = subprocess.run(argv + ['--write_export', path], capture_output=True, text=True, env=env)
            if written.returncode != 0:
                raise SystemExit('export failed:\n%s' % written.stderr[-3000:])
            argv += ['--export_path', path]
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
    parser.add_argument('--source', default='variables', choices=['variables', 'frozen', 'saved_model'],
                        help='variables: the graph eval builds; frozen / saved_model: that export of it, loaded '
                             'in another process as predict.py does')
    parser.add_argument('--child', choices=['tiled', 'whole'], help=argparse.SUPPRESS)
    parser.add_argument('--write_export', help=argparse.SUPPRESS)
    parser.add_argument('--export_path', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_export:
        return write_export(args, args.write_export)
    if args.child:
        return child(args)
    from results_file import write_results
    results = {mode: run_mode(mode, args) for mode in args.modes}
    settings = {'source': args.source, 'width': args.width, 'size': args.size, 'tile_size': args.tile, 'tile_overlap': args.overlap,
                'num_classes': args.num_classes}
    write_results(args.out, {'benchmark': 'tiling', 'settings': settings, 'results': results})


if __name__ == '__main__':
    main()
