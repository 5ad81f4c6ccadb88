"""Builds sharded TFRecords + summary.json for training (see fcn/data/build.py).

  python build_tfrecords.py --dataset synthetic --out data/demo
  python build_tfrecords.py --dataset voc --data_dir VOC2012 [--sbd_dir SBD/dataset] --out data/voc
  python build_tfrecords.py --dataset voc --data_dir VOC2012 --sbd_dir SBD/dataset --splits sbd_train,seg11valid \\
      --out data/voc-fcn      # the FCN paper's protocol (train on sbd_train, evaluate on seg11valid)
  python build_tfrecords.py --dataset coco --data_dir coco --labels voc20 --out data/coco-voc
  python build_tfrecords.py --dataset cityscapes --data_dir cityscapes --out data/cityscapes [--label_type labelTrainIds]
  python build_tfrecords.py --dataset ade20k --data_dir ADEChallengeData2016 --out data/ade20k
  python build_tfrecords.py --dataset folder --images my/images --masks my/masks \\
      --class_names my/classes.txt --out data/mine [--val_fraction 0.1 --seed 0] [--mask_map 255:1]
  python build_tfrecords.py --dataset records --data_dir deeplab/tfrecord --num_classes 21 \\
      [--class_names classes.txt] [--ignore_label 255] --out data/voc-deeplab
  python build_tfrecords.py --verify data/voc     # checksum + decode every record; exit 2 if any is bad

--dataset records indexes records written by another tool (DeepLab's keys): every shard is read
and checked, summary.json is written into --out and the shards are linked there (copied where
links fail); the --data_dir folder is never written to.
"""
import argparse
import os
import sys

from fcn import cli


# ----------------------------------------------------------------------------- flags -> builder values
# Each dataset's function maps the parsed flags to the plain values its builder takes
# (fcn.data.<dataset>) and returns a DatasetSpec to build or, for records, the DatasetInfo indexed.

def _require(args, dataset, **flags):
    """DatasetError naming the first missing flag: flags = {dest: what it holds}."""
    from fcn.data.spec import DatasetError
    for dest, what in flags.items():
        if getattr(args, dest) is None:
            raise DatasetError('--dataset %s needs --%s (%s)' % (dataset, dest, what))


def _splits(args, default):
    from fcn.data.spec import parse_splits
    return parse_splits(args.splits, default)


def voc_spec(args):
    from fcn.data import voc
    _require(args, 'voc', data_dir='the VOC2012 folder')
    default = voc.DEFAULT_SPLITS + (('train_aug',) if args.sbd_dir else ())
    return voc.voc_spec(args.data_dir, _splits(args, default), sbd_dir=args.sbd_dir)


def synthetic_spec(args):
    from fcn.data import synthetic
    return synthetic.synthetic_spec(os.path.join(args.out, 'source'), args.num_train, args.num_val, args.size,
                                    args.seed)


def coco_spec(args):
    from fcn.data import coco
    _require(args, 'coco', data_dir='the folder holding annotations/')
    return coco.coco_spec(args.data_dir, _splits(args, coco.DEFAULT_SPLITS), args.labels, args.min_labeled_fraction,
                          args.min_labeled_pixels)


def folder_spec(args):
    from fcn.data import folder
    from fcn.data.spec import DatasetError
    if not args.images or not args.masks:
        raise DatasetError('--dataset folder needs --images and --masks')
    mask_map = folder.parse_mask_map(args.mask_map) if args.mask_map else None
    return folder.folder_spec(args.images, args.masks, args.class_names, args.colors, args.train_list,
                              args.val_list, args.val_fraction, args.seed, mask_map)


def cityscapes_spec(args):
    from fcn.data import cityscapes
    _require(args, 'cityscapes', data_dir='the folder holding leftImg8bit/ and gtFine/')
    return cityscapes.cityscapes_spec(args.data_dir, _splits(args, cityscapes.DEFAULT_SPLITS), args.label_type)


def ade20k_spec(args):
    from fcn.data import ade20k
    _require(args, 'ade20k', data_dir='the ADEChallengeData2016 folder')
    return ade20k.ade20k_spec(args.data_dir, _splits(args, ade20k.DEFAULT_SPLITS))


