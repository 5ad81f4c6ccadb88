"""fcn.progress: a redrawn bar on a terminal (a real pty), whole lines in a log file."""
import fcntl
import io
import os
import pty
import re
import select
import struct
import termios

from fcn import progress


def _count_to(total, stream, monkeypatch, interval=0.0):
    monkeypatch.setattr(progress, 'LOG_INTERVAL_SECS', interval)
    with progress.bar(total, 'eval step 7', stream=stream) as bar:
        for _ in range(total):
            bar.update(1)


def test_in_a_log_every_update_is_a_line_of_its_own(monkeypatch):
    log = io.StringIO()
    _count_to(3, log, monkeypatch)
    text = log.getvalue()
    assert '\r' not in text and text.endswith('\n')
    lines = text.splitlines()
    assert lines[0].startswith('eval step 7:   0%|') and '| 0/3 ' in lines[0]
    assert re.match(r'eval step 7: 100%\|#+\| 3/3 \[', lines[-1]), lines
    assert all(line.isascii() and len(line) <= progress.LOG_COLUMNS for line in lines)


def test_in_a_log_a_line_at_most_every_interval(monkeypatch):
    log = io.StringIO()
    _count_to(500, log, monkeypatch, interval=30.0)
    assert len(log.getvalue().splitlines()) == 2  # the start and the end of a pass under 30 s


def test_on_a_terminal_the_bar_redraws_its_line(monkeypatch):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))  # an 80-column terminal
    try:
        with os.fdopen(follower, 'w', closefd=False) as terminal:
            _count_to(3, terminal, monkeypatch)
        shown = _read_all(leader)
    finally:
        os.close(leader)
        os.close(follower)
    assert '\r' in shown  # tqdm's in-place redraws
    assert shown.replace('\r\n', '\n').rstrip('\n').count('\n') == 0  # all on one line
    assert '3/3' in shown


def _read_all(leader):
    """Everything written to the terminal so far: one os.read may return part of it."""
    chunks = []
    while select.select([leader], [], [], 0.5)[0]:
        chunk = os.read(leader, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b''.join(chunks).decode()


def test_disabled_writes_nothing(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress, 'LOG_INTERVAL_SECS', 0.0)
    with progress.bar(3, 'x', enabled=False, stream=log) as bar:
        bar.update(3)
    assert log.getvalue() == ''
