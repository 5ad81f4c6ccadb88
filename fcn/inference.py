"""The inference graph (images -> class ids) and the checkpoint restorer: eval and every export
format build predictions with `predict_classes` and load weights with `ModelRestorer`, so
they all predict the same thing.

`predict_classes` takes explicit values (DeepLab's `model.predict_labels_multi_scale` shape);
`fcn.options.inference(cfg)` turns a config into them:

    classes = predict_classes(images, num_classes, **fcn.options.inference(cfg))
    restorer = ModelRestorer(cfg.train.ema_decay, cfg.eval.moving_averages)  # after the model

- scales / flip: the argmax of softmax probabilities summed over one pass per scale (input
  resized by the scale, probabilities resized back) and, with flip, over the mirrored input
  of each scale (mirrored back). Summing each scale's two passes first makes the result
  exactly mirror-symmetric. One scale of 1.0 without flip is the argmax of the logits.
- tile_size [h, w]: an image larger than a tile is predicted tile by tile (a `tf.while_loop`
  over offsets computed from the dynamic image size, tiles overlapping by `tile_overlap` of
  their size, the last tile of a row or column aligned to the image's edge), summing each
  tile's probabilities into the whole image's; the argmax of the sum is the argmax of the
  average, as every pixel's count is the same for all classes. Memory then grows with the
  tile, not the image (plus one float per pixel and class for the sum). An image no larger
  than one tile takes the whole-image path: exactly the untiled result.
"""
from fcn import checkpoints, optim
from fcn.compat import tf, tf1
from fcn.config import ConfigError
from fcn.nets import fcn as fcn_net


def check_scales(scales):
    if not scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales):
        raise ConfigError('eval.scales must be a non-empty list of positive numbers, got %r' % (scales,))
    return tuple(float(s) for s in scales)


def check_tile_size(tile_size):
    if tile_size is None:
        return None
    if not isinstance(tile_size, (list, tuple)) or len(tile_size) != 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in tile_size):
        raise ConfigError('eval.tile_size must be null or [height, width] in pixels (positive integers, '
                          'e.g. [512, 512]), got %r' % (tile_size,))
    return tuple(tile_size)


def check_tile_overlap(overlap):
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise ConfigError('eval.tile_overlap must be a fraction of the tile in [0, 1), got %r' % (overlap,))
    return float(overlap)


def predict_classes(images, num_classes, model, scales=(1.0,), flip=False, tile_size=None, tile_overlap=0.25):
    """Class ids [B, H, W] (int32) for RGB float images [B, H, W, 3] in [0, 255].

    `model`: keyword arguments of `fcn.nets.fcn.fcn` (name, width, upsample, ...;
    see `options`). The first call in a graph creates the model's variables, later calls
    (e.g. a second input of a SavedModel) share them.
    """
    scales = check_scales(scales)
    scores_fn = _ScoresFn(num_classes, model, scales, flip)
    if tile_size is None:
        return tf.argmax(scores_fn(images), axis=3, output_type=tf.int32)
    return _tiled_classes(images, scores_fn, check_tile_size(tile_size), check_tile_overlap(tile_overlap))


class _ScoresFn:
    """images -> per-class scores whose argmax is the prediction: the logits (one scale of 1.0,
    no flip) or the softmax probabilities summed over scales and flips (`is_probability`)."""

    def __init__(self, num_classes, model, scales, flip):
        self.num_classes = num_classes
        self.model = dict(model, is_training=False)
        self.scales = scales
        self.flip = flip
        self.is_probability = not (scales == (1.0,) and not flip)

    def __call__(self, images):
        if not self.is_probability:
            return self._logits(images)
        total = None
        for scale in self.scales:
            probabilities = self._probabilities(images, scale)
            if self.flip:
                mirrored = self._probabilities(tf.reverse(images, [2]), scale)
                probabilities = probabilities + tf.reverse(mirrored, [2])
            total = probabilities if total is None else total + probabilities
        return total

    def probabilities(self, scores):
        return scores if self.is_probability else tf.nn.softmax(scores)

    def _logits(self, images):
        with tf1.variable_scope(tf1.get_variable_scope(), reuse=tf1.AUTO_REUSE):
            logits, _ = fcn_net.fcn(images, self.num_classes, **self.model)
        return logits

    def _probabilities(self, images, scale):
        """Softmax [B, H, W, C] of the model run on `images` resized by `scale`, resized back."""
        size = tf.shape(images)[1:3]
        if scale != 1.0:
            scaled_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale), tf.int32), 1)
            images = tf.image.resize(images, scaled_size, method='bilinear')
        probabilities = tf.nn.softmax(self._logits(images))
        return probabilities if scale == 1.0 else tf.image.resize(probabilities, size, method='bilinear')


