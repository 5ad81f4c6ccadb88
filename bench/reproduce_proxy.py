"""Evidence by proxy for the staged FCN recipes: FCN-32s -> FCN-16s -> FCN-8s and at-once FCN-8s,
each family's solver scaled to the synthetic shapes set (there is no VOC here).

  python bench/reproduce_proxy.py --family caffe     # configs/voc-caffe-*.yaml, Caffe's solvers
  python bench/reproduce_proxy.py --family deeplab   # configs/voc.yaml, voc-fcn16s/8s/8s-atonce.yaml
      [--out bench/results/reproduce_proxy_<family>.json --workdir /tmp/fcn-reproduce-proxy-<family>]

Each stage is its recipe, loaded as shipped, with the same optimizer, momentum, loss
normalisation, batch, schedule, bias multiplier, weight decay, upsampling and skip scaling, the
staged initialisation (16s from the 32s run, 8s from the 16s run, every shared variable) and the
recipes' learning rates relative to their FCN-32s stage (read from the recipes; Caffe: 1, 1/100,
1/10,000, at-once 1 for 3x the steps; DeepLab-style: 1, 1/4, 1/400, at-once 1 for 3x). Scaled:
the synthetic set (build_tfrecords.py --dataset synthetic; 5 classes, shapes of radius 10-19 px in
96 px images, finer than stride 32), width --width, crop = image size, no dropout (as
configs/demo.yaml's tiny model), --lr32 for FCN-32s, --steps32 steps for FCN-32s and the
recipes' step proportions for the others. --steps32 is set so that FCN-32s reaches its plateau
first, as Caffe's 100,000 iterations do (the fcn32s-continued control shows whether it has).

No VGG-16 here: its stand-in is a seed trained first, as configs/demo.yaml trains (Adam, batch
8, --seed_steps), an FCN-32s whose trunk (vgg_16/*) the FCN-32s and at-once stages start from
exactly as the recipes start from vgg_16.ckpt (init.exclude_scopes [vgg_16/fc8, fcn]).

Controls: `fcn32s-continued` is FCN-32s trained on with FCN-16s's solver, `fcn16s-continued`
FCN-16s with FCN-8s's, from the same start: a stage's gain over its control is what its new skip
adds, not the extra steps. Per stage it writes the val mIoU and how far the skip score layers
moved from their zero start (RMS and max |w| of score_pool4 / score_pool3 weights), to --out
(JSON) and stdout (a table). --set STAGE:KEY=VALUE and --lr_factor STAGE=X are experiments off
the recipes, recorded in the results.
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

def _family(fcn32s, fcn16s, fcn8s, atonce):
    """(stage, recipe, the stage it starts from, the net when not the recipe's) in run order."""
    return (
        ('fcn32s', fcn32s, None, None),
        ('fcn32s-continued', fcn16s, 'fcn32s', 'fcn32s'),
        ('fcn16s', fcn16s, 'fcn32s', None),
        ('fcn16s-continued', fcn8s, 'fcn16s', 'fcn16s'),
        ('fcn8s', fcn8s, 'fcn16s', None),
        ('fcn8s-atonce', atonce, None, None),
    )


FAMILIES = {  # --family: Caffe's solvers literally, or the DeepLab-style voc.yaml family
    'caffe': _family('voc-caffe-fcn32s.yaml', 'voc-caffe-fcn16s.yaml', 'voc-caffe-fcn8s.yaml',
                     'voc-caffe-fcn8s-atonce.yaml'),
    'deeplab': _family('voc.yaml', 'voc-fcn16s.yaml', 'voc-fcn8s.yaml', 'voc-fcn8s-atonce.yaml'),
}
# The proxy's FCN-32s stage: batch-1 steps at 1e-7 on the summed loss (about 9e-4 on the mean of
# a 96 x 96 image; 1e-6 diverged) and 12,000 of them to its plateau (at 4,000 it was 8 points
# below it); batch-8 steps at 0.01 on the mean loss, 1,500 of them (its plateau already).
FAMILY_SCALE = {'caffe': dict(steps32=12000, lr32=1e-7), 'deeplab': dict(steps32=1500, lr32=0.01)}
# A control (`*-continued`) is the previous stage's net trained on with the next stage's solver
# (same learning rate, steps and start): the next stage's gain over it is what the new skip
# adds, the control's own gain what the extra steps add.
CONTROL_OF = {'fcn16s': 'fcn32s-continued', 'fcn8s': 'fcn16s-continued'}
SKIPS = ('score_pool4', 'score_pool3')


def build_records(out, size, num_train, num_val):
    if os.path.exists(os.path.join(out, 'summary.json')):
        return out
    subprocess.run([sys.executable, os.path.join(REPO, 'build_tfrecords.py'), '--dataset', 'synthetic',
                    '--out', out, '--size', str(size), '--num_train', str(num_train), '--num_val', str(num_val),
                    '--no_progress'], check=True)
    return out


def stage_of(recipe, stages):
    """The recipe's own stage (not a control's)."""
    return next(stage for stage, name, _, net in stages if name == recipe and net is None)


def lr_factor(text):
    stage, _, factor = text.partition('=')
    return stage, float(factor)


def stage_override(text):
    """STAGE:section.key=value, an experiment off one stage's recipe."""
    stage, _, override = text.partition(':')
    if '=' not in override:
        raise argparse.ArgumentTypeError('expected STAGE:section.key=value, got %r' % text)
    return stage, override


def stage_config(recipe, args, records, run_dir, init, net=None, stages=FAMILIES['caffe']):
    """The recipe, loaded as shipped, scaled to the proxy (its net replaced by `net` for a control)."""
    from fcn.config import load_config
    shipped = load_config(os.path.join(REPO, 'configs', recipe))
    base32 = load_config(os.path.join(REPO, 'configs', stages[0][1]))
    lr = args.lr32 * shipped.train.learning_rate / base32.train.learning_rate
    if net is None:  # an experiment off the recipe (reported); a control keeps the recipe's rate
        lr *= dict(args.lr_factor).get(stage_of(recipe, stages), 1.0)
    steps = int(round(args.steps32 * shipped.train.steps / base32.train.steps))
    return load_config(os.path.join(REPO, 'configs', recipe), [
        'data.dir=%s' % records, 'data.train_split=train', 'data.eval_split=val', 'data.num_classes=null',
        'model.width=%s' % args.width, 'model.dropout_keep_prob=1.0', 'train.crop_size=%d' % args.size,
        'train.steps=%d' % steps, 'train.learning_rate=%g' % lr, 'train.run_dir=%s' % run_dir,
        'train.save_every_steps=100000', 'train.summary_every_steps=100000', 'train.log_every_steps=500',
        'train.seed=%d' % args.seed, 'init.checkpoint=%s' % init] + (['model.name=%s' % net] if net else [])
        + [override for stage, override in args.set if net is None and stage == stage_of(recipe, stages)])


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


def val_images(records):
    """The val split's images (RGB float32), decoded from the records."""
    import cv2
    from fcn.compat import tf, tf1
    from fcn.data import records as record_files
    images = []
    for path in record_files.shard_paths(records, 'val'):
        for raw in tf1.io.tf_record_iterator(path):
            encoded = tf.train.Example.FromString(raw).features.feature[record_files.IMAGE_ENCODED].bytes_list.value[0]
            bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
            images.append(bgr[..., ::-1].astype(np.float32))
    return images


def feature_energy(run_dir, records, width, layers=('pool3', 'pool4', 'fc7')):
    """{layer: mean over val positions of the sum over channels of x^2} of the trunk in `run_dir`.

    A zero-initialised 1x1 score layer on features x moves its scores by about lr x |x|^2 x the
    score gradient per step, so these set how far each skip's score layer moves at a given rate
    (and what skip_scaling's 0.01 / 0.0001 leave of it)."""
    from fcn import checkpoints
    from fcn.compat import tf, tf1
    from fcn.nets import fcn
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, None, None, 3])
        _, end_points = fcn.vgg_scores(inputs, 1, width=width, dropout_keep_prob=1.0)
        init_fn = checkpoints.make_init_fn(run_dir, ['vgg_16/fc8'], model_name='fcn32s')
        sums = dict.fromkeys(layers, 0.0)
        positions = dict.fromkeys(layers, 0)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            init_fn(None, sess)
            for image in val_images(records):
                out = sess.run({layer: end_points[layer] for layer in layers}, {inputs: image[None]})
                for layer, value in out.items():
                    sums[layer] += float(np.sum(value.astype(np.float64) ** 2))
                    positions[layer] += int(np.prod(value.shape[:-1]))
    return {layer: sums[layer] / positions[layer] for layer in layers}


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


