"""FCN-32s / FCN-16s / FCN-8s (Long et al.) on the VGG-16 trunk.

    fcn32s: fc8 ------------------------------------------------> upscore32 (x32)
    fcn16s: fc8 -> upscore2 (x2) + score_pool4(pool4) = fuse_pool4 -> upscore16 (x16)
    fcn8s:  fuse_pool4 -> upscore_pool4 (x2) + score_pool3(pool3) = fuse_pool3 -> upscore8 (x8)

Variable scopes, chosen so each net starts from the previous one's run (Caffe's net surgery):
  vgg_16/*                    trunk + fc8 (num_classes): the names of vgg_16.ckpt, shared by all three
  fcn/upscore32               fcn32s's final upsampling (not part of 16s / 8s)
  fcn/upscore2, fcn/score_pool4            added by fcn16s, shared with fcn8s
  fcn/upscore16                            fcn16s's final upsampling (not part of 8s)
  fcn/upscore_pool4, fcn/score_pool3, fcn/upscore8   added by fcn8s
STAGES states what each net adds over the one it starts from and what it drops: a later stage
restores every variable the two nets share (trunk, fc8, the skips already trained, the 2x
upsampling into pool4) and only what it adds starts fresh (fcn.checkpoints.make_init_fn).
The upsampling variables exist only for model.upsample learnable / per_class (fixed has none).

Skip score layers start at zero (as in Long et al.), so at initialisation the skip adds
nothing and the net predicts from its coarser scores only (interpolated differently: see
tests/test_fcn_heads.py for what exactly carries over).
"""
import dataclasses

from fcn.compat import slim, tf, tf1
from fcn.config import MODEL_NAMES
from fcn.nets import upsample, vgg

