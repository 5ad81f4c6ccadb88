"""The networks: vgg (the trunk, TF-Slim's scopes), fcn (the 32s/16s/8s heads), upsample."""

# VGG-16's input normalisation (RGB minus this mean), here without a TensorFlow import: the
# TFLite runner pads images with it where no TensorFlow is installed.
MEAN_RGB = (123.68, 116.78, 103.94)
