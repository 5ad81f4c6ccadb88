"""VGG-16 weights from torchvision or Keras as a TensorFlow checkpoint with TF-Slim's vgg_16 names.

  python convert_weights.py --from torchvision vgg16.pth --out checkpoints/vgg16_torchvision.ckpt
  python convert_weights.py --from keras vgg16.weights.h5 --out checkpoints/vgg16_keras.ckpt

IN is `torch.save(torchvision.models.vgg16().state_dict(), IN)` (read with
torch.load(weights_only=True), in a child process without TensorFlow; needs the `convert` extra
or --torch-python), or `keras.applications.VGG16().save_weights(IN)` (Keras 3 .weights.h5 or
Keras 2 .h5). The source's input convention is folded into conv1_1, so OUT takes what
vgg_16.ckpt takes (RGB 0-255 minus the VGG mean) and gives the source's logits. OUT is a V2
checkpoint prefix (OUT.index + OUT.data-00000-of-00001) for init.checkpoint or
predict.py --imagenet --checkpoint OUT.
"""
import argparse

from fcn import cli


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--from', dest='source', required=True, choices=('torchvision', 'keras'),
                        help='the library that wrote IN')
    parser.add_argument('input', metavar='IN', help='.pth state dict (torchvision) or .h5 / .weights.h5 (keras)')
    parser.add_argument('--out', required=True, help='checkpoint prefix to write, e.g. checkpoints/vgg16.ckpt')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing checkpoint at --out')
    parser.add_argument('--torch-python', help='the Python that reads a .pth (needs PyTorch; default: this one)')
    cli.add_verbose_arg(parser)
    args = parser.parse_args()
    cli.apply_verbose(args)
    from fcn.convert import main as convert
    convert.convert(args.source, args.input, args.out, overwrite=args.overwrite, torch_python=args.torch_python)


if __name__ == '__main__':
    cli.run_main(main)
