"""fcn: FCN-32s semantic segmentation training in TensorFlow graph mode with TF-Slim."""
__version__ = "0.1.0"
