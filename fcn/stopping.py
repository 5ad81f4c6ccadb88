"""Stopping a job on a signal, keeping the step reached (no TensorFlow import).

SIGTERM is what `scancel`, a preemption, a time limit (Slurm), `kubectl delete` and
fcn.launch send; SIGUSR1 is the early warning a Slurm job asks for (`--signal=USR1@SECS`).
While a `StopSignals` is active both are caught instead of killing the process:

- the chief (or a single process) finishes the step it is in, writes a checkpoint of it,
  releases the run lock, writes `cluster.done` (the ps tasks then stop serving) and ends with
  `Stopped`: `stopped by SIGTERM at step N: checkpoint RUN_DIR/model.ckpt-N kept`, exit status
  128 + the signal number (143 for SIGTERM, 138 for SIGUSR1; the shell's and Kubernetes'
  "ended by that signal", which the TFJob ExitCode restart policy treats as retryable);
- another worker keeps training until the chief is done (with synchronous replicas the
  chief's last step needs its gradient), then exits 0;
- a ps task keeps serving the variables until the chief is done (the checkpoint is read
  from it), then exits 0.

Slurm signals every task of a step at once, so each of these runs in parallel. When what a
task waits for does not come (the chief's step blocked by a worker that is gone; a chief that
never writes `cluster.done`), it gives up after a grace period and exits 128 + the signal,
naming the last checkpoint on disk.

The signal handler only records the signal: a checkpoint being written when it lands is
finished, never cut off. Python runs signal handlers in the main thread only between two
bytecodes, which a thread blocked in a TensorFlow session never reaches, so the signal is
also read from `signal.set_wakeup_fd` by a watcher thread, which runs the callbacks.
"""
import os
import signal
import socket
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
CHIEF_STEP_GRACE_SECS = 20  # the chief's step in flight may take this long after the signal
WAIT_FOR_CHIEF_SECS = 60  # a ps or worker waits this long for the chief's cluster.done
POLL_SECS = 0.25


def exit_status(signum):
    """The exit status of a process stopped by `signum`: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum):
    return signal.Signals(signum).name


class Stopped(Exception):
    """Training was stopped by a signal; the message says what is kept (printed by fcn.cli,
    which exits with `exit_status`)."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_status = exit_status(signum)


class StopSignals:
    """Catches STOP_SIGNALS while active (`with StopSignals() as signals:`).

    `signum` is the first stop signal received (None before); `event` is set then.
    `on_stop(fn)` runs `fn(signum)` in a thread of its own once a signal arrives.
    Outside the main thread (where handlers cannot be installed) it catches nothing.
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.signum = None
        self.received_at = None
        self.event = threading.Event()
        self._callbacks = []
        self._lock = threading.Lock()
        self._previous = {}
        self._previous_wakeup = None
        self._sockets = None

    @property
    def name(self):
        return None if self.signum is None else signal_name(self.signum)

    def on_stop(self, callback):
        self._callbacks.append(callback)
        if self.signum is not None:
            self._start(callback)

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)
        reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._sockets = (reader, writer)
        self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(reader,), name='fcn-stop-signals', daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self._sockets is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        for sock in self._sockets:
            sock.close()
        self._sockets = None

    def _handler(self, signum, frame):
        self.note(signum)

    def _watch(self, reader):
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in self.signals:
                    self.note(signum)

    def note(self, signum):
        """Records a stop signal (the first one counts) and starts the callbacks."""
        with self._lock:
            if self.signum is not None:
                return
            self.signum = signum
            self.received_at = time.monotonic()
        self.event.set()
        for callback in self._callbacks:
            self._start(callback)

    def _start(self, callback):
        threading.Thread(target=callback, args=(self.signum,), name='fcn-on-stop', daemon=True).start()


def exit_now(message, status):
    """Prints `message` and ends the process at once: from a watcher thread while the main
    thread is blocked in a session run that will not return."""
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


def wait_for(condition, timeout, poll_secs=POLL_SECS):
    """True once `condition()` holds, False after `timeout` seconds without it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_secs)
    return True


def end_with_the_chief(done_path, since, who):
    """The stop callback of a ps task or a worker that is not the chief: waits for the chief's
    `cluster.done` (written after its checkpoint) and exits 0, or exits 128 + the signal
    after WAIT_FOR_CHIEF_SECS without it."""
    from fcn.cluster.done import written_since

    def end(signum):
        if wait_for(lambda: written_since(done_path, since), WAIT_FOR_CHIEF_SECS):
            exit_now('%s: stopped by %s once the chief was done' % (who, signal_name(signum)), 0)
        exit_now('%s stopped by %s: the chief did not write %s within %d s' % (
            who, signal_name(signum), done_path, WAIT_FOR_CHIEF_SECS), exit_status(signum))
    return end


def abandon_if_step_hangs(signals, stop_hook, abandon, grace_secs=CHIEF_STEP_GRACE_SECS):
    """The chief's stop callback: returns once `stop_hook` (fcn.hooks.StopOnSignal) has
    asked the session to stop; calls `abandon(signum)` instead when a step has been in
    flight for `grace_secs` since the signal (with synchronous replicas it waits for a
    gradient from a worker that may be gone), which never happens during the start-up."""
    def watch(signum):
        while not stop_hook.stopping.wait(POLL_SECS):
            started = stop_hook.step_started
            if started is not None and time.monotonic() - max(started, signals.received_at) > grace_secs:
                abandon(signum)
                return
    return watch
