"""Segment images with an exported model: python predict.py --model model.pb --out out/ a.jpg b.png ...

Writes, per image, NAME.png (palette PNG of class ids) and NAME_overlay.png (colours over
the image, with a legend naming the classes present)."""
import argparse

from fcn import cli


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--model', required=True, help='frozen graph written by export.py')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('images', nargs='+', help='image files')
    args = parser.parse_args()
    from fcn import predict_lib
    for written in predict_lib.predict_files(args.model, args.images, args.out):
        print(written)


if __name__ == '__main__':
    cli.run_main(main)
