"""What each name of fcn-fetch is: its archives (URLs in order, checksum), the layout they unpack
to, how that layout is checked, and the commands that come next.

The layouts are those the builders read (fcn/data/voc.py, sbd.py, coco.py, cityscapes.py,
ade20k.py) and the place `init.checkpoint` of the shipped recipes names (checkpoints/vgg_16.ckpt):
  voc         DEST/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}
  sbd         DEST/benchmark_RELEASE/dataset/{cls,img,inst,train.txt,val.txt}
  vgg16       DEST/vgg_16.ckpt (DEST default checkpoints/)
  coco        DEST/coco/{train2017,val2017,annotations/instances_{train,val}2017.json}
  ade20k      DEST/ADEChallengeData2016/{images,annotations}/{training,validation}
  cityscapes  DEST/cityscapes_trainvaltest/{gtFine,leftImg8bit}/{train,val} (not DEST/cityscapes: data/cityscapes
              is where its records go)
A --manifest replaces the URLs and checksums of a name; the layout stays this table's.
"""
import dataclasses
import os
import shlex

from fcn.fetch.download import FetchError

DATA_DEST = 'data'
CHECKPOINT_DEST = 'checkpoints'
VGG_CHECKPOINT = 'vgg_16.ckpt'


@dataclasses.dataclass(frozen=True)
class Archive:
    """One archive: where to get it and what it must unpack to.

    members: ((path inside the archive, path under DEST), ...), each moved into place whole.
    required: paths inside the archive that must exist (the layout check).
    urls empty: fetched by hand (`manual` says how), then verified and unpacked.
    """
    filename: str
    urls: tuple
    members: tuple
    required: tuple = ()
    md5: str = None
    sha256: str = None
    size: int = None

    @property
    def checksums(self):
        return {name: value for name, value in (('md5', self.md5), ('sha256', self.sha256)) if value}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    what: str
    archives: tuple
    default_dest: str = DATA_DEST
    manual: str = None  # how to get archives that need a login
    keep_archives: bool = False  # archives the user put there by hand are theirs


def _under(root, *paths):
    return tuple('%s/%s' % (root, p) for p in paths)


