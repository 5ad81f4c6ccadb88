"""What train.deterministic costs: training speed with it off and on, same settings.

  python bench/bench_deterministic.py [--steps 150 --repeats 3 --set KEY=VALUE ...]

Builds the demo's synthetic records (build_tfrecords.py --dataset synthetic, default
sizes) into a temporary folder, then trains configs/demo.yaml (plus any --set) from
scratch for --steps steps, alternately with train.deterministic false and true (seed 0
both), --repeats times each, so a change in machine load hits both. A run's speed is the
median of the trainer's own img/s log windows after the first (graph build, session start
and the first steps are left out), turned into s/step. Medians over the repeats are reported, every
run is kept. Writes bench/results/deterministic.json and prints it.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'bench'))

from fcn import train_lib  # noqa: E402
from fcn.config import load_config  # noqa: E402
from results_file import write_results  # noqa: E402

IMAGES_PER_SECOND = re.compile(r'  ([0-9.]+) img/s  ')
LOG_EVERY = 10


def build_records(out):
    result = subprocess.run([sys.executable, os.path.join(REPO, 'build_tfrecords.py'), '--dataset', 'synthetic',
                             '--out', out, '--no_progress'], cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit('building the synthetic records failed:\n' + result.stderr)
    return out


def seconds_per_step(data_dir, run_dir, deterministic, args):
    cfg = load_config(os.path.join(REPO, 'configs', 'demo.yaml'), [
        'data.dir=%s' % data_dir, 'train.run_dir=%s' % run_dir, 'train.steps=%d' % args.steps,
        'train.seed=0', 'train.deterministic=%s' % str(deterministic).lower(),
        'train.log_every_steps=%d' % LOG_EVERY, 'train.save_every_steps=%d' % (10 * args.steps),
        'train.summary_every_steps=%d' % (10 * args.steps)] + args.overrides)
    lines = []
    train_lib.train(cfg, log=lines.append)
    # img/s is logged with 3-4 significant digits, s/step with 2 decimals (5% at 0.2 s/step)
    images_per_second = [float(m.group(1)) for m in map(IMAGES_PER_SECOND.search, lines) if m]
    images_per_step = cfg.train.batch_size * cfg.train.accumulate_steps
    return images_per_step / statistics.median(images_per_second[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--steps', type=int, default=150)
    parser.add_argument('--repeats', type=int, default=3, help='runs per setting (median reported)')
    parser.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                        help='extra config override for both settings (repeatable)')
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'deterministic.json'))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix='bench-deterministic-')
    timings = {False: [], True: []}
    try:
        data_dir = build_records(os.path.join(root, 'records'))
        for repeat in range(args.repeats):
            for deterministic in (False, True):
                run_dir = os.path.join(root, 'run-%d-%s' % (repeat, deterministic))
                timings[deterministic].append(seconds_per_step(data_dir, run_dir, deterministic, args))
                print('deterministic=%s: %.3f s/step' % (deterministic, timings[deterministic][-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    default, deterministic = (round(statistics.median(timings[flag]), 4) for flag in (False, True))
    timings = {flag: [round(t, 4) for t in times] for flag, times in timings.items()}
    write_results(args.out, {
        'default_s_per_step': default, 'deterministic_s_per_step': deterministic,
        'slowdown': round(deterministic / default, 3),
        'default_s_per_step_all': timings[False], 'deterministic_s_per_step_all': timings[True],
        'settings': {'config': 'configs/demo.yaml', 'steps': args.steps, 'repeats': args.repeats,
                     'log_window_steps': LOG_EVERY, 'overrides': args.overrides}})


if __name__ == '__main__':
    main()
