"""Training step speed: this project's step vs a raw TF1 graph step vs PyTorch eager, same network.

  python bench/bench_train.py [--crop 320 --batch_size 1 --width 1.0 --rounds 3 --warmup 3 --steps 5]
  python bench/bench_train.py --quick          # 1 round, 1 warm-up + 2 timed steps: a check that it runs
  python bench/bench_train.py --profile        # per-op times (TF FULL_TRACE, torch.profiler)
  python bench/bench_train.py --runners project,project:onednn,project:data.num_readers=1
                                               # variants: TF_ENABLE_ONEDNN_OPTS=1, config overrides
  python bench/bench_train.py --runners raw_tf,raw_tf:shape_chosen_grad,torch
                                               # raw TF with per-shape gradient kernels (an experiment)

The network is VGG-16 FCN-32s (fc6 7x7 and fc7 1x1 as convolutions, fc8 to 21 classes, one
64x64 stride-32 transposed convolution), dropout 0.5 on fc6/fc7, L2 weight decay 5e-4,
per-pixel mean softmax cross-entropy, momentum SGD 0.9 (lr 1e-4), at `--crop` x `--crop`,
`--batch_size` images per step, from random initial weights.

  project  fcn.train_lib as train.py runs it: records of VOC-sized images (500x375 JPEG + PNG)
           -> slim provider + queue runners -> augmentation -> clones -> optimizer, with its
           hooks (monitor, checkpoint saver, step limit) and summaries in a
           MonitoredTrainingSession. A step is the time between two consecutive step ends,
           as seen by a hook that runs after all others.
  raw_tf   the same network written with tf.nn ops in a plain tf.compat.v1 graph, fed a
           constant batch, `tf1.train.MomentumOptimizer.minimize`, `Session.run(train_op)`.
  torch    the same network in PyTorch eager (torch.nn, NCHW), constant batch, torch.optim.SGD.
  sgemm    numpy float32 matmul (--gemm_n square), this machine's practical peak in GFLOP/s.

Each measurement runs in its own subprocess (one full-width graph in memory at a time; each
gets a fresh thread pool), in the order project, raw_tf, torch, sgemm, repeated --rounds
times, so load from other jobs hits all of them; medians of the per-round medians are reported
and every step time is kept. GFLOP per step are counted analytically (fcn_flops below).
Writes bench/results/train.json (or --out) and prints it; --profile writes train_profile.json
beside it (TF: the sum of each op type's node times, which overlap when ops run in parallel).
Needs PyTorch for the torch runner: pip install -e ".[bench]".
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

NUM_CLASSES = 21
VGG_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
FC_CHANNELS = 4096
STRIDE = 32
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, KEEP_PROB = 1e-4, 0.9, 5e-4, 0.5
RUNNERS = ('project', 'raw_tf', 'torch', 'sgemm')


def scaled(channels, width):
    return max(1, int(round(channels * width)))


def layer_shapes(crop, width):
    """(kernel, c_in, c_out, out_h, out_w) of every convolution of VGG-16 FCN-32s at this crop."""
    layers, size, c_in = [], crop, 3
    for repeats, channels in VGG_BLOCKS:
        for _ in range(repeats):
            layers.append((3, c_in, scaled(channels, width), size, size))
            c_in = scaled(channels, width)
        size //= 2
    fc = scaled(FC_CHANNELS, width)
    layers += [(7, c_in, fc, size, size), (1, fc, fc, size, size), (1, fc, NUM_CLASSES, size, size)]
    return layers


def fcn_flops(crop, batch_size, width):
    """Floating-point operations of one training step (2 per multiply-add), convolutions only:
    forward, the weight gradient and the input gradient (the first conv needs none), plus the
    stride-32 transposed convolution forward and backward. Pooling, ReLU, loss and the update
    are left out (well under 1%)."""
    total = 0
    for i, (k, c_in, c_out, h, w) in enumerate(layer_shapes(crop, width)):
        forward = 2 * batch_size * h * w * k * k * c_in * c_out
        total += forward * (2 if i == 0 else 3)
    score = crop // STRIDE
    total += 3 * 2 * batch_size * score * score * (2 * STRIDE) ** 2 * NUM_CLASSES * NUM_CLASSES
    return total


# ---------------------------------------------------------------- project (fcn.train_lib)

def make_records(root, num_images):
    from bench_build import write_dataset
    from fcn.data import build, voc
    source, out = os.path.join(root, 'voc'), os.path.join(root, 'records')
    write_dataset(source, num_images)
    build.build(voc.voc_spec(source, ['train']), out, num_workers=2, num_shards=2, progress=False)
    return out


def run_project(args):
    from fcn import options, train_lib
    from fcn.compat import tf1
    from fcn.config import load_config

    class StepTimer(tf1.train.SessionRunHook):
        def __init__(self):
            self.ends = []

        def after_run(self, run_context, run_values):
            self.ends.append(time.perf_counter())

    run_dir = tempfile.mkdtemp(prefix='bench-train-run-')
    try:
        cfg = load_config(os.path.join(REPO, 'configs', 'base.yaml'), [
            'data.dir=%s' % args.data_dir, 'train.run_dir=%s' % run_dir, 'model.width=%s' % args.width,
            'train.crop_size=%d' % args.crop, 'train.batch_size=%d' % args.batch_size,
            'train.steps=%d' % (args.warmup + args.steps + 1)] + list(args.set))
        graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
        scaffold, _, _ = train_lib._scaffold(cfg, graph)
        hooks, chief_hooks = train_lib._hooks(cfg, graph, scaffold, True, log=lambda line: None)
        timer = StepTimer()
        train_lib._run_session(cfg, graph, scaffold, None, hooks + [timer], chief_hooks)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    steps = [b - a for a, b in zip(timer.ends, timer.ends[1:])]
    return steps[args.warmup:]


# ---------------------------------------------------------------- raw TF1 graph

def raw_tf_graph(tf, tf1, batch_size, crop, width):
    """The network in tf.nn ops; returns train_op."""
    import numpy as np
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(0, 255, (batch_size, crop, crop, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, NUM_CLASSES, (batch_size, crop, crop)).astype(np.int32))
    net = images - tf.constant([123.68, 116.78, 103.94])
    weights = []
    layers = layer_shapes(crop, width)
    conv_index = 0
    for block, (repeats, _) in enumerate(VGG_BLOCKS):
        for _ in range(repeats):
            net = _raw_conv(tf, tf1, net, layers[conv_index], 'conv%d' % conv_index, weights)
            conv_index += 1
        net = tf.nn.max_pool2d(net, 2, 2, 'VALID')
    for name, drop in (('fc6', True), ('fc7', True), ('fc8', False)):
        net = _raw_conv(tf, tf1, net, layers[conv_index], name, weights, relu=name != 'fc8')
        conv_index += 1
        if drop:
            net = tf.nn.dropout(net, rate=1 - KEEP_PROB)
    kernel = tf1.get_variable('upscore', [2 * STRIDE, 2 * STRIDE, NUM_CLASSES, NUM_CLASSES])
    logits = tf.nn.conv2d_transpose(net, kernel, [batch_size, crop, crop, NUM_CLASSES], STRIDE, 'SAME')
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    loss += WEIGHT_DECAY * tf.add_n([tf.nn.l2_loss(w) for w in weights])
    return tf1.train.MomentumOptimizer(LEARNING_RATE, MOMENTUM).minimize(loss)


def _raw_conv(tf, tf1, net, shape, name, weights, relu=True):
    k, c_in, c_out, _, _ = shape
    w = tf1.get_variable(name + '/w', [k, k, c_in, c_out])
    b = tf1.get_variable(name + '/b', [c_out], initializer=tf1.zeros_initializer())
    weights.append(w)
    net = tf.nn.bias_add(tf.nn.conv2d(net, w, 1, 'SAME'), b)
    return tf.nn.relu(net) if relu else net


def register_shape_chosen_conv_grad(tf):
    """Registers 'BenchConv2DShapeChosen': Conv2D's gradient computed, per layer shape, by the
    TensorFlow kernel that bench_conv_layers.py found faster here (stride-1 SAME convolutions
    only, as in this network): the input gradient as a forward `Conv2D` of the output gradient
    with the flipped, transposed kernel on large maps (>= 80x80), the filter gradient as
    `extract_patches` + one `MatMul` on small maps (<= 20x20), TensorFlow's own kernels
    otherwise. An experiment of what per-shape kernel choice would gain, not used by fcn."""
    from tensorflow.python.ops import nn_grad

    @tf.RegisterGradient('BenchConv2DShapeChosen')
    def _grad(op, grad):  # pylint: disable=unused-variable
        grad_input, grad_filter = nn_grad._Conv2DGrad(op, grad)
        inputs, kernel = op.inputs
        k, _, c_in, c_out = kernel.shape.as_list()
        height, width = inputs.shape.as_list()[1:3]
        if height * width >= 80 * 80:
            flipped = tf.reverse(tf.transpose(kernel, [0, 1, 3, 2]), [0, 1])
            grad_input = tf.nn.conv2d(grad, flipped, 1, 'SAME')
        if height * width <= 20 * 20:
            patches = tf.image.extract_patches(inputs, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1], 'SAME')
            grad_filter = tf.reshape(tf.matmul(tf.reshape(patches, [-1, k * k * c_in]),
                                               tf.reshape(grad, [-1, c_out]), transpose_a=True), kernel.shape)
        return grad_input, grad_filter


def run_raw_tf(args):
    import tensorflow as tf
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    with tf.Graph().as_default() as graph:
        overrides = {}
        if args.shape_chosen_grad:
            register_shape_chosen_conv_grad(tf)
            overrides = {'Conv2D': 'BenchConv2DShapeChosen'}
        with graph.gradient_override_map(overrides):
            train_op = raw_tf_graph(tf, tf1, args.batch_size, args.crop, args.width)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return time_calls(lambda: sess.run(train_op), args.warmup, args.steps)


def time_calls(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------- PyTorch eager

def torch_model(nn, width):
    layers, c_in = [], 3
    for repeats, channels in VGG_BLOCKS:
        for _ in range(repeats):
            layers += [nn.Conv2d(c_in, scaled(channels, width), 3, padding=1), nn.ReLU(inplace=True)]
            c_in = scaled(channels, width)
        layers.append(nn.MaxPool2d(2))
    fc = scaled(FC_CHANNELS, width)
    layers += [nn.Conv2d(c_in, fc, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout(1 - KEEP_PROB),
               nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(1 - KEEP_PROB),
               nn.Conv2d(fc, NUM_CLASSES, 1),
               # output (10-1)*32 - 2*16 + 64 = 320: the same alignment as TF's SAME transposed conv
               nn.ConvTranspose2d(NUM_CLASSES, NUM_CLASSES, 2 * STRIDE, STRIDE, padding=STRIDE // 2, bias=False)]
    return nn.Sequential(*layers)


def torch_step_fn(args):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(0)
    model = torch_model(torch.nn, args.width).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    images = torch.rand(args.batch_size, 3, args.crop, args.crop) * 255 - 117.0
    labels = torch.randint(0, NUM_CLASSES, (args.batch_size, args.crop, args.crop))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels, ignore_index=255)
        loss.backward()
        optimizer.step()
    return step


def run_torch(args):
    return time_calls(torch_step_fn(args), args.warmup, args.steps)


# ---------------------------------------------------------------- sgemm peak

def run_sgemm(args):
    """Seconds of one args.gemm_n-square float32 matmul, several times (as 'steps')."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((args.gemm_n, args.gemm_n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((args.gemm_n, args.gemm_n), dtype=np.float32)
    return time_calls(lambda: a @ b, 2, max(args.steps, 5))


