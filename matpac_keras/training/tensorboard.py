"""TensorBoard scalars with `tf.summary.write` (TensorFlow-only; importing it needs TensorFlow).

Used under every Keras backend: unlike `keras.callbacks.TensorBoard`, it writes at the run's
global step, so a resumed run continues its curves instead of restarting them at 0. It writes
the scalar plugin's event format with TensorFlow's own ops, so the `tensorboard` package is
needed only to view the events, not to write them.
"""

import contextlib
import errno
import os

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


class TensorBoardWriter:
    """Writes `{name: value}` scalars at a given step to an event file in `logdir`."""

    def __init__(self, logdir: str | os.PathLike):
        if keras.backend.backend() != "tensorflow":
            try:  # summaries need no accelerator: keep TensorFlow off the GPUs JAX/torch use
                tf.config.set_visible_devices([], "GPU")
            except RuntimeError:  # TensorFlow has initialised its devices already
                pass
        self.logdir = os.fspath(logdir)
        self._writer = tf.summary.create_file_writer(self.logdir)

    def write(self, step: int, values: dict[str, float]) -> None:
        """Raises OSError naming the folder where the events file cannot be written (TensorFlow
        raises ResourceExhaustedError for a full disk)."""
        with self._write_errors():
            with self._writer.as_default():
                for name, value in values.items():
                    tf.summary.write(
                        name,
                        tf.constant(float(value), tf.float32),
                        step=int(step),
                        metadata=_SCALAR_METADATA,
                    )
            self._writer.flush()

    def close(self) -> None:
        """Closes the events file (once, even if its last flush fails: OSError as `write`)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with self._write_errors():
                writer.close()

    @contextlib.contextmanager
    def _write_errors(self):
        """TensorFlow's error of a failed write as an OSError naming the folder: ENOSPC for a
        full disk (ResourceExhaustedError), EIO for any other."""
        try:
            yield
        except tf.errors.OpError as error:
            code = (
                errno.ENOSPC if isinstance(error, tf.errors.ResourceExhaustedError) else errno.EIO
            )
            raise OSError(code, os.strerror(code), self.logdir) from error
