"""Session hooks for training: a log line with speed and ETA, a non-finite loss guard, summaries
that include the final step, and the end of training on a stop signal (fcn.stopping)."""
import math
import threading
import time

from fcn.compat import tf1


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the run stops before any checkpoint of it is written."""


class TrainingMonitor(tf1.train.SessionRunHook):
    """Checks every step's loss and logs step, loss, images/s and time left: the first step at
    once (its time includes filling the input queues), then every `every_n_steps`.

    Placed before the checkpoint hook, it raises before a diverged model is saved, so
    the last good checkpoint stays the latest. `step_after_update` must read the global
    step after the train op ran (a control dependency), so the step logged is exact.
    """

    def __init__(self, loss, step_after_update, learning_rate, last_step, batch_size, every_n_steps, log=print):
        self._fetches = {'loss': loss, 'step': step_after_update, 'lr': learning_rate}
        self._last_step = last_step
        self._batch_size = batch_size
        self._every = max(1, every_n_steps)
        self._log = log
        self._window_start = None
        self._first_start = None

    def before_run(self, run_context):
        if self._window_start is None and self._first_start is None:
            self._first_start = time.time()
        return tf1.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        values = run_values.results
        step = int(values['step'])
        if not math.isfinite(float(values['loss'])):
            raise NonFiniteLossError('loss is %s at step %d: training stopped; the last good checkpoint is '
                                     'kept (lower train.learning_rate or check the labels)' % (values['loss'], step))
        now = time.time()
        if self._window_start is None:  # this process's first step: logged at once
            self._window_start = (self._first_start, step - 1)
            self._log(self._line(step, float(values['loss']), float(values['lr']), now))
        elif step % self._every == 0:
            self._log(self._line(step, float(values['loss']), float(values['lr']), now))

    def _line(self, step, loss, lr, now):
        start_time, start_step = self._window_start
        seconds_per_step = (now - start_time) / max(1, step - start_step)
        self._window_start = (now, step)
        remaining = max(0, self._last_step - step) * seconds_per_step
        return 'step %d/%d  loss %.4f  lr %.3g  %.1f img/s  %.2f s/step  eta %s' % (
            step, self._last_step, loss, lr, self._batch_size / max(seconds_per_step, 1e-9),
            seconds_per_step, format_duration(remaining))


def format_duration(seconds):
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return '%d:%02d:%02d' % (hours, minutes, secs)


class SummarySaverHook(tf1.train.SummarySaverHook):
    """TensorFlow's summary hook (every `save_steps` steps, from the first) that also writes the
    summaries of `last_step`: a 1000-step run at every 50 writes 1, 51, ..., 951 and 1000."""

    def __init__(self, last_step, **kwargs):
        super().__init__(**kwargs)
        self._last_step = last_step

    def before_run(self, run_context):
        args = super().before_run(run_context)
        if not self._request_summary and self._next_step is not None and self._next_step >= self._last_step:
            self._request_summary = True
            summary_op = self._get_summary_op()
            if summary_op is not None:
                args.fetches['summary'] = summary_op
        return args


class StopOnSignal(tf1.train.SessionRunHook):
    """Ends training after the step in which a stop signal arrived (`signals`: an active
    fcn.stopping.StopSignals): the session then closes, and the checkpoint hook's `end`
    saves that step. `stopping` is set once it asked the session to stop; `step_started`
    is the time the step in flight began (None between steps)."""

    def __init__(self, signals):
        self.signals = signals
        self.stopping = threading.Event()
        self.step_started = None

    def before_run(self, run_context):
        self.step_started = time.monotonic()

    def after_run(self, run_context, run_values):
        self.step_started = None
        if self.signals.signum is not None:
            self.stopping.set()
            run_context.request_stop()
