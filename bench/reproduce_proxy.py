"""Evidence by proxy for the staged FCN recipes: FCN-32s -> FCN-16s -> FCN-8s and at-once FCN-8s,
Caffe's solver scaled to the synthetic shapes set (there is no VOC here).

  python bench/reproduce_proxy.py [--out bench/results/reproduce_proxy.json --workdir /tmp/proxy]

Each stage is its configs/voc-caffe-*.yaml recipe, loaded as shipped, with the same optimizer
(momentum SGD, momentum 0.99), loss normalisation (summed over pixels), batch 1 whole images
(crop = image, scale 1, no flip), biases at 2x lr, weight decay 5e-4, fixed bilinear upsampling,
the staged initialisation (16s from the 32s run, 8s from the 16s run, every shared variable) and
the recipes' learning rates relative to their FCN-32s stage (read from the recipes: 1, 1/100,
1/10,000; at-once 1 for 3x the FCN-32s steps). Scaled: the synthetic set (build_tfrecords.py
--dataset synthetic; 5 classes, shapes of radius 10-19 px in 96 px images, finer than stride 32),
width --width, crop = image size, --steps32 steps for FCN-32s (16s and 8s take the recipes'
steps in the same proportion: as many as FCN-32s), --lr32 for FCN-32s, no dropout (as
configs/demo.yaml's tiny model). No VGG-16 here: its stand-in is a seed trained first, as
configs/demo.yaml trains (Adam, batch 8, --seed_steps), an FCN-32s whose trunk (vgg_16/*) the
FCN-32s and at-once stages start from exactly as the recipes start from vgg_16.ckpt (fc8 and
the head excluded: init.exclude_scopes [vgg_16/fc8, fcn]).

Per stage it writes the val mIoU and how far the skip score layers moved from their zero start
(RMS and max |w| of score_pool4 / score_pool3 weights), to --out (JSON) and stdout (a table).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

STAGES = (  # (stage, recipe, the stage it starts from)
    ('fcn32s', 'voc-caffe-fcn32s.yaml', None),
    ('fcn16s', 'voc-caffe-fcn16s.yaml', 'fcn32s'),
    ('fcn8s', 'voc-caffe-fcn8s.yaml', 'fcn16s'),
    ('fcn8s-atonce', 'voc-caffe-fcn8s-atonce.yaml', None),
)
SKIPS = ('score_pool4', 'score_pool3')


def build_records(out, size, num_train, num_val):
    if os.path.exists(os.path.join(out, 'summary.json')):
        return out
    subprocess.run([sys.executable, os.path.join(REPO, 'build_tfrecords.py'), '--dataset', 'synthetic',
                    '--out', out, '--size', str(size), '--num_train', str(num_train), '--num_val', str(num_val),
                    '--no_progress'], check=True)
    return out


def stage_of(recipe):
    return next(stage for stage, name, _ in STAGES if name == recipe)


def lr_factor(text):
    stage, _, factor = text.partition('=')
    return stage, float(factor)


def stage_config(recipe, args, records, run_dir, init):
    """The recipe, loaded as shipped, scaled to the proxy."""
    from fcn.config import load_config
    shipped = load_config(os.path.join(REPO, 'configs', recipe))
    base32 = load_config(os.path.join(REPO, 'configs', STAGES[0][1]))
    lr = args.lr32 * shipped.train.learning_rate / base32.train.learning_rate
    lr *= dict(args.lr_factor).get(stage_of(recipe), 1.0)  # an experiment off the recipe (reported)
    steps = int(round(args.steps32 * shipped.train.steps / base32.train.steps))
    return load_config(os.path.join(REPO, 'configs', recipe), [
        'data.dir=%s' % records, 'data.train_split=train', 'data.eval_split=val', 'data.num_classes=null',
        'model.width=%s' % args.width, 'model.dropout_keep_prob=1.0', 'train.crop_size=%d' % args.size,
        'train.steps=%d' % steps, 'train.learning_rate=%g' % lr, 'train.run_dir=%s' % run_dir,
        'train.save_every_steps=100000', 'train.summary_every_steps=100000', 'train.log_every_steps=500',
        'train.seed=%d' % args.seed, 'init.checkpoint=%s' % init])


def miou(cfg):
    from fcn import eval_lib, metrics
    from fcn.compat import tf1
    from fcn.data.info import DatasetInfo
    checkpoint = tf1.train.latest_checkpoint(cfg.train.run_dir)
    num_classes = DatasetInfo.load(os.path.join(cfg.data.dir, 'summary.json')).num_classes
    confusion = 0
    for _, label, prediction in eval_lib.predictions_for_split(cfg, checkpoint):
        confusion = confusion + metrics.confusion_matrix(label, prediction, num_classes)
    return metrics.scores(confusion)['miou']


def skip_movement(run_dir):
    """{skip: (RMS, max |w|)} of the skip score layers' weights (they start at zero)."""
    from fcn.compat import tf, tf1
    reader = tf.train.load_checkpoint(tf1.train.latest_checkpoint(run_dir))
    names = reader.get_variable_to_shape_map()
    moved = {}
    for skip in SKIPS:
        name = 'fcn/%s/weights' % skip
        if name in names:
            w = reader.get_tensor(name)
            moved[skip] = (float(np.sqrt(np.mean(w ** 2))), float(np.abs(w).max()))
    return moved


