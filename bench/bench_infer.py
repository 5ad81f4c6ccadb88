"""Inference speed of every export format, and of PyTorch eager as the peer line.

  python bench/bench_infer.py [--size 512 --width 1.0 --runs 10 --rounds 3 --warmup 2]

Builds an FCN-32s (VGG-16 at model.width --width, 21 VOC classes) with RANDOM weights (speed
does not depend on their values) as a checkpoint in a run folder, and exports it with the
project's own export code: frozen graph; SavedModel; ONNX; TFLite at --size x --size (float32, and each
of --tflite_quantize). The PyTorch line is the same network (same layers, padding and crop,
the checkpoint's weights) in torch eager mode, what a user might pick instead (the `bench`
extra: torch==2.13.0, CPU build).

One RGB image of --size x --size, batch 1. Every runner predicts it --warmup times; then the
runners take turns, --rounds times: in each round each runner predicts it --runs times in a
row. Reported per runner: latency median and p95 over all timed calls, images/s = timed
calls / their total time, the model file's size, and the share of pixels whose class ids
equal the frozen graph's (a check that every runner computes the same network). All runners
are loaded at once (several GB at width 1.0); run one benchmark at a time. Every runtime uses
all cores (TensorFlow's and ONNX Runtime's defaults; TFLite and torch are given
os.cpu_count() threads).

Writes bench/results/infer.json (every timing kept), through bench/results_file.py.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests'))  # inference_fixtures: the random model

import numpy as np  # noqa: E402

from fcn.data import synthetic  # noqa: E402
from results_file import write_results  # noqa: E402

NUM_CLASSES = 21
TILING_SLOT = 'peak memory of tiled vs whole-image inference: see bench/results/tiling.json'


# --- the model, as a run folder ---------------------------------------------------------------

def make_run(run_dir, width, seed=0):
    """A run folder (config.yaml, dataset.json, model.ckpt-1) holding a random FCN-32s; returns
    (cfg, checkpoint)."""
    from fcn import run as runs
    from fcn.config import load_config
    from fcn.data.info import DatasetInfo
    from fcn.data.palette import VOC_CLASSES, voc_palette
    from inference_fixtures import random_checkpoint  # tests/: the same random model the export tests use
    cfg = load_config(os.path.join(REPO, 'configs', 'voc.yaml'),
                      ['train.run_dir=%s' % run_dir, 'model.width=%s' % width])
    info = DatasetInfo(num_classes=NUM_CLASSES, class_names=tuple(VOC_CLASSES[:NUM_CLASSES]),
                       palette=tuple(tuple(int(v) for v in c) for c in voc_palette(NUM_CLASSES)), name='voc')
    runs.Run(cfg.train.run_dir).write(cfg, info)
    return cfg, random_checkpoint(cfg, NUM_CLASSES, step=1, seed=seed)


# --- exports: each in a child process (export.py, as a user runs it) ---------------------------

def run_child(command):
    """Runs `command`; returns (seconds, peak RSS of the child in MB). Raises with its stderr on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=REPO)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError('%s failed (%d):\n%s' % (' '.join(command), process.returncode, stderr.decode()[-3000:]))
    return time.perf_counter() - start, round(usage.ru_maxrss / 1024)


def export_model(config, fmt, out, *extra):
    seconds, peak_mb = run_child([sys.executable, os.path.join(REPO, 'export.py'), '--config', config,
                                  '--format', fmt, '--out', out] + list(extra))
    return {'export_seconds': round(seconds, 1), 'export_peak_rss_mb': peak_mb}


def export_all(args, work_dir):
    """[(name, path, runner factory, export stats)] for every format this checkout exports."""
    run_dir = os.path.join(work_dir, 'run')
    run_child([sys.executable, os.path.abspath(__file__), '--make_run', run_dir, '--width', str(args.width)])
    config = os.path.join(run_dir, 'config.yaml')
    models = os.path.join(work_dir, 'models')
    from fcn.export.onnx_runner import OnnxModel
    from fcn.export.tflite_runner import TFLiteModel
    from fcn.export.frozen import FrozenModel
    from fcn.export.saved_model import SavedModelRunner
    path = os.path.join(models, 'model.pb')
    exports = [('frozen graph (TF session)', path, lambda p: FrozenModel(p), export_model(config, 'frozen', path))]
    path = os.path.join(models, 'saved_model', '1')
    exports.append(('SavedModel (TF)', path, SavedModelRunner, export_model(config, 'saved_model', path)))
    path = os.path.join(models, 'model.onnx')
    exports.append(('ONNX Runtime', path, lambda p: OnnxModel(p), export_model(config, 'onnx', path)))
    for quantize in ['none'] + args.tflite_quantize:
        path = os.path.join(models, 'tflite_' + quantize, 'model.tflite')
        stats = export_model(config, 'tflite', path, '--input_size', str(args.size), str(args.size), '--quantize', quantize)
        name = 'TFLite float32' if quantize == 'none' else 'TFLite %s' % quantize
        exports.append((name, path, lambda p: TFLiteModel(p, fit='exact', num_threads=args.threads), stats))
    return exports, os.path.join(run_dir, 'model.ckpt-1')


def torch_name():
    import torch
    return 'PyTorch %s eager (peer)' % torch.__version__.split('+')[0]


