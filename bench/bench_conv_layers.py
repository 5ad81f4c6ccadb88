"""Per-layer convolution kernels of the training step: TensorFlow against PyTorch, one layer at a time.

  python bench/bench_conv_layers.py [--crop 320 --width 1.0 --repeats 5]

`bench_train.py --profile` shows that TensorFlow's backward convolution kernels are where its
step loses to PyTorch's. This benchmark says which layers: for every convolution of VGG-16
FCN-32s at the training crop (batch 1, stride 1, SAME), it times on its own

  forward       TF `Conv2D`                   torch `conv2d` (oneDNN)
  grad_filter   TF `Conv2DBackpropFilter`     torch `convolution_backward` (weight only)
  grad_input    TF `Conv2DBackpropInput`      torch `convolution_backward` (input only)

and two other ways TensorFlow can compute the same gradients from its own faster kernels
(the numbers say whether a custom gradient would pay):

  grad_input_as_conv     `Conv2D` of the output gradient with the flipped, transposed kernel
  grad_filter_as_matmul  `extract_patches` of the input, then one `MatMul` with the output gradient

Each op is run `--repeats` times after 2 untimed runs, median kept; TF in a session with
inter_op 1 and intra_op = all cores (one op at a time, as the comparison needs), torch with
all cores. TF and torch run in separate child processes, alternately, `--rounds` times.
Writes bench/results/conv_layers.json through bench/results_file.py.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'bench'))

from bench_train import layer_shapes, time_calls  # noqa: E402

TF_OPS = ('forward', 'grad_filter', 'grad_input', 'grad_input_as_conv', 'grad_filter_as_matmul')
TORCH_OPS = ('forward', 'grad_filter', 'grad_input')


def median_seconds(fn, repeats):
    """Median seconds of `repeats` calls of fn after 2 untimed ones."""
    return statistics.median(time_calls(fn, 2, repeats))


def tf_layer_ops(tf, shape):
    """{name: op} computing each way of TF_OPS for one layer, on random variables."""
    import numpy as np
    k, c_in, c_out, h, w = shape
    rng = np.random.default_rng(0)
    inputs = tf.Variable(rng.random((1, h, w, c_in), dtype=np.float32))
    kernel = tf.Variable(rng.random((k, k, c_in, c_out), dtype=np.float32))
    grad_out = tf.Variable(rng.random((1, h, w, c_out), dtype=np.float32))
    patches = tf.image.extract_patches(inputs, [1, k, k, 1], [1, 1, 1, 1], [1, 1, 1, 1], 'SAME')
    results = {
        'forward': tf.nn.conv2d(inputs, kernel, 1, 'SAME'),
        'grad_filter': tf.raw_ops.Conv2DBackpropFilter(
            input=inputs, filter_sizes=[k, k, c_in, c_out], out_backprop=grad_out,
            strides=[1, 1, 1, 1], padding='SAME'),
        'grad_input': tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[1, h, w, c_in], filter=kernel, out_backprop=grad_out,
            strides=[1, 1, 1, 1], padding='SAME'),
        'grad_input_as_conv': tf.nn.conv2d(
            grad_out, tf.reverse(tf.transpose(kernel, [0, 1, 3, 2]), [0, 1]), 1, 'SAME'),
        'grad_filter_as_matmul': tf.reshape(tf.matmul(
            tf.reshape(patches, [h * w, k * k * c_in]), tf.reshape(grad_out, [h * w, c_out]),
            transpose_a=True), [k, k, c_in, c_out]),
    }
    return {name: tf.reduce_sum(tensor).op for name, tensor in results.items()}


def run_tf(args):
    import tensorflow as tf
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    config = tf1.ConfigProto(inter_op_parallelism_threads=1, intra_op_parallelism_threads=os.cpu_count())
    rows = []
    for shape in layer_shapes(args.crop, args.width):
        with tf.Graph().as_default():
            ops = tf_layer_ops(tf, shape)
            with tf1.Session(config=config) as sess:
                sess.run(tf1.global_variables_initializer())
                rows.append({name: median_seconds(lambda: sess.run(op), args.repeats) for name, op in ops.items()})
    return rows


def run_torch(args):
    import torch
    torch.set_num_threads(os.cpu_count())
    aten = torch.ops.aten
    rows = []
    for k, c_in, c_out, h, w in layer_shapes(args.crop, args.width):
        inputs, kernel = torch.rand(1, c_in, h, w), torch.rand(c_out, c_in, k, k)
        grad_out, pad = torch.rand(1, c_out, h, w), k // 2

        def backward(mask):
            return lambda: aten.convolution_backward(grad_out, inputs, kernel, None, [1, 1], [pad, pad], [1, 1],
                                                     False, [0, 0], 1, mask)
        calls = {'forward': lambda: torch.nn.functional.conv2d(inputs, kernel, padding=pad),
                 'grad_filter': backward([False, True, False]), 'grad_input': backward([True, False, False])}
        with torch.no_grad():
            rows.append({name: median_seconds(fn, args.repeats) for name, fn in calls.items()})
    return rows


def run_child(args, runtime):
    command = [sys.executable, os.path.abspath(__file__), '--worker', runtime, '--crop', str(args.crop),
               '--width', str(args.width), '--repeats', str(args.repeats)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def summarise(args, rounds):
    """Per layer and op, the median over rounds; totals per op; each layer's shape."""
    layers = []
    for index, shape in enumerate(layer_shapes(args.crop, args.width)):
        row = {'layer': index, 'kernel': shape[0], 'c_in': shape[1], 'c_out': shape[2], 'size': shape[3]}
        for runtime, names in (('tf', TF_OPS), ('torch', TORCH_OPS)):
            for name in names:
                row['%s_%s_s' % (runtime, name)] = round(statistics.median(
                    r[runtime][index][name] for r in rounds), 4)
        layers.append(row)
    totals = {}
    for key in (k for k in layers[0] if k.endswith('_s')):
        counted = layers[1:] if 'grad_input' in key else layers
        totals[key] = round(sum(row[key] for row in counted), 3)
    return {'layers': layers, 'totals_s': totals,
            'note': 'grad_input totals leave out layer 0 (the image needs no gradient)'}


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps((run_tf if args.worker == 'tf' else run_torch)(args)))
        return
    from results_file import write_results
    rounds = [{runtime: run_child(args, runtime) for runtime in ('tf', 'torch')} for _ in range(args.rounds)]
    result = summarise(args, rounds)
    result['settings'] = {k: v for k, v in vars(args).items() if k not in ('out', 'worker')}
    write_results(args.out, result)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--crop', type=int, default=320)
    parser.add_argument('--width', type=float, default=1.0)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'conv_layers.json'))
    parser.add_argument('--worker', choices=['tf', 'torch'], help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == '__main__':
    main()
