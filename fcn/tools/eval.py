"""Evaluate an FCN: python eval.py --config configs/voc.yaml [--checkpoint PATH] [--once]

Without --once (and without --checkpoint or eval.checkpoint: those are evaluated once), waits
for each new checkpoint in train.run_dir and evaluates it, until the final training step (or
--max_evals / --timeout_secs, default eval.max_evals / eval.timeout_secs). Each new best mIoU is copied to RUN_DIR/best (best.json names it).
--save_predictions (or eval.save_predictions: true) also writes a palette PNG of class ids per
image, named after the record's filename, to RUN_DIR/eval/predictions-STEP/.
--per_image (or eval.per_image: true) also writes each image's pixel accuracy, mIoU and per-class
IoU to RUN_DIR/eval/per_image-STEP.csv, worst mIoU first.

The run is the truth: every run-bound key (model.*, the classes, train.ema_decay; fcn/run.py)
comes from RUN_DIR/config.yaml, whatever --config names; a --set that disagrees is an error.
A run trained with train.ema_decay > 0 is evaluated with its moving averages (eval.moving_averages:
false: the raw weights); the first line says which. A --checkpoint (or eval.checkpoint) inside
another run dir is evaluated as that run, and its results go to that run's eval/."""
from fcn import cli


def main():
    parser = cli.config_parser(__doc__)
    parser.add_argument('--checkpoint', help='checkpoint prefix or folder (default: latest in train.run_dir); '
                                                   'in another run dir: evaluated as that run')
    parser.add_argument('--once', action='store_true', help='evaluate one checkpoint and exit')
    parser.add_argument('--max_evals', type=int, help='loop: stop after N evaluations (overrides eval.max_evals)')
    parser.add_argument('--timeout_secs', type=float,
                        help='loop: stop after S seconds without a new checkpoint (overrides eval.timeout_secs)')
    parser.add_argument('--save_predictions', action='store_true',
                        help='write a palette PNG of class ids per image to RUN_DIR/eval/predictions-STEP/')
    parser.add_argument('--per_image', action='store_true',
                        help='write each image\'s scores to RUN_DIR/eval/per_image-STEP.csv, worst mIoU first')
    args = parser.parse_args()
    cfg = cli.load(args)
    if args.save_predictions:
        cfg.eval.save_predictions = True
    if args.per_image:
        cfg.eval.per_image = True
    from fcn import eval_lib
    if args.once or args.checkpoint or cfg.eval.checkpoint:  # a named checkpoint is evaluated once
        eval_lib.evaluate_once(cfg, args.checkpoint)
    else:
        eval_lib.evaluate_loop(cfg, max_evals=args.max_evals, timeout_secs=args.timeout_secs)


def run():
    """The console script fcn-eval."""
    cli.run_main(main)