WORKERS = {'project': run_project, 'raw_tf': run_raw_tf, 'torch': run_torch, 'sgemm': run_sgemm}


# ---------------------------------------------------------------- profiles

def profile_raw_tf(args):
    """Per-op-type seconds of traced raw TF steps (RunMetadata FULL_TRACE)."""
    from fcn.compat import tf, tf1
    with tf.Graph().as_default():
        train_op = raw_tf_graph(tf, tf1, args.batch_size, args.crop, args.width)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            return traced_steps(sess, train_op, args.warmup, args.steps)


def profile_project(args):
    """The same for the project's training graph (fcn.train_lib.TrainGraph), its input queues
    running as in training; the trace covers the step's own ops only."""
    from fcn import options, train_lib
    from fcn.compat import tf1
    from fcn.config import load_config
    cfg = load_config(os.path.join(REPO, 'configs', 'base.yaml'), [
        'data.dir=%s' % args.data_dir, 'model.width=%s' % args.width, 'train.crop_size=%d' % args.crop,
        'train.batch_size=%d' % args.batch_size] + list(args.set))
    graph = train_lib.TrainGraph(cfg, options.deployment(cfg))
    with graph.graph.as_default(), tf1.Session(config=train_lib.session_config(cfg)) as sess:
        sess.run(tf1.global_variables_initializer())
        coord = tf1.train.Coordinator()
        threads = tf1.train.start_queue_runners(sess, coord=coord)
        result = traced_steps(sess, graph.step_after_update, args.warmup, args.steps)
        coord.request_stop()
        coord.join(threads, stop_grace_period_secs=5)
    return result