def with_feature_energy(result, run_dir, records, args):
    """`result` with the feature energy of its run's trunk (what the next stage starts from)."""
    result['feature_energy'] = feature_energy(run_dir, records, args.width)
    print('%s trunk, energy per position (sum of x^2 over channels): %s' % (result['stage'], ', '.join(
        '%s %.4g' % item for item in result['feature_energy'].items())), flush=True)
    return result


def unknown_stages(args):
    """Error lines for stage names in --stages, --set and --lr_factor that the family lacks
    (a typo would otherwise run the recipe unchanged while the results say an experiment ran)."""
    stages = FAMILIES[args.family]
    runs = [stage for stage, _, _, _ in stages]
    recipes_own = [stage for stage, _, _, net in stages if net is None]
    errors = ['--stages: %r is not a stage of --family %s (one of %s)' % (name, args.family, ', '.join(runs))
              for name in args.stages.split(',') if name not in runs]
    for flag, pairs in (('--set', args.set), ('--lr_factor', args.lr_factor)):
        errors += ['%s: %r is not a recipe stage of --family %s (one of %s)' % (flag, name, args.family,
                   ', '.join(recipes_own)) for name, _ in pairs if name not in recipes_own]
    return errors


def reused_seed(args, records):
    """The result line of an earlier seed run (`--seed_dir`), evaluated again."""
    from fcn.config import load_config
    cfg = load_config(os.path.join(REPO, 'configs', 'demo.yaml'), [
        'data.dir=%s' % records, 'model.name=fcn32s', 'model.width=%s' % args.width, 'model.upsample=fixed',
        'train.run_dir=%s' % args.seed_dir])
    return {'stage': 'seed', 'recipe': 'demo.yaml', 'steps': args.seed_steps, 'learning_rate': cfg.train.learning_rate,
            'init': None, 'reused': True, 'miou': miou(cfg), 'skips_moved': {}}


