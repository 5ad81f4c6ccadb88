"""fcn/inference.py: tiled inference (tile grid, the average of the tiles' softmax, an image no
larger than a tile predicted exactly as a whole) and its config checks.

A random model (random fc8 and upsampling layers) so that predictions vary from pixel to
pixel and depend on the context a tile sees: equality checks then mean something."""
import numpy as np
import pytest

from fcn import inference
from fcn.compat import tf, tf1
from fcn.config import ConfigError
from fcn.nets import fcn as fcn_net

NUM_CLASSES = 5
MODEL = dict(name='fcn32s', width=0.125, upsample='learnable', skip_scaling=False)


class RandomModel:
    """One graph: whole-image and tiled predictions, plus the plain model's softmax on any input."""

    def __init__(self, tile_size, tile_overlap, scales=(1.0,), flip=False):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(0)
            self.images = tf1.placeholder(tf.uint8, [1, None, None, 3])
            floats = tf.cast(self.images, tf.float32)
            self.whole = inference.predict_classes(floats, NUM_CLASSES, MODEL, scales, flip)
            self.tiled = inference.predict_classes(floats, NUM_CLASSES, MODEL, scales, flip, tile_size, tile_overlap)
            with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
                logits, _ = fcn_net.fcn(floats, NUM_CLASSES, is_training=False, **MODEL)
            self.softmax = tf.nn.softmax(logits)
            self.session = tf1.Session()
            self.session.run(tf1.global_variables_initializer())
            rng = np.random.RandomState(0)
            for var in tf1.global_variables():
                if var.op.name.startswith(('vgg_16/fc8/', 'fcn/')):
                    var.load(rng.normal(0.0, 0.5, var.shape.as_list()).astype(np.float32), self.session)

    def run(self, tensor, image):
        return self.session.run(tensor, {self.images: image[None]})[0]


def _image(height, width, seed=1):
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def _offsets(size, tile, overlap):
    """The tile offsets along one axis, as the docstring of inference.tile_grid states them."""
    stride = max(1, int(tile * (1 - overlap)))
    count = (max(size - tile, 0) + stride - 1) // stride + 1
    return [min(i * stride, max(size - tile, 0)) for i in range(count)]


def test_tile_offsets_cover_the_axis_with_the_overlap():
    assert _offsets(80, 64, 0.25) == [0, 16]
    assert _offsets(120, 64, 0.25) == [0, 48, 56]
    assert _offsets(3000, 512, 0.25) == [0, 384, 768, 1152, 1536, 1920, 2304, 2488]
    assert _offsets(512, 512, 0.25) == [0] and _offsets(100, 512, 0.5) == [0]
    with tf.Graph().as_default(), tf1.Session() as sess:
        for size, tile, overlap in ((80, 64, 0.25), (120, 64, 0.25), (3000, 512, 0.25), (97, 32, 0.0), (40, 64, 0.5)):
            count, stride, extent = inference.tile_grid(tf.constant(size), tile, overlap)
            count, extent = sess.run([count, extent])
            assert count == len(_offsets(size, tile, overlap)) and extent == min(size, tile)
            assert stride == max(1, int(tile * (1 - overlap)))


@pytest.fixture(scope='module')
def model():
    m = RandomModel(tile_size=(64, 64), tile_overlap=0.25)
    yield m
    m.session.close()


def test_tiled_prediction_is_the_argmax_of_the_tiles_softmax_summed(model):
    image = _image(80, 120)
    total = np.zeros((80, 120, NUM_CLASSES), np.float32)
    for y in _offsets(80, 64, 0.25):
        for x in _offsets(120, 64, 0.25):
            total[y:y + 64, x:x + 64] += model.run(model.softmax, np.ascontiguousarray(image[y:y + 64, x:x + 64]))
    expected = total.argmax(axis=2)
    tiled, whole = model.run(model.tiled, image), model.run(model.whole, image)
    assert tiled.dtype == np.int32 and tiled.shape == (80, 120)
    np.testing.assert_array_equal(tiled, expected)
    assert (tiled != whole).mean() > 0.05  # tiles see less context: not the whole-image result


@pytest.mark.parametrize('size', [(64, 64), (50, 37), (1, 64)])
def test_an_image_no_larger_than_a_tile_is_predicted_exactly_as_a_whole(model, size):
    image = _image(*size, seed=2)
    np.testing.assert_array_equal(model.run(model.tiled, image), model.run(model.whole, image))


def test_tiling_with_scales_and_flip_matches_whole_image_within_one_tile():
    m = RandomModel(tile_size=(48, 64), tile_overlap=0.5, scales=(0.75, 1.0), flip=True)
    try:
        small, large = _image(48, 60, seed=3), _image(70, 90, seed=4)
        np.testing.assert_array_equal(m.run(m.tiled, small), m.run(m.whole, small))
        tiled = m.run(m.tiled, large)
        assert tiled.shape == (70, 90) and (tiled != m.run(m.whole, large)).any()
    finally:
        m.session.close()


@pytest.mark.parametrize('key, value, message', [
    ('tile_size', [512], 'eval.tile_size must be null or \\[height, width\\]'),
    ('tile_size', [512, 0], 'eval.tile_size must be null'),
    ('tile_size', [512.5, 512], 'eval.tile_size must be null'),
    ('tile_overlap', 1.0, 'eval.tile_overlap must be a fraction of the tile in \\[0, 1\\), got 1.0'),
    ('tile_overlap', -0.1, 'eval.tile_overlap must be'),
])
def test_bad_tile_settings_are_config_errors(key, value, message):
    check = inference.check_tile_size if key == 'tile_size' else inference.check_tile_overlap
    with pytest.raises(ConfigError, match=message):
        check(value)
