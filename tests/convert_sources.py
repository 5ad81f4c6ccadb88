"""Files written by the real libraries for tests/test_convert_weights.py, and their forward passes.

Run as a script under the Python that has the library (torchvision's venv, TensorFlow 2.15's,
this one for Keras 3), never imported by the tests: PyTorch and TensorFlow stay out of the
test process. Imports nothing of fcn.

  python convert_sources.py torchvision OUT.pth IMAGE.npy LOGITS.npy
  python convert_sources.py keras3 OUT.weights.h5 IMAGE.npy LOGITS.npy WEIGHTS.npz
  python convert_sources.py keras2 OUT.h5 WEIGHTS.npz [WHOLE_MODEL.h5]
  python convert_sources.py torch-bad-files FOLDER
  python convert_sources.py keras-bad-files FOLDER

IMAGE.npy is uint8 RGB [224, 224, 3]; each library prepares it its own way (torchvision's
preset transforms' mean and std, Keras's vgg16.preprocess_input) and LOGITS.npy gets fc8's 1000
outputs (no softmax). Weights are random (weights=None), seeded.
"""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')


def torchvision_vgg16(out, image_path, logits_path):
    import numpy as np
    import torch
    import torchvision
    from torchvision.transforms import functional
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    torch.save(model.state_dict(), out)
    preset = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()  # the mean and std it was trained with
    image = functional.normalize(functional.to_tensor(np.load(image_path)), preset.mean, preset.std)
    with torch.no_grad():
        np.save(logits_path, model(image[None])[0].numpy())


def keras3_vgg16(out, image_path, logits_path, weights_path):
    import keras
    import numpy as np
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(weights=None, classifier_activation=None)
    model.save_weights(out)
    inputs = keras.applications.vgg16.preprocess_input(np.load(image_path).astype(np.float32)[None])
    np.save(logits_path, model.predict(inputs, verbose=0)[0])
    np.savez(weights_path, *model.get_weights())


def keras2_vgg16(out, weights_path, whole_model=None):
    """TensorFlow 2.15's Keras 2 VGG16 holding the weights of `weights_path`, saved as .h5 by
    save_weights (and, with `whole_model`, by model.save: the weights under model_weights)."""
    import numpy as np
    from tensorflow import keras
    model = keras.applications.VGG16(weights=None, classifier_activation=None)
    with np.load(weights_path) as weights:
        model.set_weights([weights['arr_%d' % i] for i in range(len(weights.files))])
    model.save_weights(out)
    if whole_model:
        model.save(whole_model)


class RunsCode:
    """Unpickling this runs a shell command (what weights_only=True must refuse)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ('touch %s' % self.marker,)


def torch_bad_files(folder):
    import torch
    conv1_1 = {'features.0.weight': torch.zeros(64, 3, 3, 3)}
    files = {
        'missing_bias.pth': conv1_1,
        'misshaped.pth': dict(conv1_1, **{'features.0.bias': torch.zeros(32)}),
        'whole_module.pth': torch.nn.Conv2d(3, 64, 3),
        'list.pth': [torch.zeros(3)],
        'with_epoch.pth': {'epoch': 3},
        'runs_code.pth': {'features.0.weight': RunsCode(os.path.join(folder, 'code_ran'))},
    }
    for name, value in files.items():
        torch.save(value, os.path.join(folder, name))


def keras_bad_files(folder):
    import keras
    keras.applications.VGG16(weights=None, include_top=False).save_weights(os.path.join(folder, 'notop.weights.h5'))
    inputs = keras.Input((32, 32, 3))
    narrow = keras.layers.Conv2D(32, 3, padding='same', name='block1_conv1')(inputs)
    keras.Model(inputs, narrow).save_weights(os.path.join(folder, 'narrow.weights.h5'))


COMMANDS = {'torchvision': torchvision_vgg16, 'keras3': keras3_vgg16, 'keras2': keras2_vgg16,
            'torch-bad-files': torch_bad_files, 'keras-bad-files': keras_bad_files}

if __name__ == '__main__':
    COMMANDS[sys.argv[1]](*sys.argv[2:])
