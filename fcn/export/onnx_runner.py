"""Runs an ONNX model written by export.py on ONNX Runtime; imports no TensorFlow (deploy with
onnxruntime, numpy and this package: README "Deploy without TensorFlow")."""
from fcn.export import common
from fcn.export.common import INPUT_NAME, OUTPUT_NAME

EXTRA = 'onnx'
INPUT = INPUT_NAME + ':0'
OUTPUT = OUTPUT_NAME + ':0'


class OnnxModel:
    """Loads model.onnx (+ model.json) once; `predict(rgb_uint8 [H, W, 3])` -> int32 class ids [H, W]."""

    def __init__(self, path, num_threads=None):
        ort = common.require('onnxruntime', EXTRA)
        common.check_model_file(path, 'export.py --format onnx')
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        except Exception as e:
            raise ValueError('%s is not an ONNX model ONNX Runtime can load: %s' % (path, e)) from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT] or outputs != [OUTPUT]:
            raise ValueError('%s takes %s and returns %s, not %s -> %s: was it written by export.py?'
                             % (path, inputs, outputs, INPUT, OUTPUT))
        self.labels = common.read_sidecar(path)

    def predict(self, image_rgb):
        image = common.check_image(image_rgb)
        return self.session.run([OUTPUT], {INPUT: image[None]})[0][0]

    def close(self):
        self.session = None
