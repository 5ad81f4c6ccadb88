"""Checkpoints written by other code: TensorFlow's V1 saver over TF-Slim's own vgg_16 graph
(what vgg_16_2016_08_28.tar.gz holds), shape checks on every restore, runs that describe
themselves, and a finished run that trains nothing.

The real-width fixture is built by the real library (`tf_slim.nets.vgg.vgg_16`), saved by
`tf.compat.v1.train.Saver(write_version=V1)` as one file with no `.index`, and its
`checkpoint` state file removed, as in the released tarball.
"""
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from tf_slim.nets import vgg as slim_vgg

from fcn import checkpoints, eval_lib, train_lib
from fcn.run import Run
from fcn.compat import tf, tf1
from fcn.config import ConfigError, load_config, save_config
from fcn.data.info import DatasetInfo, read_run
from fcn.export import export_source
from fcn.export import frozen
from fcn.export.frozen import FrozenModel
from pipeline_fixtures import REPO_ROOT, build_synthetic, fine_tune_one_step, run_script, tiny_config, tiny_overrides

V1 = tf1.train.SaverDef.V1


def save_v1(session, var_list, path):
    """Saves with TensorFlow's V1 saver and leaves one file, as the TF-Slim model zoo ships it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf1.train.Saver(var_list, write_version=V1).save(session, path, write_meta_graph=False)
    os.remove(os.path.join(os.path.dirname(path), 'checkpoint'))
    assert os.path.isfile(path) and not os.path.exists(path + '.index')


@pytest.fixture(scope='module')
def slim_vgg_16_v1(tmp_path_factory):
    """vgg_16.ckpt as the TF-Slim model zoo ships it: tf_slim's vgg_16 variables (random), saved V1."""
    path = str(tmp_path_factory.mktemp('vgg_16_2016_08_28') / 'vgg_16.ckpt')
    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        slim_vgg.vgg_16(tf1.placeholder(tf.float32, [1, 224, 224, 3]), num_classes=1000, is_training=False)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            save_v1(sess, tf1.global_variables(), path)
    return path


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp('records') / 'demo', num_train=8, num_val=3, size=64)


@pytest.fixture(scope='module')
def tiny_run(records, tmp_path_factory):
    """A finished 10-step run at width 0.125 (save interval 5)."""
    run_dir = str(tmp_path_factory.mktemp('run') / 'tiny')
    train_lib.train(tiny_config(records, run_dir, steps=10, extra=['train.save_every_steps=5']), log=lambda *_: None)
    return run_dir


@pytest.mark.tf_subset
def test_train_initialises_from_tf_slims_v1_vgg_16_ckpt(slim_vgg_16_v1, records, tmp_path):
    """Real size: the V1 single file is found, its 30 trunk tensors restored, fc8 excluded."""
    path = slim_vgg_16_v1
    messages, source, trained = fine_tune_one_step(records, str(tmp_path / 'run'), path)
    assert 'initialising from %s' % path in messages
    for name in ('vgg_16/conv1/conv1_1/weights', 'vgg_16/conv5/conv5_3/biases', 'vgg_16/fc6/weights',
                 'vgg_16/fc7/weights'):
        np.testing.assert_array_equal(trained.get_tensor(name), source.get_tensor(name))
    assert trained.get_variable_to_shape_map()['vgg_16/fc8/weights'] == [1, 1, 4096, 5]
    assert not trained.get_tensor('vgg_16/fc8/weights').any()  # fresh zero init, not restored


def test_predict_imagenet_classifies_with_the_v1_file_as_tf_slim_does(slim_vgg_16_v1, tmp_path):
    """predict.py --imagenet on the V1 file prints the top-5 of tf_slim.nets.vgg.vgg_16's own
    logits, computed from the same file, on TF-Slim's eval crop (a 256 x 256 image: the resize
    to a 256 short side keeps it, the central crop is [16:240, 16:240])."""
    path = slim_vgg_16_v1
    image = np.random.RandomState(3).randint(0, 256, (256, 256, 3)).astype(np.uint8)
    image_path = str(tmp_path / 'image.png')
    Image.fromarray(image).save(image_path)
    crop = image[16:240, 16:240].astype(np.float32)
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [1, 224, 224, 3])
        logits, _ = slim_vgg.vgg_16(inputs - tf.constant([123.68, 116.78, 103.94]), num_classes=1000,
                                    is_training=False)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, path)
            expected = sess.run(logits, {inputs: crop[None]})[0]
    run = run_script('predict.py', '--imagenet', '--config', 'configs/imagenet.yaml', '--checkpoint', path,
                     '--out', str(tmp_path / 'out'), image_path)
    assert run.returncode == 0, run.stderr
    printed = [int(line.rsplit('(class ', 1)[1].rstrip(')')) for line in run.stdout.splitlines()[1:6]]
    assert printed == list(np.argsort(-expected)[:5])
    assert np.ptp(expected) > 1e-3  # distinct scores, not a tie


