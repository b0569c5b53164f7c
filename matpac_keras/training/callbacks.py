"""The training loop's bookkeeping as one Keras callback: logs, checkpoints, divergence stop.

The pretrainer logs running means since the last reset; this callback writes them every
`log_every` global steps and then resets them, so each row is the mean over its window.
Under JAX, reading `self.model` synchronises the whole training state from the devices, so it
is only done when a row is written, a checkpoint saved or the run stopped.
"""

import math
import sys
import time
from collections.abc import Callable

import keras
from absl import logging

from matpac_keras.errors import InputError
from matpac_keras.training.checkpoint import NonFiniteStateError, save_checkpoint
from matpac_keras.training.metrics_log import MetricsWriter

_WATCHED = ("loss", "grad_norm")  # a non-finite value of these stops the run
# What the progress bar shows; every metric goes to metrics.jsonl and TensorBoard.
PROGRESS_METRICS = ("loss", "loss_cls", "loss_pred", "lr")


def check_intervals(log_every: int, checkpoint_every: int, prefix: str = "config.train.") -> None:
    """InputError unless `checkpoint_every` is a multiple of `log_every`, so that a resumed run
    logs the same windows as an uninterrupted one (`prefix`: where the fields are)."""
    if checkpoint_every % log_every:
        raise InputError(
            f"{prefix}checkpoint_every={checkpoint_every} must be a multiple of "
            f"{prefix}log_every={log_every} (so that a resumed run logs the same windows as an "
            "uninterrupted one)"
        )


class TrainingProgress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, showing only `metrics` (default PROGRESS_METRICS) of the logs.

    Args:
        metrics: the log entries shown.
        every: with output that is not a terminal (a log file, a pipe), print one plain line
            every `every` steps (`step/total - s/step - metrics`) instead of the bar, whose
            in-place updates would otherwise all land in the file. None: always the bar.
        interactive: whether the output is a terminal; None reads `sys.stdout.isatty()`.
    """

    def __init__(
        self,
        metrics: tuple[str, ...] = PROGRESS_METRICS,
        every: int | None = None,
        interactive: bool | None = None,
    ):
        super().__init__()
        self.metrics = tuple(metrics)
        self.every = every
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self._started = time.monotonic()

    @property
    def _plain(self) -> bool:
        return bool(self.every) and not self.interactive

    def _shown(self, logs):
        return {name: logs[name] for name in self.metrics if logs and name in logs}

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if not self._plain:
            return super().on_train_batch_end(batch, self._shown(logs))
        step = batch + 1
        if self.verbose == 1 and (step % self.every == 0 or step == self.target):
            per_step = (time.monotonic() - self._started) / step
            values = " - ".join(f"{k}: {float(v):.4g}" for k, v in self._shown(logs).items())
            print(f"{step}/{self.target} - {per_step:.3f} s/step - {values}", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        if not self._plain:
            super().on_epoch_end(epoch, self._shown(logs))


class TrainingMonitor(keras.callbacks.Callback):
    """Writes metrics, saves checkpoints and stops a diverged run, at global steps.

    Args:
        workdir: the run's directory.
        start_step: global step the run (re)starts from.
        total_steps: the run's last step (a checkpoint is always written there).
        log_every, checkpoint_every: intervals in global steps.
        keep_checkpoints: how many of the newest checkpoints to keep.
        writer: MetricsWriter.
        metadata: callable step -> JSON-serialisable facts stored in that step's checkpoint
            (the config, the data position, ...).

    After `fit`, `failure` holds a message if the run stopped on a non-finite value (no
    checkpoint is written from then on), else None; `last_checkpoint` the newest one written.
    """

    def __init__(
        self,
        workdir: str,
        start_step: int,
        total_steps: int,
        log_every: int,
        checkpoint_every: int,
        keep_checkpoints: int,
        writer: MetricsWriter,
        metadata: Callable[[int], dict],
    ):
        super().__init__()
        self.workdir = workdir
        self.step = start_step
        self.start_step = start_step
        self.total_steps = total_steps
        self.log_every = log_every
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.writer = writer
        self.metadata = metadata
        self.failure = None
        self.last_checkpoint = None
        self._saved_step = start_step

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.start_step + batch + 1
        values = {k: float(v) for k, v in (logs or {}).items()}
        bad = [name for name in _WATCHED if name in values and not math.isfinite(values[name])]
        if bad:
            self.writer.write(self.step, values)  # the diverged step, for the record
            self._stop(f"non-finite {bad[0]} ({values[bad[0]]}) at step {self.step}")
            return
        last = self.step == self.total_steps
        if self.step % self.log_every == 0 or last:
            self.writer.write(self.step, values)
            self.model.reset_metrics()
        if self.step % self.checkpoint_every == 0 or last:
            self._save()

    def on_train_end(self, logs=None):
        if self.failure is None and self._saved_step != self.step:
            self._save()

    def _save(self) -> None:
        try:
            self.last_checkpoint = save_checkpoint(
                self.workdir,
                self.step,
                self.model,
                self.metadata(self.step),
                self.keep_checkpoints,
            )
        except NonFiniteStateError as error:
            self._stop(str(error))
            return
        self._saved_step = self.step
        logging.debug("step %d: wrote %s", self.step, self.last_checkpoint)

    def _stop(self, message: str) -> None:
        self.failure = message
        self.model.stop_training = True