def train_seed(args, records):
    """The VGG-16 stand-in: configs/demo.yaml's solver on FCN-32s at --width."""
    from fcn import train_lib
    from fcn.config import load_config
    run_dir = os.path.join(args.workdir, 'seed')
    cfg = load_config(os.path.join(REPO, 'configs', 'demo.yaml'), [
        'data.dir=%s' % records, 'model.name=fcn32s', 'model.width=%s' % args.width, 'model.upsample=fixed',
        'train.crop_size=%d' % args.size, 'train.steps=%d' % args.seed_steps, 'train.run_dir=%s' % run_dir,
        'train.seed=%d' % args.seed, 'train.save_every_steps=100000', 'train.log_every_steps=500'])
    start = time.time()
    train_lib.train(cfg, log=lambda m: print('  [seed] %s' % m, flush=True))
    result = {'stage': 'seed', 'recipe': 'demo.yaml', 'steps': cfg.train.steps, 'learning_rate': cfg.train.learning_rate,
              'init': None, 'train_seconds': round(time.time() - start, 1), 'miou': miou(cfg), 'skips_moved': {}}
    print('seed: mIoU %.2f%% (%.0f s)' % (100 * result['miou'], result['train_seconds']), flush=True)
    return run_dir, result


def run_stage(stage, recipe, init_dir, args, records):
    from fcn import train_lib
    run_dir = os.path.join(args.workdir, stage)
    cfg = stage_config(recipe, args, records, run_dir, init_dir)
    start = time.time()
    train_lib.train(cfg, log=lambda m: print('  [%s] %s' % (stage, m), flush=True))
    seconds = time.time() - start
    result = {'stage': stage, 'recipe': recipe, 'steps': cfg.train.steps, 'learning_rate': cfg.train.learning_rate,
              'init': init_dir, 'train_seconds': round(seconds, 1), 'miou': miou(cfg),
              'skips_moved': skip_movement(run_dir)}
    print('%s: mIoU %.2f%% after %d steps (%.0f s); skips %s' % (
        stage, 100 * result['miou'], cfg.train.steps, seconds, result['skips_moved']), flush=True)
    return result


def table(results):
    lines = ['| stage | recipe | steps | lr (summed loss) | val mIoU | gain | score_pool4 RMS / max | score_pool3 RMS / max |',
             '|---|---|---|---|---|---|---|---|']
    previous = None
    for r in results:
        gain = '' if r['stage'] in ('seed', 'fcn32s', 'fcn8s-atonce') else '%+.1f' % (100 * (r['miou'] - previous))
        cells = [r['stage'], '`%s`' % r['recipe'], str(r['steps']), '%g' % r['learning_rate'],
                 '%.1f%%' % (100 * r['miou']), gain]
        for skip in SKIPS:
            moved = r['skips_moved'].get(skip)
            cells.append('%.2g / %.2g' % moved if moved else '')
        lines.append('| %s |' % ' | '.join(cells))
        previous = r['miou']
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.path.join(REPO, 'bench', 'results', 'reproduce_proxy.json'))
    parser.add_argument('--workdir', default='/tmp/fcn-reproduce-proxy')
    parser.add_argument('--width', type=float, default=0.125)
    parser.add_argument('--size', type=int, default=96, help='synthetic image side = training crop')
    parser.add_argument('--num_train', type=int, default=200)
    parser.add_argument('--num_val', type=int, default=40)
    parser.add_argument('--steps32', type=int, default=4000, help='FCN-32s steps (batch 1)')
    parser.add_argument('--lr32', type=float, default=1e-7, help='FCN-32s learning rate on the summed loss')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--seed_steps', type=int, default=1500, help='steps of the VGG-16 stand-in (batch 8, Adam)')
    parser.add_argument('--stages', default=','.join(s for s, _, _ in STAGES))
    parser.add_argument('--lr_factor', type=lr_factor, action='append', default=[], metavar='STAGE=X',
                        help="an experiment off the recipes: that stage's learning rate times X (e.g. fcn8s=100)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    records = build_records(os.path.join(args.workdir, 'records'), args.size, args.num_train, args.num_val)
    wanted = args.stages.split(',')
    start = time.time()
    seed_dir, seed = train_seed(args, records)
    results = [seed]
    for stage, recipe, previous in STAGES:
        if stage in wanted:
            init = os.path.join(args.workdir, previous) if previous else seed_dir
            results.append(run_stage(stage, recipe, init, args, records))
    recorded = dict(vars(args), out=os.path.relpath(args.out, REPO))  # no path of this machine in the results
    report = {'args': recorded, 'seconds': round(time.time() - start, 1), 'stages': results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(table(results))
    print('%.0f s; written to %s' % (report['seconds'], recorded['out']))


if __name__ == '__main__':
    main()