def _resave_v1(checkpoint, out_path):
    """The variables of a V2 checkpoint rewritten by TensorFlow's V1 saver."""
    reader = tf.train.load_checkpoint(checkpoint)
    with tf.Graph().as_default():
        variables = [tf1.Variable(reader.get_tensor(name), name=name)
                     for name in reader.get_variable_to_shape_map()]
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            save_v1(sess, variables, out_path)
    return out_path


@pytest.mark.tf_subset
def test_eval_and_export_read_a_v1_checkpoint_as_its_v2_original(tiny_run, records, tmp_path):
    cfg = tiny_config(records, tiny_run, steps=10)
    v2 = tf1.train.latest_checkpoint(tiny_run)
    v1 = _resave_v1(v2, str(tmp_path / 'v1' / 'model.ckpt'))
    assert eval_lib.resolve_checkpoint(cfg, v1) == v1
    from_v2 = eval_lib.predictions_for_split(cfg, v2)
    from_v1 = eval_lib.predictions_for_split(cfg, v1)
    for (_, _, a), (_, _, b) in zip(from_v2, from_v1):
        np.testing.assert_array_equal(a, b)
    run = run_script('export.py', '--config', os.path.join(tiny_run, 'config.yaml'), '--checkpoint', v1,
                     '--out', str(tmp_path / 'model.pb'))
    assert run.returncode == 0, run.stderr


def test_a_width_override_against_the_run_is_an_error_naming_both_values(tiny_run):
    config = os.path.join(tiny_run, 'config.yaml')
    for script in ('eval.py', 'export.py', 'train.py'):
        extra = ['--once'] if script == 'eval.py' else ['--out', os.path.join(tiny_run, 'x.pb')] \
            if script == 'export.py' else ['--set', 'train.steps=20']
        run = run_script(script, '--config', config, '--set', 'model.width=0.25', *extra)
        assert run.returncode == 2, (script, run.stderr)
        assert '--set model.width=0.25 disagrees' in run.stderr and 'model.width: 0.125' in run.stderr, run.stderr
        assert 'Traceback' not in run.stderr
    assert not os.path.exists(os.path.join(tiny_run, 'x.pb'))


def test_a_checkpoint_of_another_width_is_refused_naming_variable_shapes_and_key(tiny_run, records, tmp_path):
    """No run config to compare with (another run dir): the shape check itself catches it."""
    cfg = tiny_config(records, str(tmp_path / 'other'), extra=['model.width=0.25'])
    with pytest.raises(checkpoints.CheckpointError,
                       match=r'vgg_16/conv1/conv1_1/\w+ in .* has shape \[\S*\s?\S*\s?\S*\s?8\] but the model '
                             r'expects \[\S*\s?\S*\s?\S*\s?16\]: check model.width'):
        frozen.export(export_source(cfg, tf1.train.latest_checkpoint(tiny_run)), str(tmp_path / "m.pb"))
    assert not os.path.exists(str(tmp_path / 'm.pb'))


def test_resume_with_other_classes_names_data_num_classes(tiny_run, records, tmp_path):
    run_dir = str(tmp_path / 'copy')
    shutil.copytree(tiny_run, run_dir)
    os.remove(os.path.join(run_dir, 'config.yaml'))  # as a run from before runs kept their config
    os.remove(os.path.join(run_dir, 'dataset.json'))
    other = build_synthetic(tmp_path / 'three', num_train=4, num_val=2, size=64)
    info = DatasetInfo.read(other)
    DatasetInfo.from_dict(dict(info.to_dict(), num_classes=3, class_names=list(info.class_names[:3])),
                          ).write(os.path.join(other, 'summary.json'))
    cfg = tiny_config(other, run_dir, steps=20)
    with pytest.raises(checkpoints.CheckpointError, match=r'vgg_16/fc8/\w+ .*: check data.num_classes'):
        train_lib.train(cfg, log=lambda *_: None)


