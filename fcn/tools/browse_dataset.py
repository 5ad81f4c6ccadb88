"""Look at what the network is fed: python browse_dataset.py --config CONFIG [--split train] [--augment] [--num 16] --out DIR

Writes one PNG per sample to DIR (NNN_<record filename>.png): the image, its label in the
palette's colours (void in the void colour) and their overlay with a legend, side by side, under a
title naming the record. With --augment, after the training augmentation and crop (the function
training feeds its batches with), so a padded or mis-scaled label shows."""
from fcn import cli


def main():
    parser = cli.config_parser(__doc__)
    parser.add_argument('--split', help='the split to read (default: data.train_split)')
    parser.add_argument('--augment', action='store_true', help='apply the training augmentation and crop')
    parser.add_argument('--num', type=int, default=16, help='samples to write (default 16)')
    parser.add_argument('--out', required=True, help='folder for the PNGs')
    args = parser.parse_args()
    if args.num < 1:
        parser.error('--num must be at least 1, got %d' % args.num)
    cfg = cli.load(args)
    from fcn import browse
    browse.browse(cfg, args.out, split=args.split, augment=args.augment, num=args.num)


def run():
    """The console script fcn-browse-dataset."""
    cli.run_main(main)