class TorchRunner:
    """FCN-32s in torch eager mode with the checkpoint's weights: the layers, padding and crop of
    fcn.nets.fcn (mean subtraction, pad bottom/right to 32, VGG-16 with SAME convs, 7x7 fc6,
    64x64 stride-32 transposed conv cropped at offset 16, argmax)."""

    def __init__(self, checkpoint, width):
        import torch
        from torch import nn

        from fcn.compat import tf
        from fcn.nets import vgg
        reader = tf.train.load_checkpoint(checkpoint)
        self.torch = torch
        layers = []
        for block, repeats, out in vgg.BLOCKS:
            for i in range(repeats):
                layers += [self._conv(reader, 'vgg_16/%s/%s_%d' % (block, block, i + 1), padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2, 2))
        layers += [self._conv(reader, 'vgg_16/fc6', padding=3), nn.ReLU(inplace=True),
                   self._conv(reader, 'vgg_16/fc7', padding=0), nn.ReLU(inplace=True),
                   self._conv(reader, 'vgg_16/fc8', padding=0)]
        self.features = nn.Sequential(*layers).eval()
        upscore = reader.get_tensor('fcn/upscore32/weights')  # [64, 64, out, in]
        self.upscore = nn.ConvTranspose2d(upscore.shape[3], upscore.shape[2], upscore.shape[0], stride=32, bias=False)
        self.upscore.weight.data = torch.from_numpy(upscore.transpose(3, 2, 0, 1).copy())
        self.upscore.eval()
        self.mean = torch.tensor(vgg.MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1)

    @staticmethod
    def _conv(reader, scope, padding):
        import torch
        from torch import nn
        weights = reader.get_tensor(scope + '/weights')  # [kh, kw, in, out]
        conv = nn.Conv2d(weights.shape[2], weights.shape[3], weights.shape[0], padding=padding)
        conv.weight.data = torch.from_numpy(weights.transpose(3, 2, 0, 1).copy())
        conv.bias.data = torch.from_numpy(reader.get_tensor(scope + '/biases'))
        return conv

    def predict(self, image):
        torch = self.torch
        height, width = image.shape[:2]
        with torch.inference_mode():
            x = torch.from_numpy(image).permute(2, 0, 1)[None].float() - self.mean
            x = torch.nn.functional.pad(x, (0, -width % 32, 0, -height % 32))
            logits = self.upscore(self.features(x))[:, :, 16:16 + height, 16:16 + width]
            return logits.argmax(1)[0].to(torch.int32).numpy()

    def close(self):
        pass


# --- timing -----------------------------------------------------------------------------------

def time_calls(model, image, runs):
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict(image)
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds):
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {'latency_ms_median': round(1000 * statistics.median(seconds), 1), 'latency_ms_p95': round(1000 * p95, 1),
            'images_per_s': round(len(seconds) / sum(seconds), 3), 'seconds': [round(s, 4) for s in seconds]}


def file_size(path):
    if path is None:
        return None
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512, help='image height and width')
    parser.add_argument('--width', type=float, default=1.0, help='model.width (1.0 = VGG-16)')
    parser.add_argument('--runs', type=int, default=10, help='timed calls per runner per round')
    parser.add_argument('--rounds', type=int, default=3, help='rounds in which the runners take turns')
    parser.add_argument('--warmup', type=int, default=2, help='untimed calls per runner first')
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='TFLite and torch threads')
    parser.add_argument('--tflite_quantize', nargs='*', default=['float16', 'dynamic'],
                        help='quantised TFLite variants to time besides float32')
    parser.add_argument('--no_torch', action='store_true', help='leave out the PyTorch line')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'infer.json'))
    parser.add_argument('--make_run', help=argparse.SUPPRESS)  # child: write the random run folder
    args = parser.parse_args()
    if args.make_run:
        make_run(args.make_run, args.width)
        return
    work_dir = tempfile.mkdtemp(prefix='bench_infer_')
    try:
        exports, checkpoint = export_all(args, work_dir)
        runners, rows = [], {}
        for name, path, factory, stats in exports:
            runners.append((name, factory(path)))
            rows[name] = dict(stats, file_bytes=file_size(path))
        if not args.no_torch:
            import torch
            torch.set_num_threads(args.threads)
            runners.append((torch_name(), TorchRunner(checkpoint, args.width)))
            rows[torch_name()] = {'file_bytes': None}
        result = time_runners(runners, rows, args)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    result.update({
        'image_size': [args.size, args.size], 'batch': 1, 'model': 'fcn32s', 'model_width': args.width,
        'num_classes': NUM_CLASSES, 'weights': 'random (speed does not depend on them)',
        'runs': args.runs, 'rounds': args.rounds, 'warmup': args.warmup, 'threads': args.threads,
        'peak_rss_mb_all_runners_loaded': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        'tiling': TILING_SLOT, 'versions': versions(args)})
    write_results(args.out, result)


def time_runners(runners, rows, args):
    """Warm-up, then --rounds rounds of --runs calls per runner in turn; fills `rows`."""
    image = synthetic.make_example(0, 0, args.size)[0]  # shapes on a textured background
    reference = runners[0][1].predict(image)
    for name, model in runners:
        rows[name]['agreement_with_frozen'] = float((model.predict(image) == reference).mean())
        for _ in range(args.warmup):
            model.predict(image)
    timings = {name: [] for name, _ in runners}
    loads = []
    for _ in range(args.rounds):
        for name, model in runners:
            timings[name] += time_calls(model, image, args.runs)
        loads.append(round(os.getloadavg()[0], 2))
    for name, model in runners:
        rows[name].update(summary(timings[name]))
        model.close()
    return {'frozen_ids_classes_present': int(len(np.unique(reference))), 'load_average_1min_per_round': loads,
            'runners': rows}


def versions(args):
    import onnxruntime
    import tf2onnx
    found = {'onnxruntime': onnxruntime.__version__, 'tf2onnx': tf2onnx.__version__}
    if not args.no_torch:
        import torch
        found['torch'] = torch.__version__
    return found


if __name__ == '__main__':
    main()
