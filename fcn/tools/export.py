"""Export a trained model: python export.py --config configs/voc.yaml [--checkpoint PATH] [--format F] --out PATH

Formats (--format, default frozen):
  frozen       model.pb: input ImageTensor:0 (uint8 [1, H, W, 3]), output SemanticPredictions:0
               (int32 [1, H, W]); class names and palette next to it (model.json)
  saved_model  a SavedModel folder for TF Serving (e.g. --out export/voc/1): signature
               serving_default (uint8 images [1, H, W, 3] -> class_ids) and encoded_image (JPEG/PNG
               bytes -> class_ids); class names and palette in assets/labels.json
  onnx         model.onnx for ONNX Runtime (pip install -e ".[onnx]")
  tflite       model.tflite at a fixed --input_size H W [--quantize none|float16|dynamic]
eval.scales and eval.flip are in every format's graph, eval.tile_size in the frozen graph's and
the SavedModel's, so these predict what eval.py measured.

The run is the truth: the run owning the checkpoint (train.run_dir, or the run dir --checkpoint
points into) decides every run-bound key (model.*, classes, train.ema_decay; fcn/run.py) from its
config.yaml. A run trained with train.ema_decay > 0 is exported with its moving averages
(eval.moving_averages: false exports the raw weights); the first line says which."""
import argparse

from fcn import cli
from fcn.export import FORMATS, check_options  # the table of formats (no TensorFlow import for --help)
from fcn.export.common import QUANTIZATIONS


def main():
    parser = cli.config_parser(__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('--checkpoint', help='checkpoint prefix or folder (default: latest in train.run_dir)')
    parser.add_argument('--format', default='frozen', choices=FORMATS, help='what to write (default: frozen)')
    parser.add_argument('--input_size', type=int, nargs=2, metavar=('H', 'W'),
                        help='tflite: the fixed input height and width')
    parser.add_argument('--quantize', choices=QUANTIZATIONS, help='tflite: weight quantisation (default: none)')
    parser.add_argument('--out', required=True, help='file (frozen, onnx, tflite) or folder (saved_model) to write')
    args = parser.parse_args()
    try:
        options = check_options(args.format, input_size=args.input_size, quantize=args.quantize)
    except ValueError as e:
        parser.error(str(e))
    cfg = cli.load(args)
    from fcn import export
    size = export.export(args.format, cfg, args.checkpoint, args.out, **options)
    print('exported %s (%s, %.1f MB)' % (args.out, args.format, size / 1e6))


def run():
    """The console script fcn-export."""
    cli.run_main(main)