ENTRIES = {e.name: e for e in (
    Entry('voc', 'PASCAL VOC 2012 trainval (2 GB)', (
        Archive('VOCtrainval_11-May-2012.tar',
                ('http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar',
                 'https://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar'),
                members=(('VOCdevkit/VOC2012', 'VOCdevkit/VOC2012'),),
                required=_under('VOCdevkit/VOC2012', 'JPEGImages', 'SegmentationClass',
                                'ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/val.txt'),
                md5='6cd6e144f989b92b3379bac3b3de84fd'),)),
    Entry('sbd', "the SBD augmented labels, Hariharan et al.'s benchmark.tgz (1.4 GB)", (
        Archive('benchmark.tgz',
                ('http://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz',
                 'http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz'),
                members=(('benchmark_RELEASE', 'benchmark_RELEASE'),),
                required=_under('benchmark_RELEASE/dataset', 'cls', 'img', 'inst', 'train.txt', 'val.txt'),
                md5='82b4d87ceb2ed10f6038a1cba92111cb'),)),
    Entry('vgg16', "TF-Slim's ImageNet VGG-16, vgg_16.ckpt (490 MB)", (
        Archive('vgg_16_2016_08_28.tar.gz',
                ('http://download.tensorflow.org/models/vgg_16_2016_08_28.tar.gz',
                 'https://storage.googleapis.com/download.tensorflow.org/models/vgg_16_2016_08_28.tar.gz'),
                members=((VGG_CHECKPOINT, VGG_CHECKPOINT),)),),
          default_dest=CHECKPOINT_DEST),
    Entry('coco', 'COCO 2017 train and val images and annotations (19 GB)', (
        Archive('annotations_trainval2017.zip',
                ('http://images.cocodataset.org/annotations/annotations_trainval2017.zip',
                 'https://s3.amazonaws.com/images.cocodataset.org/annotations/annotations_trainval2017.zip'),
                members=(('annotations', 'coco/annotations'),),
                required=('annotations/instances_train2017.json', 'annotations/instances_val2017.json'),
                md5='f4bbac642086de4f52a3fdda2de5fa2c'),
        Archive('val2017.zip',
                ('http://images.cocodataset.org/zips/val2017.zip',
                 'https://s3.amazonaws.com/images.cocodataset.org/zips/val2017.zip'),
                members=(('val2017', 'coco/val2017'),), md5='442b8da7639aecaf257c1dceb8ba8c80'),
        Archive('train2017.zip',
                ('http://images.cocodataset.org/zips/train2017.zip',
                 'https://s3.amazonaws.com/images.cocodataset.org/zips/train2017.zip'),
                members=(('train2017', 'coco/train2017'),), md5='cced6f7f71b7629ddf16f17bbcfab6b2'))),
    Entry('ade20k', 'the ADE20K scene-parsing benchmark, ADEChallengeData2016.zip (923 MB)', (
        Archive('ADEChallengeData2016.zip',
                ('http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip',
                 'http://sceneparsing.csail.mit.edu/data/ADEChallengeData2016.zip'),
                members=(('ADEChallengeData2016', 'ADEChallengeData2016'),),
                required=_under('ADEChallengeData2016', 'images/training', 'images/validation',
                                'annotations/training', 'annotations/validation'),
                md5='7328b3957e407ddae1d3cbf487f149ef'),)),
    Entry('cityscapes', 'Cityscapes fine annotations and images (11 GB; needs a login)', (
        Archive('gtFine_trainvaltest.zip', (), members=(('gtFine', 'cityscapes_trainvaltest/gtFine'),),
                required=('gtFine/train', 'gtFine/val')),
        Archive('leftImg8bit_trainvaltest.zip', (), members=(('leftImg8bit', 'cityscapes_trainvaltest/leftImg8bit'),),
                required=('leftImg8bit/train', 'leftImg8bit/val'))),
          manual='Cityscapes needs a (free) login: sign in at https://www.cityscapes-dataset.com/downloads/, '
                 'download gtFine_trainvaltest.zip (241 MB) and leftImg8bit_trainvaltest.zip (11 GB) and put '
                 'both in {downloads}, then rerun this command (it checks and unpacks them)',
          keep_archives=True),
)}


def names():
    return tuple(ENTRIES)


def entry(name):
    if name not in ENTRIES:
        raise FetchError('unknown name %r: fcn-fetch knows %s' % (name, ', '.join(ENTRIES)))
    return ENTRIES[name]


# --- checks of what an archive unpacked to --------------------------------------------------------

def layout_check(archive, vgg_width=1.0):
    """The check `download.unpack` runs on the extracted members of `archive` before moving them."""
    def check(found):
        root = _extraction_root(archive, found)
        missing = [p for p in archive.required if not os.path.exists(os.path.join(root, *p.split('/')))]
        if missing:
            from fcn.fetch.download import describe_tree
            raise FetchError('%s is not in the expected layout: no %s in it (found: %s)'
                             % (archive.filename, ', '.join(missing), describe_tree(root)))
        if VGG_CHECKPOINT in found:
            check_vgg_16(found[VGG_CHECKPOINT], archive.filename, vgg_width)
    return check


def _extraction_root(archive, found):
    """The folder the archive was extracted into, from one member's extracted path."""
    inside, target = archive.members[0]
    path = found[target]
    for _ in inside.split('/'):
        path = os.path.dirname(path)
    return path


def expected_vgg_16(width=1.0):
    """{variable name: shape} of TF-Slim's vgg_16.ckpt (fc8: the 1000 ImageNet classes); `width`
    scales every channel count as fcn's model.width does (tests write small checkpoints)."""
    from fcn.convert.vgg16 import LAYERS, NUM_CLASSES, slim_shape
    from fcn.nets.vgg import scaled
    shapes = {}
    for layer in LAYERS:
        kh, kw, cin, cout = slim_shape(layer)
        cin = cin if cin == 3 else scaled(cin, width)
        cout = cout if cout == NUM_CLASSES and layer.scope.endswith('fc8') else scaled(cout, width)
        shapes[layer.scope + '/weights'] = [kh, kw, cin, cout]
        shapes[layer.scope + '/biases'] = [cout]
    return shapes