STRIDE = 32
HEAD_SCOPE = 'fcn'
# skips fused by each net; its output stride is 32 / 2**skips
NUM_SKIPS = dict(zip(MODEL_NAMES, (0, 1, 2)))  # MODEL_NAMES: fcn32s, fcn16s, fcn8s (fcn.config owns the choice)
# skips in the order they are fused: (trunk end point, score layer, 2x upsampling into it, at-once scale)
SKIPS = (('pool4', 'score_pool4', 'upscore2', 0.01),
         ('pool3', 'score_pool3', 'upscore_pool4', 0.0001))


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a net adds over the net it starts from (`starts_from`'s run is its init.checkpoint):
    `adds` start fresh (score layers at zero, upsampling bilinear), `drops` are not part of it;
    every other variable is shared and restored."""
    starts_from: str
    adds: tuple
    drops: tuple


STAGES = {'fcn16s': Stage('fcn32s', adds=('fcn/score_pool4', 'fcn/upscore2', 'fcn/upscore16'),
                          drops=('fcn/upscore32',)),
          'fcn8s': Stage('fcn16s', adds=('fcn/score_pool3', 'fcn/upscore_pool4', 'fcn/upscore8'),
                         drops=('fcn/upscore16',))}
FIRST_HEAD = ('fcn/upscore32',)  # fcn32s's head scopes (its trunk and fc8 are vgg_16/*)


def head_scopes(name):
    """The fcn/* scopes of net `name`: fcn32s's, then each stage's adds less its drops."""
    if name not in STAGES:
        return FIRST_HEAD
    stage = STAGES[name]
    return tuple(s for s in head_scopes(stage.starts_from) if s not in stage.drops) + stage.adds


def checkpoint_net(variable_names):
    """The net whose head a checkpoint's variable names hold: the finest whose skip score
    layers are all there (fcn32s has none, so any checkpoint is at least fcn32s's: a VGG-16
    seed too, whose fc8 init.exclude_scopes leaves out)."""
    for name in reversed(MODEL_NAMES):
        skips = [s for s in head_scopes(name) if '/score_' in s]
        if all(any(v.startswith(s + '/') for v in variable_names) for s in skips):
            return name
    raise AssertionError('unreachable: fcn32s has no skip')  # pragma: no cover


def new_scopes(name, variable_names):
    """Head scopes of net `name` that a checkpoint with these variable names cannot give: what
    `name` adds over the checkpoint's net (STAGES, over one or more stages), to start fresh."""
    held = head_scopes(checkpoint_net(variable_names))
    return tuple(s for s in head_scopes(name) if s not in held)


def upsampling_layers(name):
    """[(scope, factor, stride of its input)] of net `name`'s upsampling layers, in graph order."""
    layers = [('fcn/' + up_scope, 2, STRIDE >> i) for i, (_, _, up_scope, _) in enumerate(SKIPS[:NUM_SKIPS[name]])]
    stride = STRIDE >> NUM_SKIPS[name]
    return layers + [('fcn/upscore%d' % stride, stride, stride)]


def padded_size(size, multiple=STRIDE):
    return (size + multiple - 1) // multiple * multiple


def pad_to_stride(images):
    """Pads mean-subtracted images at the bottom/right to a multiple of 32 with zeros (= the mean)."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    pad_h = padded_size(height) - height
    pad_w = padded_size(width) - width
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def _score_conv(inputs, num_classes, scope):
    """A 1x1 linear score layer, zero-initialised (weights; biases are zero by the arg scope)."""
    return slim.conv2d(inputs, num_classes, [1, 1], activation_fn=None,
                       weights_initializer=tf1.zeros_initializer(), scope=scope)


def vgg_scores(images, num_classes, is_training=False, width=1.0, dropout_keep_prob=0.5,
               weight_decay=0.0005):
    """fc8 class scores at stride 32 for RGB `images` [B, H, W, 3] in [0, 255], any H, W.

    The fully convolutional VGG-16 classifier: mean subtracted, padded to a multiple of 32
    (end point 'inputs'), trunk, fc8. Returns (scores [B, ceil(H/32), ceil(W/32), num_classes],
    end_points with pool3, pool4, fc7, fc8). Variables: vgg_16/* as in vgg_16.ckpt, fc8 with
    `num_classes` outputs (zero-initialised).
    """
    inputs = pad_to_stride(vgg.subtract_mean(images))
    with tf1.variable_scope(vgg.SCOPE, values=[inputs]):
        with slim.arg_scope(vgg.arg_scope(weight_decay)):
            fc7, end_points = vgg.vgg_16_trunk(inputs, width, is_training, dropout_keep_prob)
            scores = _score_conv(fc7, num_classes, 'fc8')
    end_points['inputs'] = inputs
    end_points['fc8'] = scores
    return scores, end_points


def _upsample(scores, factor, size_like, mode, scope):
    """`scores` upsampled by `factor` to the spatial size of `size_like`.

    Padding to 32 makes every skip exactly 2x its coarser input, and the aligned transposed
    conv puts output pixel i at input position (i - (f-1)/2) / f: with SAME convs and 2x2
    pools, pool4 pixel i is centred on image pixel 16i + 7.5 and fc8 pixel j on 32j + 15.5,
    so the 2x output lands on pool4's centres. Caffe's crop offsets (5, 9) come from its
    100-pixel input padding; here the crop is at offset 0, to `size_like`'s size.
    """
    shape = tf.shape(size_like)
    num_classes = scores.get_shape().as_list()[-1]
    return upsample.upsample(scores, factor, [shape[0], shape[1], shape[2], num_classes], mode=mode, scope=scope)


def _fuse_skips(scores, end_points, num_skips, upsample_mode, skip_scaling):
    """Adds the first `num_skips` skips (pool4, then pool3) to the stride-32 scores."""
    num_classes = scores.get_shape().as_list()[-1]
    for layer, score_scope, upsample_scope, scale in SKIPS[:num_skips]:
        skip = end_points[layer]
        if skip_scaling:  # the "at-once" recipe: keep the skip's scores small next to fc8's
            skip = skip * scale
        skip_scores = _score_conv(skip, num_classes, score_scope)
        upscored = _upsample(scores, 2, skip_scores, upsample_mode, upsample_scope)
        scores = tf.add(upscored, skip_scores, name='fuse_' + layer)
        end_points[score_scope] = skip_scores
        end_points['fuse_' + layer] = scores
    return scores


def fcn(images, num_classes, name='fcn32s', is_training=False, width=1.0, dropout_keep_prob=0.5,
        weight_decay=0.0005, upsample='learnable', skip_scaling=False):
    """Per-pixel class logits [B, H, W, num_classes] for RGB `images` [B, H, W, 3] in [0, 255].

    `name` is fcn32s, fcn16s or fcn8s. Any H, W: inputs are padded to a multiple of 32 and
    the logits cropped back, so train, eval, export and predict all share this one function.
    `upsample` (learnable | per_class | fixed, fcn.nets.upsample) applies to every upsampling
    (the final one and the 2x ones into the skips); `skip_scaling` multiplies pool4 by
    0.01 and pool3 by 0.0001 before scoring (Long et al.'s "at-once" FCN-8s).
    """
    stride = STRIDE >> NUM_SKIPS[name]
    scores, end_points = vgg_scores(images, num_classes, is_training, width, dropout_keep_prob, weight_decay)
    with tf1.variable_scope(HEAD_SCOPE), slim.arg_scope(vgg.arg_scope(weight_decay)):
        scores = _fuse_skips(scores, end_points, NUM_SKIPS[name], upsample, skip_scaling)
        logits = _upsample(scores, stride, end_points['inputs'], upsample, 'upscore%d' % stride)
    image_shape = tf.shape(images)
    logits = logits[:, :image_shape[1], :image_shape[2], :]
    end_points['logits'] = logits
    return logits, end_points


def fcn32s(images, num_classes, **kwargs):
    """FCN-32s: `fcn(..., name='fcn32s')`."""
    return fcn(images, num_classes, 'fcn32s', **kwargs)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The keyword arguments of `fcn()` after images and num_classes (fcn.options.model builds
    them from a config's `model` section)."""
    name: str = 'fcn32s'
    width: float = 1.0
    dropout_keep_prob: float = 0.5
    weight_decay: float = 0.0005
    upsample: str = 'learnable'  # model.upsample: learnable | per_class | fixed
    skip_scaling: bool = False

    def kwargs(self):
        return dataclasses.asdict(self)


def build_model(images, options, num_classes, is_training):
    """The net of `options` (ModelOptions): `fcn(images, num_classes, is_training, ...)`."""
    return fcn(images, num_classes, is_training=is_training, **options.kwargs())
