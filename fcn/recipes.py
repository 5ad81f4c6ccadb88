"""The shipped recipes' facts, read from their headers, and the total step of a staged recipe.

A recipe (configs/*.yaml) states its facts once, in header lines at its top:

    # protocol: VOC, Caffe (sbd_train -> seg11valid)
    # reference: FCN-16s 65.0 mIoU
    # source: fcn.berkeleyvision.org README (Long, Shelhamer et al., PAMI 2016)
    # gpu_time: about 1 day on one K40c (Long et al., CVPR 2015)
    # caffe_stage: fcn16s

`table()` builds the one table of them (docs/recipes.md holds its output between markers;
tests/test_recipes.py checks the two agree): `python -m fcn.recipes` prints it.

`caffe_stage` names the fcn.berkeleyvision.org solver the recipe's stage is measured against:
the total step, lr on the per-pixel-mean loss x images a step x steps x mean schedule factor /
(1 - momentum), Caffe's lr on the mean loss being base_lr x 187,500 (a 500x375 image) at batch 1
and momentum 0.99 (`total_step`, `caffe_total_step`).
"""
import collections
import glob
import os
import re
import sys

HEADER_KEYS = ('protocol', 'reference', 'source', 'gpu_time', 'caffe_stage')
TABLE_COLUMNS = (('recipe', 'recipe'), ('protocol', 'protocol'), ('reference', 'reference'),
                 ('source', 'source'), ('gpu_time', 'expected GPU time'))
_LINE = re.compile(r'^# (%s): (.+)$' % '|'.join(HEADER_KEYS))

CAFFE_PIXELS = 187500  # a 500 x 375 VOC image: Caffe's summed loss has this many per-pixel terms
CAFFE_MOMENTUM = 0.99
CaffeSolver = collections.namedtuple('CaffeSolver', 'base_lr iterations')
CAFFE_SOLVERS = {  # fcn.berkeleyvision.org voc-fcn*/solver.prototxt: batch 1, fixed lr on the summed loss
    'fcn32s': CaffeSolver(1e-10, 100000),
    'fcn16s': CaffeSolver(1e-12, 100000),
    'fcn8s': CaffeSolver(1e-14, 100000),
    'fcn8s-atonce': CaffeSolver(1e-10, 300000),
}
TOTAL_STEP_BOUND = 2.0  # a staged recipe's total step is within this factor of its Caffe stage's


class RecipeError(ValueError):
    """A recipe header is incomplete or names an unknown Caffe stage."""


def header(path):
    """{key: value} of the header lines of the config at `path` (the leading comment block)."""
    facts = {}
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                break
            match = _LINE.match(line.rstrip('\n'))
            if match:
                facts[match.group(1)] = match.group(2).strip()
    if facts:
        missing = [k for k in HEADER_KEYS[:4] if k not in facts]
        if missing:
            raise RecipeError('%s: recipe header lacks %s' % (path, ', '.join('# %s:' % k for k in missing)))
        if facts.get('caffe_stage', 'none') not in tuple(CAFFE_SOLVERS) + ('none',):
            raise RecipeError('%s: caffe_stage must be one of %s or none, got %r'
                              % (path, ', '.join(CAFFE_SOLVERS), facts['caffe_stage']))
    return facts


def recipes(config_dir):
    """[(file name, header)] of the configs in `config_dir` that are recipes (have a header), by
    protocol, then stage (FCN-32s, 16s, 8s, at-once), then name."""
    found = [(os.path.basename(p), header(p)) for p in glob.glob(os.path.join(config_dir, '*.yaml'))]
    stages = list(CAFFE_SOLVERS) + ['none']
    return sorted(((name, facts) for name, facts in found if facts),
                  key=lambda item: (item[1]['protocol'], stages.index(item[1].get('caffe_stage', 'none')), item[0]))


def table(config_dir):
    """The markdown table of the recipes in `config_dir`."""
    lines = ['| %s |' % ' | '.join(title for _, title in TABLE_COLUMNS),
             '|' + '---|' * len(TABLE_COLUMNS)]
    for name, facts in recipes(config_dir):
        cells = ['`configs/%s`' % name] + [facts[key] for key, _ in TABLE_COLUMNS[1:]]
        lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines) + '\n'


