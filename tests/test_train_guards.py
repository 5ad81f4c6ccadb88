"""A non-finite loss stops training, names the step, and leaves the last good checkpoint."""
import pytest

from fcn import losses, train_lib
from fcn.compat import tf, tf1
from fcn.hooks import NonFiniteLossError
from pipeline_fixtures import build_synthetic, tiny_config


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=2, size=64)


def test_nan_loss_stops_and_keeps_last_checkpoint(records, tmp_path, monkeypatch):
    real_loss = losses.segmentation_loss

    def loss_turning_nan(*args, **kwargs):
        step = tf.cast(tf1.train.get_global_step(), tf.float32)
        nan_from_step_12 = tf.where(step >= 12.0, tf.constant(float('nan')), 0.0)
        return real_loss(*args, **kwargs) + nan_from_step_12

    monkeypatch.setattr(losses, 'segmentation_loss', loss_turning_nan)
    run_dir = str(tmp_path / 'run')
    cfg = tiny_config(records, run_dir, steps=30, extra=['train.save_every_steps=5'])
    with pytest.raises(NonFiniteLossError, match='loss is nan at step 13'):
        train_lib.train(cfg, log=lambda *_: None)
    assert tf1.train.latest_checkpoint(run_dir).endswith('model.ckpt-10')
    reader = tf.train.load_checkpoint(tf1.train.latest_checkpoint(run_dir))
    import numpy as np
    assert np.isfinite(reader.get_tensor('vgg_16/fc8/weights')).all()
