"""Evaluate an FCN: python eval.py --config configs/voc.yaml [--checkpoint PATH] [--once]

Without --once, waits for each new checkpoint in train.run_dir and evaluates it, until
the final training step (or eval.max_evals / eval.timeout_secs)."""
from fcn import cli


def main():
    parser = cli.config_parser(__doc__)
    parser.add_argument('--checkpoint', help='checkpoint prefix or folder (default: latest in train.run_dir)')
    parser.add_argument('--once', action='store_true', help='evaluate one checkpoint and exit')
    args = parser.parse_args()
    cfg = cli.load(args)
    from fcn import eval_lib
    if args.once or args.checkpoint:
        eval_lib.evaluate_once(cfg, args.checkpoint)
    else:
        eval_lib.evaluate_loop(cfg)


if __name__ == '__main__':
    cli.run_main(main)
