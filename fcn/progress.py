"""Progress bars that suit where the output goes.

On a terminal, tqdm's bar redraws its line in place (carriage returns). In a log file (a
Slurm job's output, `kubectl logs`, `train.py ... > log`) those redraws pile up as one
unreadable line, so there the bar becomes a plain line every LOG_INTERVAL_SECS seconds and
one at the end, each ending in a newline, in ASCII:

    eval step 2000:  41%|####1     | 594/1449 [00:30<00:43, 19.7img/s]
"""
import sys

from tqdm import tqdm

LOG_INTERVAL_SECS = 30.0
LOG_COLUMNS = 100


class LogLines:
    """A stream for tqdm that turns each redraw (a carriage return) into a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        for part in text.replace('\n', '\r').split('\r'):
            if part.strip():
                self.stream.write(part.rstrip() + '\n')

    def flush(self):
        self.stream.flush()


def bar(total, desc, unit='img', enabled=True, stream=None, scale=False, initial=0):
    """A tqdm bar of `total` items on `stream` (default: stderr), or a disabled one.
    scale: show k/M/G multiples (bytes: 1024); initial: items already done (a resumed download)."""
    stream = sys.stderr if stream is None else stream
    options = dict(total=total, desc=desc, unit=unit, disable=not enabled, initial=initial)
    if scale:
        options.update(unit_scale=True, unit_divisor=1024)
    if _is_terminal(stream):
        return tqdm(file=stream, dynamic_ncols=True, **options)
    return tqdm(file=LogLines(stream), ascii=True, ncols=LOG_COLUMNS, mininterval=LOG_INTERVAL_SECS,
                maxinterval=LOG_INTERVAL_SECS, **options)


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
