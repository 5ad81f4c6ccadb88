"""Segment images with an exported model: python predict.py --model model.pb --out out/ a.jpg b.png ...

Writes, per image, NAME.png (palette PNG of class ids) and NAME_overlay.png (colours over
the image, with a legend naming the classes present).

ImageNet classification with the VGG-16 seed (no segmentation training needed):
  python predict.py --imagenet --config configs/imagenet.yaml --checkpoint vgg_16.ckpt --out out/ a.jpg
prints each image's top-5 ImageNet classes and writes NAME_imagenet_labels.png (16-bit class ids
of the coarse fully convolutional label map, one pixel per 32) and NAME_imagenet.png (the map
over the image, with a legend)."""
import argparse
import sys

from fcn import cli


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--model', help='frozen graph written by export.py')
    mode.add_argument('--imagenet', action='store_true', help='classify with a VGG-16 checkpoint (1000 classes)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('images', nargs='+', help='image files')
    imagenet = parser.add_argument_group('--imagenet')
    imagenet.add_argument('--config', help='YAML config, e.g. configs/imagenet.yaml (model.width, init.checkpoint)')
    imagenet.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY=VALUE',
                          help='override a config key (repeatable)')
    imagenet.add_argument('--checkpoint', help='vgg_16.ckpt, another checkpoint prefix or a run folder '
                                               '(default: the config\'s init.checkpoint)')
    cli.add_verbose_arg(parser)
    args = parser.parse_args()
    cli.apply_verbose(args)
    if args.imagenet:
        lines = _imagenet(parser, args)
    else:
        from fcn import predict_lib
        lines = predict_lib.predict_files(args.model, args.images, args.out)
    from tqdm import tqdm
    for line in lines:
        tqdm.write(line)  # clears the progress bar first: a path never shares its line
        sys.stdout.flush()


def _imagenet(parser, args):
    if not args.config:
        parser.error('--imagenet needs --config (e.g. configs/imagenet.yaml)')
    from fcn import imagenet
    cfg = cli.load(args)
    checkpoint = args.checkpoint or cfg.init.checkpoint
    if not checkpoint:
        parser.error('--imagenet needs --checkpoint or init.checkpoint in the config')
    return imagenet.predict_files(cfg, checkpoint, args.images, args.out)


if __name__ == '__main__':
    cli.run_main(main)
