"""Export a trained model: python export.py --config configs/voc.yaml [--checkpoint PATH] --out model.pb

  --format frozen (default)  frozen GraphDef: ImageTensor:0 (uint8 [1, H, W, 3], any H, W)
                             -> SemanticPredictions:0 (int32 [1, H, W])
  --format onnx              the same graph as ONNX (any H, W); needs pip install -e ".[onnx]"
  --format tflite --input_size H W [--quantize none|float16|dynamic]
                             TFLite at a fixed input size (float32 weights, or quantised)

Class names and palette are written next to the model (model.json)."""
import argparse

from fcn import cli

FORMATS = ('frozen', 'onnx', 'tflite')
QUANTIZATIONS = ('none', 'float16', 'dynamic')  # = fcn.export.tflite.QUANTIZATIONS (no TF import here)


def main():
    parser = cli.config_parser(__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('--checkpoint', help='checkpoint prefix or folder (default: latest in train.run_dir)')
    parser.add_argument('--out', required=True, help='path of the model file to write')
    parser.add_argument('--format', choices=FORMATS, default='frozen', help='model format (default: frozen)')
    parser.add_argument('--input_size', type=int, nargs=2, metavar=('HEIGHT', 'WIDTH'),
                        help='TFLite only: the fixed input size')
    parser.add_argument('--quantize', choices=QUANTIZATIONS, default='none',
                        help='TFLite only: weight quantisation (default: none, float32)')
    args = parser.parse_args()
    if args.format == 'tflite' and not args.input_size:
        parser.error('--format tflite needs --input_size HEIGHT WIDTH')
    if args.format != 'tflite' and (args.input_size or args.quantize != 'none'):
        parser.error('--input_size and --quantize apply to --format tflite only')
    cfg = cli.load(args)
    from fcn import eval_lib
    checkpoint = eval_lib.resolve_checkpoint(cfg, args.checkpoint)
    size = _export(cfg, checkpoint, args)
    print('exported %s (%.1f MB) from %s' % (args.out, size / 1e6, checkpoint))


def _export(cfg, checkpoint, args):
    if args.format == 'frozen':
        from fcn import export_lib
        return export_lib.export(cfg, checkpoint, args.out)
    if args.format == 'onnx':
        from fcn.export import onnx
        return onnx.from_checkpoint(cfg, checkpoint, args.out)
    from fcn.export import tflite
    return tflite.from_checkpoint(cfg, checkpoint, args.out, args.input_size, args.quantize)


if __name__ == '__main__':
    cli.run_main(main)