def index_records(args):
    from fcn.data import index_records as indexer
    from fcn.data.spec import read_class_names
    _require(args, 'records', data_dir='the folder of *.tfrecord shards',
             num_classes='the number of classes the labels use')
    names = read_class_names(args.class_names) if args.class_names else None
    return indexer.index(args.data_dir, args.out, args.num_classes, names, args.ignore_label,
                         _splits(args, ()) or None)


DATASETS = {'voc': voc_spec, 'synthetic': synthetic_spec, 'coco': coco_spec, 'folder': folder_spec,
            'cityscapes': cityscapes_spec, 'ade20k': ade20k_spec, 'records': index_records}  # the one list of --dataset names
INDEXERS = ('records',)  # these index records that exist; the others return a DatasetSpec to build


def build_dataset(args):
    """Builds (or indexes) --dataset from the parsed flags; returns the summary written."""
    result = DATASETS[args.dataset](args)
    if args.dataset in INDEXERS:
        return result.to_dict()
    from fcn.data import build
    return build.build(result, args.out, num_shards=args.num_shards, num_workers=args.num_workers,
                       overwrite=args.overwrite, skip_bad=args.skip_bad, progress=not args.no_progress,
                       seed=args.seed, upright=not args.ignore_exif_orientation)


def make_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', choices=list(DATASETS), help='what to build (required unless --verify)')
    p.add_argument('--out', help='output folder for shards and summary.json (required unless --verify)')
    p.add_argument('--verify', metavar='DIR', help='instead of building: check every record of every shard in DIR '
                                                   '(checksums, image and label decode) and name the bad ones')
    p.add_argument('--splits', help='comma-separated splits to build (voc: default train,val[,train_aug]; also '
                                    'seg11valid and, with --sbd_dir, sbd_train: the FCN paper\'s protocol; '
                                    'coco, cityscapes, ade20k: default train,val; records: default every split found)')
    g = p.add_argument_group('voc / sbd / coco / cityscapes / ade20k')
    g.add_argument('--data_dir', help='VOC2012 folder (voc), COCO root with annotations/ (coco), the folder holding '
                                      'leftImg8bit/ and gtFine/ (cityscapes), ADEChallengeData2016 (ade20k) or the '
                                      'folder of *.tfrecord shards (records)')
    g.add_argument('--sbd_dir', help='SBD "dataset" folder (cls/*.mat, img/, train.txt, val.txt): adds train_aug '
                                     '(DeepLab-style protocol, with val); --splits sbd_train,seg11valid writes '
                                     'the FCN paper\'s protocol instead (never mix the two)')
    g.add_argument('--labels', default='voc20', choices=['voc20', 'coco'],
                   help='coco label map: voc20 (VOC classes, other categories background) or coco (80 + background)')
    g.add_argument('--min_labeled_pixels', type=int, default=1000,
                   help='coco: leave out training images with fewer labelled pixels than this, background and '
                        'ignored pixels not counted (default 1000, as torchvision\'s reference; 0 keeps every '
                        'image); validation keeps every image')
    g.add_argument('--min_labeled_fraction', type=float, default=0.0,
                   help='coco: also leave out training images whose non-background labelled area is below this '
                        'fraction of the image (default 0: off)')
    g.add_argument('--label_type', default='labelIds', choices=['labelIds', 'labelTrainIds'],
                   help="cityscapes: read *_gtFine_labelIds.png (mapped to the 19 training ids of cityscapesScripts' "
                        "labels.py) or *_gtFine_labelTrainIds.png (taken as they are)")
    g = p.add_argument_group('folder')
    g.add_argument('--images', help='folder of images')
    g.add_argument('--masks', help='folder of masks, matched to images by file stem')
    g.add_argument('--class_names', help='folder, records: text file, one class name a line (line i = class id i)')
    g.add_argument('--colors', help='YAML colour table for RGB masks: {classes: {name: [r, g, b], ...}, '
                                    'ignore: [[r, g, b], ...]}')
    g.add_argument('--train_list', help='list file of training image stems (relative to --images)')
    g.add_argument('--val_list', help='list file of validation image stems (relative to --images)')
    g.add_argument('--val_fraction', type=float, default=0.1,
                   help='without list files: seeded random fraction of the images used as val')
    g.add_argument('--mask_map', help='index masks: change mask values before anything else, e.g. 255:1 for '
                                      'binary 0/255 masks (255 is the ignore label); several: 255:1,128:2')
    g = p.add_argument_group('records (written by another tool, e.g. DeepLab)')
    g.add_argument('--num_classes', type=int, help='the number of classes the labels use (values 0..N-1)')
    g.add_argument('--ignore_label', type=int, default=255, help='the label value of void pixels')
    g = p.add_argument_group('synthetic')
    g.add_argument('--num_train', type=int, default=200)
    g.add_argument('--num_val', type=int, default=40)
    g.add_argument('--size', type=int, default=128, help='image side, pixels')
    g = p.add_argument_group('building')
    g.add_argument('--seed', type=int, default=0, help='shuffling of examples, val split, synthetic data')
    g.add_argument('--num_shards', type=int, help='shards per split (default: max(4, images/1024))')
    g.add_argument('--num_workers', type=int, default=os.cpu_count() or 1, help='encoding processes')
    g.add_argument('--overwrite', action='store_true', help='rebuild shards that are already complete')
    g.add_argument('--ignore_exif_orientation', action='store_true',
                   help='keep the raw pixels of JPEGs that carry an EXIF orientation (for sets annotated on the '
                        'raw pixels) instead of turning them upright, and accept label files that carry one')
    g.add_argument('--skip_bad', action='store_true',
                   help='skip bad images / labels (listed in summary.json) instead of stopping')
    g.add_argument('--no_progress', action='store_true', help='no progress bar')
    return cli.add_verbose_arg(p)


