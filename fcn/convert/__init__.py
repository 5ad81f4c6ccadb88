"""VGG-16 weights from torchvision (`.pth` state dict) and Keras (`.h5` / `.weights.h5`) as a
TensorFlow checkpoint under TF-Slim's `vgg_16` names (convert_weights.py).

- `vgg16`: the target (vgg_16.ckpt's names and shapes) and the checks of a source's keys.
- `fold`: each source's input convention folded into conv1_1, so the result takes vgg_16.ckpt's
  input (RGB 0-255 minus `fcn.nets.vgg.MEAN_RGB`).
- `torchvision`, `keras`: the two sources' layouts; `pth_child`: the script that reads a `.pth`
  in a process of its own, without TensorFlow.
- `checkpoint`: writes the result (TensorFlow's V2 format); `main`: the command.
"""
