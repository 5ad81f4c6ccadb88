"""Reads a PyTorch `.pth` state dict into an `.npz`: python pth_child.py IN.pth OUT.npz

Run by fcn.convert.torchvision in a process of its own: PyTorch and TensorFlow imported into one
process can crash (PyPI's torch 2.14 CUDA build after TensorFlow 2.21: a segmentation fault),
so this script imports torch and numpy only, nothing of fcn, and may run under another Python
(convert_weights.py --torch-python).

A `.pth` is a pickle and a pickle can run code: `torch.load(weights_only=True)` unpickles
tensors and plain containers only. A file that needs more is refused, not loaded.

Exit 0 on success; on a known failure exit 3 with one line `KIND: message` on stderr, KIND one of
`no-torch`, `unsafe`, `unreadable`, `not-a-state-dict`.
"""
import sys

FAILED = 3


def fail(kind, message):
    sys.stderr.write('%s: %s\n' % (kind, ' '.join(str(message).split())))
    sys.exit(FAILED)


BOILERPLATE = ('Weights only load failed', 'Please file an issue', 'Check the documentation')


def unpickler_reason(error):
    """What torch's weights_only error says it refused ("Unsupported global: GLOBAL ...", "Trying
    to load unsupported GLOBAL posix.system ..."), without its advice paragraphs."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(BOILERPLATE)]
    return (reasons or lines or [type(error).__name__])[0].split(' Please use ')[0]  # not its allowlist advice


def load(path):
    try:
        import torch
    except ImportError as e:
        fail('no-torch', e)
    import pickle
    try:
        return torch, torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        reason = unpickler_reason(e)
        # an opcode the weights_only unpickler lacks: not a pickle torch.save writes (or no pickle)
        fail('unreadable' if reason.startswith('Unsupported operand') else 'unsafe', reason)
    except Exception as e:  # not a zip or legacy pickle, truncated, ...
        fail('unreadable', str(e).splitlines()[0] if str(e) else type(e).__name__)


def main(in_path, out_path):
    torch, state = load(in_path)
    import numpy as np
    if not isinstance(state, dict):
        fail('not-a-state-dict', 'it holds a %s, not a dict of tensors' % type(state).__name__)
    arrays = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            fail('not-a-state-dict', 'key %r holds a %s, not a tensor' % (name, type(value).__name__))
        arrays[str(name)] = value.detach().to(torch.float32).numpy()
    np.savez(out_path, **arrays)


if __name__ == '__main__':
    main(*sys.argv[1:3])