def traced_steps(sess, fetch, warmup, steps):
    from fcn.compat import tf1
    for _ in range(warmup):
        sess.run(fetch)
    options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
    totals, walls = {}, []
    for _ in range(steps):
        meta = tf1.RunMetadata()
        start = time.perf_counter()
        sess.run(fetch, options=options, run_metadata=meta)
        walls.append(time.perf_counter() - start)
        for device in meta.step_stats.dev_stats:
            for node in device.node_stats:
                op = node.timeline_label.split(' = ')[-1].split('(')[0] or node.node_name
                totals[op] = totals.get(op, 0) + node.all_end_rel_micros / 1e6
    return {'step_s': round(statistics.median(walls), 3),
            'op_seconds_per_step': top_ops(totals, steps)}


def top_ops(totals, steps, count=20):
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {name: round(seconds / steps, 4) for name, seconds in ranked[:count]}


def profile_torch(args):
    """Per-op self CPU seconds of PyTorch steps (torch.profiler)."""
    import torch
    step = torch_step_fn(args)
    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    wall = (time.perf_counter() - start) / args.steps
    totals = {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}
    return {'step_s': round(wall, 3), 'op_seconds_per_step': top_ops(totals, args.steps)}


PROFILERS = {'project': profile_project, 'raw_tf': profile_raw_tf, 'torch': profile_torch}