def experiments(stage, net, args):
    """What --set / --lr_factor changed in this stage's recipe (a control takes neither)."""
    if net is not None:
        return []
    return ([override for name, override in args.set if name == stage]
            + ['learning rate x %g' % factor for name, factor in args.lr_factor if name == stage])


def run_stage(stage, recipe, init_dir, args, records, net, stages):
    from fcn import train_lib
    run_dir = os.path.join(args.workdir, stage)
    cfg = stage_config(recipe, args, records, run_dir, init_dir, net, stages)
    start = time.time()
    train_lib.train(cfg, log=lambda m: print('  [%s] %s' % (stage, m), flush=True))
    seconds = time.time() - start
    result = {'stage': stage, 'recipe': recipe, 'net': cfg.model.name, 'steps': cfg.train.steps,
              'learning_rate': cfg.train.learning_rate, 'init': os.path.basename(init_dir),
              'train_seconds': round(seconds, 1), 'miou': miou(cfg), 'skips_moved': skip_movement(run_dir),
              'experiment': experiments(stage, net, args)}
    print('%s: mIoU %.2f%% after %d steps (%.0f s); skips %s' % (
        stage, 100 * result['miou'], cfg.train.steps, seconds, result['skips_moved']), flush=True)
    return result


def gains(results, stages):
    """{stage: (gain over the stage it starts from, gain over its control)} in mIoU points."""
    by_stage = {r['stage']: r for r in results}
    out = {}
    for stage, _, previous, _ in stages:
        if stage in by_stage and previous in by_stage:
            control = by_stage.get(CONTROL_OF.get(stage))
            out[stage] = (100 * (by_stage[stage]['miou'] - by_stage[previous]['miou']),
                          100 * (by_stage[stage]['miou'] - control['miou']) if control else None)
    return out


