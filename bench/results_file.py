"""Writing a benchmark's results: the numbers plus the machine they were taken on."""
import json
import os
import platform


def machine_info():
    """What a reader needs to compare runs: cores, load while measuring, versions."""
    import tensorflow as tf
    return {'cpu_count': os.cpu_count(), 'load_average_1min': round(os.getloadavg()[0], 2),
            'machine': platform.machine(), 'python': platform.python_version(),
            'tensorflow': tf.__version__}


def write_results(path, result):
    """Adds machine_info() to `result`, writes it to `path` as JSON and prints it."""
    result = dict(result, **machine_info())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