def mean_schedule_factor(name, lr_power=0.9, end_factor=0.0):
    """The learning rate averaged over training, as a fraction of its start (no warmup):
    fixed 1; poly (1 - t)^p from 1 to `end_factor`: e + (1 - e) / (1 + p); cosine: (1 + e) / 2."""
    if name == 'fixed':
        return 1.0
    if name == 'poly':
        return end_factor + (1.0 - end_factor) / (1.0 + lr_power)
    if name == 'cosine':
        return (1.0 + end_factor) / 2.0
    raise RecipeError('total step: train.lr_schedule %r is not computed (fixed, poly, cosine are)' % name)


def total_step(learning_rate, batch_size, steps, momentum, schedule_factor, normalization, pixels=CAFFE_PIXELS):
    """lr on the per-pixel-mean loss x images a step x steps x mean schedule factor / (1 - momentum).

    Under loss.normalization `sum` the loss of an image is `pixels` times its mean, so its lr
    counts `pixels` times."""
    mean_lr = learning_rate * (pixels if normalization == 'sum' else 1.0)
    return mean_lr * batch_size * steps * schedule_factor / (1.0 - momentum)


def caffe_total_step(stage):
    """The total step of fcn.berkeleyvision.org's solver for `stage` (CAFFE_SOLVERS)."""
    solver = CAFFE_SOLVERS[stage]
    return total_step(solver.base_lr, 1, solver.iterations, CAFFE_MOMENTUM, 1.0, 'sum')


def config_total_step(cfg):
    """The total step of a resolved config (fcn.config.load_config)."""
    t = cfg.train
    if t.optimizer not in ('momentum', 'sgd'):
        raise RecipeError('total step: train.optimizer %r is not SGD with momentum' % t.optimizer)
    if t.warmup_steps:
        raise RecipeError('total step: train.warmup_steps %r is not computed' % t.warmup_steps)
    momentum = t.momentum if t.optimizer == 'momentum' else 0.0
    factor = mean_schedule_factor(t.lr_schedule, t.lr_power, t.end_learning_rate / t.learning_rate)
    return total_step(t.learning_rate, t.batch_size * t.accumulate_steps, t.steps, momentum, factor,
                      cfg.loss.normalization)


UPSAMPLING_CLASSES = (21, 81, 150)  # VOC, COCO-81, ADE20K
UPSAMPLING_SIZE = 512  # input side of the forward-pass count


def upsampling_cost(name, mode, num_classes, size=UPSAMPLING_SIZE):
    """(parameters, forward FLOP) of net `name`'s upsampling layers under model.upsample `mode`,
    for a `size` x `size` input: a transposed conv costs 2 x input positions x k x k taps x the
    channel pairs it sums (C x C for learnable, C for per_class and fixed)."""
    from fcn.nets import fcn, upsample  # TensorFlow: only for this
    params = flops = 0
    for _, factor, stride in fcn.upsampling_layers(name):
        k = upsample.bilinear_kernel_size(factor)
        pairs = num_classes * num_classes if mode == 'learnable' else num_classes
        positions = (size // stride) ** 2
        flops += 2 * positions * k * k * pairs
        params += 0 if mode == 'fixed' else k * k * pairs
    return params, flops


def upsampling_table(names=('fcn32s', 'fcn8s'), classes=UPSAMPLING_CLASSES):
    """The markdown table of upsampling parameters and forward GFLOP per mode and class count."""
    from fcn.config import UPSAMPLE_MODES
    lines = ['| model.upsample | net | %s |' % ' | '.join('%d classes: parameters, GFLOP' % c for c in classes),
             '|---|---|' + '---|' * len(classes)]
    for mode in UPSAMPLE_MODES:
        for name in names:
            cells = []
            for c in classes:
                params, flops = upsampling_cost(name, mode, c)
                cells.append('%s, %.2f' % ('{:,}'.format(params), flops / 1e9))
            lines.append('| %s | %s | %s |' % (mode, name, ' | '.join(cells)))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config_dir = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
    sys.stdout.write(table(config_dir) + '\n' + upsampling_table())


if __name__ == '__main__':
    main()