def table(results, stages):
    lines = ['| stage | recipe | net | steps | learning rate | val mIoU | gain over its start | over its control '
             '| score_pool4 RMS / max | score_pool3 RMS / max |', '|---|---|---|---|---|---|---|---|---|---|']
    stage_gains = gains(results, stages)
    for r in results:
        gain, over_control = stage_gains.get(r['stage'], (None, None))
        experiment = ' (experiment: %s)' % ', '.join(r['experiment']) if r.get('experiment') else ''
        cells = [r['stage'] + experiment, '`%s`' % r['recipe'], r.get('net', ''), str(r['steps']), '%g' % r['learning_rate'],
                 '%.1f%%' % (100 * r['miou']), '' if gain is None else '%+.1f' % gain,
                 '' if over_control is None else '%+.1f' % over_control]
        for skip in SKIPS:
            moved = r['skips_moved'].get(skip)
            cells.append('%.2g / %.2g' % tuple(moved) if moved else '')
        lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', help='default: bench/results/reproduce_proxy_<family>.json')
    parser.add_argument('--workdir', help='default: /tmp/fcn-reproduce-proxy-<family>')
    parser.add_argument('--width', type=float, default=0.125)
    parser.add_argument('--size', type=int, default=96, help='synthetic image side = training crop')
    parser.add_argument('--num_train', type=int, default=200)
    parser.add_argument('--num_val', type=int, default=40)
    parser.add_argument('--steps32', type=int, help='FCN-32s steps (default: the family\'s, FAMILY_SCALE)')
    parser.add_argument('--lr32', type=float, help="FCN-32s learning rate (default: the family's, FAMILY_SCALE)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--seed_steps', type=int, default=1500, help='steps of the VGG-16 stand-in (batch 8, Adam)')
    parser.add_argument('--family', choices=sorted(FAMILIES), default='caffe',
                        help='caffe: configs/voc-caffe-*.yaml; deeplab: configs/voc.yaml, voc-fcn16s/8s/8s-atonce.yaml')
    parser.add_argument('--stages', default=','.join(s for s, _, _, _ in FAMILIES['caffe']))
    parser.add_argument('--set', type=stage_override, action='append', default=[], metavar='STAGE:KEY=VALUE',
                        help="an experiment off the recipes: one stage's config key (e.g. fcn8s-atonce:model.skip_scaling=false)")
    parser.add_argument('--seed_dir', help='reuse this seed run (a --workdir/seed of an earlier run on the same records)')
    parser.add_argument('--lr_factor', type=lr_factor, action='append', default=[], metavar='STAGE=X',
                        help="an experiment off the recipes: that stage's learning rate times X (e.g. fcn8s=100)")
    parser.add_argument('--table', metavar='RESULTS_JSON', help='only print the table of an earlier run')
    args = parser.parse_args()
    if args.table:
        if not os.path.isfile(args.table):
            parser.error('--table: no results file %s' % args.table)
        with open(args.table) as f:
            report = json.load(f)
        print(table(report['stages'], FAMILIES[report['args']['family']]))
        return
    errors = unknown_stages(args)
    if errors:
        parser.error('; '.join(errors))
    scale = FAMILY_SCALE[args.family]
    args.steps32 = args.steps32 or scale['steps32']
    args.lr32 = args.lr32 or scale['lr32']
    args.out = args.out or os.path.join(REPO, 'bench', 'results', 'reproduce_proxy_%s.json' % args.family)
    args.workdir = args.workdir or '/tmp/fcn-reproduce-proxy-%s' % args.family
    os.makedirs(args.workdir, exist_ok=True)
    records = build_records(os.path.join(args.workdir, 'records'), args.size, args.num_train, args.num_val)
    wanted = args.stages.split(',')
    start = time.time()
    seed_dir, seed = train_seed(args, records) if not args.seed_dir else (args.seed_dir, reused_seed(args, records))
    results = [with_feature_energy(seed, seed_dir, records, args)]
    stages = FAMILIES[args.family]
    for stage, recipe, previous, net in stages:
        if stage in wanted:
            init = os.path.join(args.workdir, previous) if previous else seed_dir
            result = run_stage(stage, recipe, init, args, records, net, stages)
            results.append(with_feature_energy(result, os.path.join(args.workdir, stage), records, args))
    recorded = dict(vars(args), out=os.path.relpath(args.out, REPO))  # no path of this machine in the results
    report = {'args': recorded, 'seconds': round(time.time() - start, 1), 'stages': results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(table(results, stages))
    print('%.0f s; written to %s' % (report['seconds'], recorded['out']))


if __name__ == '__main__':
    main()
