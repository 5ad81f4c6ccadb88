"""Segment images with an exported model: python predict.py --model MODEL --out out/ a.jpg photos/ ...

MODEL is anything export.py writes: a frozen graph (model.pb), a SavedModel folder
(export/voc/1), model.onnx or model.tflite. Inputs are image files and folders (their
JPEG/PNG/BMP/GIF images, sorted). Writes, per image, NAME.png (palette PNG of class ids) and
NAME_overlay.png (colours over the image, with a legend naming the classes present); two
inputs with the same name (a.jpg, a.png) get a_jpg.png and a_png.png. Images are decoded as
the records are (TensorFlow), so a JPEG gets the class ids eval.py measured. An existing file
is never replaced unless --overwrite, and an input image never is.

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
    mode.add_argument('--model', help='model written by export.py: .pb, SavedModel folder, .onnx or .tflite')
    mode.add_argument('--imagenet', action='store_true', help='classify with a VGG-16 checkpoint (1000 classes)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--overwrite', action='store_true', help='replace earlier results in --out')
    parser.add_argument('--ignore_exif_orientation', action='store_true',
                        help='segment the raw pixels of JPEGs with an EXIF orientation instead of turning them '
                             'upright (for a model trained on records built with --ignore_exif_orientation)')
    parser.add_argument('images', nargs='+', help='image files and folders')
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
        lines = predict_lib.predict_files(args.model, args.images, args.out, overwrite=args.overwrite,
                                          upright=not args.ignore_exif_orientation)
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


def run():
    """The console script fcn-predict."""
    cli.run_main(main)