def main(argv=None):
    """The tool -> its exit code: errors are printed and exit codes chosen by fcn.cli, as in
    the other tools."""
    return cli.exit_code(_main, argv)


def _main(argv):
    parser = make_parser()
    args = parser.parse_args(argv)
    cli.apply_verbose(args)
    if args.verify:
        return verify(args.verify)
    if not (args.dataset and args.out):
        parser.error('--dataset and --out are required (or --verify DIR)')
    summary = build_dataset(args)
    from fcn.data import info, sanity
    for split, entry in sorted(summary['splits'].items()):
        print(split_line(split, entry))
    print('wrote %s' % info.summary_path(args.out))
    for line in sanity.warnings_for(info.DatasetInfo.from_dict(summary)):
        print('warning: %s' % line, file=sys.stderr)
    return 0


def split_line(split, entry):
    """'train: 90 images in 4 shards, 2 skipped, 8 dropped (--min_labeled_*), 3 turned upright (EXIF)'."""
    dropped = entry.get('dropped', 0)
    line = '%s: %d images in %d shards, %d skipped' % (split, entry['num_images'], entry['num_shards'],
                                                       len(entry['skipped']) - dropped)
    if dropped:
        line += ', %d dropped (below --min_labeled_pixels / --min_labeled_fraction)' % dropped
    if entry.get('exif_turned'):
        line += ', %d turned upright (EXIF orientation)' % entry['exif_turned']
    return line


def verify(data_dir):
    """Checks every record in data_dir; prints one line per shard and each bad record."""
    if not os.path.isdir(data_dir):
        raise NotADirectoryError('--verify %s: not a folder' % data_dir)
    from fcn.data import verify as verify_lib
    from fcn.data.spec import DatasetError
    total, problems = verify_lib.verify_dir(data_dir, progress=print)
    for problem in problems:
        print('bad record: %s' % problem, file=sys.stderr)
    if problems:
        raise DatasetError('%d bad record(s) in %s (%d read)' % (len(problems), data_dir, total))
    print('all %d records in %s are intact and decode' % (total, data_dir))
    return 0


def run():
    """The console script fcn-build-records."""
    sys.exit(main())
