"""TensorBoard scalars with `tf.summary.write` (TensorFlow-only; importing it needs TensorFlow).

Used under every Keras backend: unlike `keras.callbacks.TensorBoard`, it writes at the run's
global step, so a resumed run continues its curves instead of restarting them at 0. It writes
the scalar plugin's event format with TensorFlow's own ops, so the `tensorboard` package is
needed only to view the events, not to write them.
"""

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
        self._writer = tf.summary.create_file_writer(os.fspath(logdir))

    def write(self, step: int, values: dict[str, float]) -> None:
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
        self._writer.close()