# ---------------------------------------------------------------- orchestration

def run_worker(args, runner, extra=()):
    """Runs one measurement in a fresh Python process; returns what it prints (JSON).

    `runner` is a name from RUNNERS, optionally with variants after a colon, joined by '+':
    'onednn' sets TF_ENABLE_ONEDNN_OPTS=1, 'KEY=VALUE' is a project config override
    (e.g. 'project:data.num_preprocess_threads=1+onednn'), 'shape_chosen_grad' (raw_tf only)
    computes convolution gradients as register_shape_chosen_conv_grad says."""
    name, _, variants = runner.partition(':')
    variants = [v for v in variants.split('+') if v]
    command = [sys.executable, os.path.abspath(__file__), '--worker', name,
               '--crop', str(args.crop), '--batch_size', str(args.batch_size), '--width', str(args.width),
               '--warmup', str(args.warmup), '--steps', str(args.steps), '--gemm_n', str(args.gemm_n),
               '--data_dir', args.data_dir or '', '--threads', str(args.threads)]
    for override in list(args.set) + [v for v in variants if '=' in v]:
        command += ['--set', override]
    if 'shape_chosen_grad' in variants:
        command.append('--shape_chosen_grad')
    command += list(extra)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2')
    if args.onednn is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = args.onednn
    if 'onednn' in variants:
        env['TF_ENABLE_ONEDNN_OPTS'] = '1'
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarise(times, flops, sgemm_gflops):
    per_round = [statistics.median(t) for t in times]
    step = statistics.median(per_round)
    gflops = flops / 1e9 / step
    return {'step_s': round(step, 3), 'step_s_per_round': [round(s, 3) for s in per_round],
            'gflop_per_s': round(gflops, 1),
            'fraction_of_sgemm_peak': sgemm_gflops and round(gflops / sgemm_gflops, 3),
            'step_s_all': [[round(s, 3) for s in t] for t in times]}


