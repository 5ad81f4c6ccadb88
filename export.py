"""Export a frozen graph: python export.py --config configs/voc.yaml [--checkpoint PATH] --out model.pb

Input ImageTensor:0 (uint8 [1, H, W, 3]); output SemanticPredictions:0 (int32 [1, H, W]).
Class names and palette are written next to it (model.json)."""
from fcn import cli


def main():
    parser = cli.config_parser(__doc__)
    parser.add_argument('--checkpoint', help='checkpoint prefix or folder (default: latest in train.run_dir)')
    parser.add_argument('--out', required=True, help='path of the frozen GraphDef to write')
    args = parser.parse_args()
    cfg = cli.load(args)
    from fcn import eval_lib, export_lib
    checkpoint = eval_lib.resolve_checkpoint(cfg, args.checkpoint)
    size = export_lib.export(cfg, checkpoint, args.out)
    print('exported %s (%.1f MB) from %s' % (args.out, size / 1e6, checkpoint))


if __name__ == '__main__':
    cli.run_main(main)
