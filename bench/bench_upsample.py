"""Training-step time of each model.upsample choice (learnable, per_class, fixed) at 150 classes.

  python bench/bench_upsample.py [--classes 150 --size 128 --factor 32 --steps 3 --warmup 1 --rounds 2]

What is timed is the upsampling's share of an FCN-32s training step: stride-32 scores
[1, size/32, size/32, classes] (a trainable variable standing in for fc8's output, so the
gradient to the scores is computed as in the net) -> the 32x upsampling of the mode -> softmax
cross-entropy on random labels -> one momentum SGD update (of the scores and, for learnable and
per_class, the kernel). The modes run in turn, --rounds times (so load from other jobs hits each),
each --warmup + --steps steps; medians of the step times are reported with the analytical forward
GFLOP and parameter count (fcn.recipes.upsampling_cost) and the machine.
Writes bench/results/upsample.json (or --out) and prints it.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

MODES = ('learnable', 'per_class', 'fixed')


def step_times(mode, classes, size, factor, steps, warmup):
    """Seconds of each of `steps` timed training steps of the upsampling alone."""
    from fcn.compat import tf, tf1
    from fcn.nets import upsample
    rng = np.random.RandomState(0)
    coarse = size // factor
    with tf.Graph().as_default():
        scores = tf1.get_variable('scores', initializer=rng.standard_normal((1, coarse, coarse, classes)).astype(np.float32))
        labels = tf.constant(rng.randint(0, classes, (1, size, size)).astype(np.int32))
        logits = upsample.upsample(scores, factor, [1, size, size, classes], mode=mode, scope='upscore')
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = tf1.train.MomentumOptimizer(1e-4, 0.9).minimize(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            times = []
            for i in range(warmup + steps):
                start = time.perf_counter()
                sess.run(train_op)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    return times


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--classes', type=int, default=150)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--factor', type=int, default=32)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'upsample.json'))
    args = parser.parse_args()
    from fcn.nets import upsample
    from results_file import write_results
    times = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            times[mode] += step_times(mode, args.classes, args.size, args.factor, args.steps, args.warmup)
    k = upsample.bilinear_kernel_size(args.factor)
    positions = (args.size // args.factor) ** 2
    modes = {}
    for mode in MODES:
        pairs = args.classes ** 2 if mode == 'learnable' else args.classes
        modes[mode] = {'median_step_s': round(statistics.median(times[mode]), 4),
                       'step_s': [round(t, 4) for t in times[mode]],
                       'parameters': 0 if mode == 'fixed' else k * k * pairs,
                       'forward_gflop': round(2 * positions * k * k * pairs / 1e9, 3)}
    write_results(args.out, {'classes': args.classes, 'size': args.size, 'factor': args.factor,
                             'cpu': cpu_name(), 'modes': modes})


if __name__ == '__main__':
    main()