def main():
    args = parse_args()
    if args.worker:
        result = (PROFILERS if args.profile else WORKERS)[args.worker](args)
        print(json.dumps(result))
        return
    if args.quick:
        args.rounds, args.warmup, args.steps = 1, 1, 2
    runners = args.runners.split(',')
    root = tempfile.mkdtemp(prefix='bench-train-')
    try:
        if any(r.startswith('project') for r in runners):
            args.data_dir = make_records(root, args.num_images)
        if args.profile:
            return write_profile(args)
        times = {r: [] for r in runners}
        loads = []
        for _ in range(args.rounds):
            for runner in runners:
                times[runner].append(run_worker(args, runner))
                loads.append(round(os.getloadavg()[0], 2))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(args, times, loads)


def write_results(args, times, loads):
    from results_file import write_results as write
    flops = fcn_flops(args.crop, args.batch_size, args.width)
    sgemm = [[2 * args.gemm_n ** 3 / 1e9 / s for s in t] for t in times.get('sgemm', [])]
    sgemm_gflops = statistics.median(max(t) for t in sgemm) if sgemm else None
    result = {'gflop_per_step': round(flops / 1e9, 1),
              'sgemm_gflop_per_s': sgemm_gflops and round(sgemm_gflops, 1),
              'sgemm_gflop_per_s_per_round': [round(max(t), 1) for t in sgemm]}
    for runner in times:
        if runner != 'sgemm':
            result[runner] = summarise(times[runner], flops, sgemm_gflops)
    for runner in times:
        if runner.startswith('project:') and 'project' in result:
            result[runner]['vs_project'] = round(result[runner]['step_s'] / result['project']['step_s'], 3)
    if 'project' in result and 'raw_tf' in result:
        result['project_vs_raw_tf'] = round(result['project']['step_s'] / result['raw_tf']['step_s'], 3)
    if 'project' in result and 'torch' in result:
        result['project_vs_torch'] = round(result['project']['step_s'] / result['torch']['step_s'], 3)
    result['load_average_1min_after_each_measurement'] = loads
    result['onednn'] = args.onednn if args.onednn is not None else 'TensorFlow default'
    result['settings'] = {k: v for k, v in vars(args).items() if k not in ('out', 'worker', 'data_dir', 'profile')}
    write(args.out, result)


def write_profile(args):
    """--profile: one traced measurement per runner, written next to --out as train_profile.json."""
    from results_file import write_results as write
    result = {runner: run_worker(args, runner, ['--profile']) for runner in args.runners.split(',')
              if runner.partition(':')[0] in PROFILERS}
    result['settings'] = {k: v for k, v in vars(args).items() if k not in ('out', 'worker', 'data_dir')}
    write(os.path.join(os.path.dirname(args.out), 'train_profile.json'), result)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--crop', type=int, default=320)
    parser.add_argument('--batch_size', type=int, default=1)
    parser.add_argument('--width', type=float, default=1.0, help='VGG channel multiplier (1.0 = VGG-16)')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds (median reported)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps at the start of each measurement')
    parser.add_argument('--steps', type=int, default=5, help='timed steps per measurement')
    parser.add_argument('--num_images', type=int, default=40, help='VOC-sized images in the project\'s records')
    parser.add_argument('--gemm_n', type=int, default=2048)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0 = all cores)')
    parser.add_argument('--runners', default=','.join(RUNNERS),
                        help='comma-separated, in the order run each round; variants: see run_worker')
    parser.add_argument('--onednn', choices=['0', '1'], default=None,
                        help='TF_ENABLE_ONEDNN_OPTS for the TensorFlow runners (default: unset)')
    parser.add_argument('--set', action='append', default=[], help='project config override, e.g. data.num_readers=1')
    parser.add_argument('--quick', action='store_true', help='1 round, 1 warm-up step, 2 timed steps')
    parser.add_argument('--profile', action='store_true', help='per-op times instead of the comparison')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'train.json'))
    parser.add_argument('--worker', choices=RUNNERS, help=argparse.SUPPRESS)
    parser.add_argument('--shape_chosen_grad', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--data_dir', help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == '__main__':
    main()