def check_vgg_16(path, archive_name, width=1.0):
    """vgg_16.ckpt has no published checksum: its variables' names and shapes are checked instead."""
    from fcn.checkpoints import shape_map
    try:
        found = shape_map(path)
    except ValueError as e:
        raise FetchError('%s: %s is not a readable TensorFlow checkpoint (%s)' % (archive_name, VGG_CHECKPOINT, e)) from None
    for name, shape in expected_vgg_16(width).items():
        if name not in found:
            raise FetchError("%s: %s is not TF-Slim's vgg_16: %s is missing (it holds %d variables)"
                             % (archive_name, VGG_CHECKPOINT, name, len(found)))
        if list(found[name]) != shape:
            raise FetchError("%s: %s is not TF-Slim's vgg_16%s: %s has shape %s, expected %s"
                             % (archive_name, VGG_CHECKPOINT, '' if width == 1.0 else ' at width %g' % width,
                                name, list(found[name]), shape))


# --- what comes next ------------------------------------------------------------------------------

def next_commands(present, checkpoint=None, cwd='.'):
    """The commands that follow, with these paths.

    present: {name: DEST} of every name fetched (now or before); checkpoint: the path of vgg_16.ckpt
    when fetched, None if not. Paths are as given (relative to the working directory)."""
    build = _tool(cwd, 'build_tfrecords.py', 'fcn-build-records')
    train = _tool(cwd, 'train.py', 'fcn-train')
    init = [] if checkpoint in (None, os.path.join(CHECKPOINT_DEST, VGG_CHECKPOINT)) else \
        ['--set', 'init.checkpoint=%s' % checkpoint]
    lines = []
    trains = any(name in present for name in ('voc', 'coco', 'ade20k', 'cityscapes'))
    if trains and checkpoint is None and not os.path.exists(os.path.join(cwd, CHECKPOINT_DEST, VGG_CHECKPOINT)):
        lines.append(_tool(cwd, 'fetch.py', 'fcn-fetch') + ['vgg16'])  # train.py starts from it
    if 'voc' in present:
        line = build + ['--dataset', 'voc', '--data_dir', os.path.join(present['voc'], 'VOCdevkit', 'VOC2012')]
        if 'sbd' in present:
            line += ['--sbd_dir', os.path.join(present['sbd'], 'benchmark_RELEASE', 'dataset')]
        lines.append(line + ['--out', 'data/voc'])
        lines.append(train + ['--config', 'voc.yaml'] + init +
                     ([] if 'sbd' in present else ['--set', 'data.train_split=train']))
    for name, args, config in (
            ('coco', ['--dataset', 'coco', '--data_dir', 'coco', '--labels', 'voc20', '--out', 'data/coco-voc'],
             'coco-fcn32s.yaml'),
            ('ade20k', ['--dataset', 'ade20k', '--data_dir', 'ADEChallengeData2016', '--out', 'data/ade20k'],
             'ade20k.yaml'),
            ('cityscapes', ['--dataset', 'cityscapes', '--data_dir', 'cityscapes_trainvaltest', '--out', 'data/cityscapes'],
             'cityscapes.yaml')):
        if name in present:
            args = list(args)
            args[3] = os.path.join(present[name], args[3])
            lines.append(build + args)
            lines.append(train + ['--config', config] + init)
    return [' '.join(shlex.quote(word) for word in line) for line in lines]


def _tool(cwd, script, console_script):
    """`python build_tfrecords.py` in a clone of the repository (the script is there), else the
    installed console script."""
    return ['python', script] if os.path.isfile(os.path.join(cwd, script)) else [console_script]