def test_likely_key_names_classes_width_upsampling_or_network():
    assert checkpoints.likely_key('vgg_16/fc8/weights', [1, 1, 512, 21], [1, 1, 512, 5]) == 'data.num_classes'
    assert checkpoints.likely_key('vgg_16/fc8/biases', [21], [5]) == 'data.num_classes'
    assert checkpoints.likely_key('fcn/upscore/weights', [64, 64, 21, 21], [64, 64, 5, 5]) == 'data.num_classes'
    assert checkpoints.likely_key('vgg_16/fc8/weights', [1, 1, 512, 21], [1, 1, 256, 21]) == 'model.width'
    assert checkpoints.likely_key('vgg_16/conv1/conv1_1/weights', [3, 3, 3, 64], [3, 3, 3, 8]) == 'model.width'
    assert checkpoints.likely_key('fcn/score_pool4/weights', [1, 1, 64, 5], [5]) == 'model.name'
    assert checkpoints.likely_key('fcn/upscore32/weights', [64, 64, 21, 21], [64, 64, 21]) == 'model.upsample'
    assert checkpoints.likely_key('fcn/upscore32/weights', [64, 64, 21], [64, 64, 5]) == 'data.num_classes'


def test_export_of_a_run_needs_no_records(tiny_run, records, tmp_path):
    """The run's config.yaml + dataset.json suffice: the records folder is gone."""
    run_dir = str(tmp_path / 'moved')
    shutil.copytree(tiny_run, run_dir)
    config = load_config(os.path.join(run_dir, 'config.yaml'))
    gone = str(tmp_path / 'records-gone')
    shutil.copytree(records, gone)
    config_path = str(tmp_path / 'config.yaml')
    config.train.run_dir = run_dir
    config.data.dir = gone
    save_config(config, config_path)
    shutil.rmtree(gone)
    out = str(tmp_path / 'm.pb')
    run = run_script('export.py', '--config', config_path, '--out', out)
    assert run.returncode == 0, run.stderr
    model = FrozenModel(out)
    try:
        assert model.labels['class_names'] == ['background', 'disc', 'square', 'triangle', 'cross']
        assert model.labels['num_classes'] == 5 and model.labels['ignore_label'] == 255
    finally:
        model.close()


def test_the_run_dir_holds_config_and_dataset_description(tiny_run, records):
    saved = Run(tiny_run).saved_config()
    assert saved['model']['width'] == 0.125 and saved['train']['steps'] == 10
    kept = read_run(tiny_run)
    assert kept.source == os.path.join(tiny_run, 'dataset.json')
    assert kept.to_dict() == DatasetInfo.read(records).to_dict()


def test_rerunning_a_finished_run_trains_nothing(tiny_run, records):
    before = sorted(os.listdir(tiny_run))
    run = run_script('train.py', '--config', os.path.join(tiny_run, 'config.yaml'))
    assert run.returncode == 0, run.stderr
    assert 'already at step 10' in run.stdout
    assert sorted(os.listdir(tiny_run)) == before
    assert tf1.train.latest_checkpoint(tiny_run).endswith('model.ckpt-10')


def test_the_run_binds_its_keys_a_config_file_differing_is_replaced_a_set_is_an_error(records, tmp_path):
    """A run dir without config.yaml binds nothing; once written, a config file's other width is
    replaced by the run's (one line says so) and a --set of another width is refused."""
    run_dir = str(tmp_path / 'fresh')
    run = Run(run_dir)
    wide = tiny_config(records, run_dir, steps=1, extra=['model.width=0.25'])
    assert run.bind(wide) is wide  # nothing to bind yet
    run.write(tiny_config(records, run_dir, steps=1), DatasetInfo.read(records))
    assert run.bind(tiny_config(records, run_dir, steps=5)).train.steps == 5  # free keys stay the command's
    with pytest.raises(ConfigError, match=r"--set model.width=0.25 disagrees with the run in .*, trained with "
                                          r"model.width: 0.125 \(.*config.yaml\)"):
        run.bind(wide)
    config_file = tmp_path / 'wide.yaml'
    config_file.write_text('base: %s\nmodel:\n  width: 0.25\n  skip_scaling: true\n'
                           % os.path.join(REPO_ROOT, 'configs', 'demo.yaml'))
    overrides = [o for o in tiny_overrides(records, run_dir, steps=1) if not o.startswith('model.width')]
    lines = []
    bound = run.bind(load_config(str(config_file), overrides), lines.append)
    assert (bound.model.width, bound.model.skip_scaling) == (0.125, False)
    assert lines == ['the run in %s was trained with other values than %s: taken from its config.yaml: '
                     'model.width 0.125 (not 0.25), model.skip_scaling false (not true)' % (run_dir, config_file)]