def tile_grid(size, tile, overlap):
    """(number of tiles, stride, tile extent) along one axis of `size` pixels (a scalar tensor).

    Tiles start every `stride` = tile * (1 - overlap) pixels (at least 1); the last one is
    moved back to end at the image's edge; an axis no longer than a tile has one tile."""
    stride = max(1, int(tile * (1.0 - overlap)))
    extent = tf.minimum(size, tile)
    count = (tf.maximum(size - tile, 0) + stride - 1) // stride + 1
    return count, stride, extent


def _tiled_classes(images, scores_fn, tile_size, overlap):
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    rows, row_stride, tile_h = tile_grid(height, tile_size[0], overlap)
    cols, col_stride, tile_w = tile_grid(width, tile_size[1], overlap)
    # The first tile is built outside the loop: it creates the variables, and when it is the
    # whole image its scores are the whole-image scores.
    first = scores_fn(images[:, :tile_h, :tile_w, :])

    def whole():
        return tf.argmax(first, axis=3, output_type=tf.int32)

    def tiled():
        def add(total, scores, y, x):
            # total is [H, W, B, C]: rows and columns of the tile index its first two axes
            rows_at, cols_at = tf.meshgrid(tf.range(y, y + tile_h), tf.range(x, x + tile_w), indexing='ij')
            probabilities = tf.transpose(scores_fn.probabilities(scores), [1, 2, 0, 3])
            return tf.tensor_scatter_nd_add(total, tf.stack([rows_at, cols_at], axis=2), probabilities)

        def body(i, total):
            y = tf.minimum((i // cols) * row_stride, height - tile_h)
            x = tf.minimum((i % cols) * col_stride, width - tile_w)
            tile = tf.slice(images, [0, y, x, 0], [-1, tile_h, tile_w, -1])
            return i + 1, add(total, scores_fn(tile), y, x)

        total = add(tf.zeros([height, width, shape[0], scores_fn.num_classes]), first, 0, 0)
        _, total = tf.while_loop(lambda i, _: i < rows * cols, body, [tf.constant(1), total],
                                 parallel_iterations=1)
        return tf.transpose(tf.argmax(total, axis=3, output_type=tf.int32), [2, 0, 1])

    return tf.cond(tf.equal(rows * cols, 1), whole, tiled)


def uses_moving_averages(ema_decay, moving_averages=True):
    """Whether a run trained with `ema_decay` is restored with its moving averages: by default
    when it was trained with them; `moving_averages` False (eval.moving_averages) takes its raw
    weights."""
    return bool(ema_decay) and bool(moving_averages)


def weights_line(ema_decay, moving_averages, checkpoint):
    """The line eval and export start with: which weights of `checkpoint` are used."""
    if uses_moving_averages(ema_decay, moving_averages):
        return 'weights: moving averages (train.ema_decay %g) of %s' % (ema_decay, checkpoint)
    why = ' (eval.moving_averages false)' if ema_decay else ''
    return 'weights: raw weights of %s%s' % (checkpoint, why)


class ModelRestorer:
    """Restores the current graph's model from a training checkpoint, shapes checked first.

    With `ema_decay` > 0 (and `moving_averages`, eval.moving_averages) the trainable variables
    get their EMA shadow values (`name/ExponentialMovingAverage`), the others their own; the
    global step is left out. Build it after the model, in the same graph.
    """

    def __init__(self, ema_decay=0.0, moving_averages=True):
        self.ema_decay = ema_decay if uses_moving_averages(ema_decay, moving_averages) else 0.0
        if self.ema_decay:
            names = optim.ema_variables_to_restore(self.ema_decay)
        else:
            names = {v.op.name: v for v in tf1.global_variables()}
        self.variables = {name: v for name, v in names.items() if v.op.name != 'global_step'}
        self.saver = tf1.train.Saver(self.variables)

    def restore(self, sess, checkpoint):
        reader = tf.train.load_checkpoint(checkpoint)
        missing = sorted(name for name in self.variables if not reader.has_tensor(name))
        if missing:
            hint = (' (train.ema_decay is %g but the checkpoint may have been trained without it; '
                    'set eval.moving_averages=false to use its raw weights)' % self.ema_decay if self.ema_decay else '')
            raise ValueError('%s lacks %d model variables, e.g. %s%s'
                             % (checkpoint, len(missing), ', '.join(missing[:3]), hint))
        checkpoints.check_shapes(checkpoint, self.variables)
        self.saver.restore(sess, checkpoint)
