"""Pretraining batches from real audio, resumable at any step (TensorFlow-only: tf.data, TFDS).

The stream is a sequence of epochs; epoch `e` is `pretraining_dataset`
(`matpac_keras.data.pretraining`) over the source with its own seed (from the run's seed and
`e`), read in deterministic order. The
number of batches of every finished epoch is recorded, so a global step maps to a data position
(epoch, batch within it), and a resumed run re-creates that epoch and skips its first batches:
it sees the batches an uninterrupted run would have (skipping reads and decodes the clips
already seen in that epoch, but computes no log-mel for them).
"""

import re
from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from matpac_keras.data.dropped import DroppedClips
from matpac_keras.data.inventory import open_source
from matpac_keras.data.pretraining import pretraining_dataset
from matpac_keras.errors import InputError
from matpac_keras.frontend import LogMelSpectrogram

_TF_FUNCTION_NAME = re.compile(r"\{\{function_node [^}]*\}\}")  # TensorFlow's prefix of op errors


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch's shuffles and crops, distinct for every (seed, epoch)."""
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0] % (2**31 - 3))


class AudioBatchStream:
    """Log-mel crop batches [batch, 80, crop_frames] from `source`, epoch after epoch.

    Args:
        source: a folder of audio files, a list of them, a prepared TFDS dataset directory or
            builder, or a `tf.data.Dataset` of TFDS-style examples (see
            `matpac_keras.data.inventory.open_source`).
        split: the TFDS split(s) to read, e.g. "balanced_train+unbalanced_train".
        batch_size, crop_frames, shuffle_buffer: see `pretraining_dataset`.
        seed: int. The run's seed.
        epoch_lengths: batches in each finished epoch, as recorded by an earlier run (from a
            checkpoint's metadata); extended as epochs finish.
        dropped: DroppedClips or None. Where the clips the pipeline drops are counted.
        description: str or None. The source in words, for errors. Defaults to the source.
        logmel_in_step: bool. False (default): the batches are log-mel crops, computed in
            tf.data on the CPU. True: the waveform crops [batch, samples] themselves, whose
            log-mel `MatpacPretrainer`'s step computes on the accelerator.

    A failure of the pipeline (an epoch without one full batch, a TFDS read error) raises
    `InputError` from `batches`, and is kept in `error`: under TensorFlow, Keras runs the
    generator inside tf.data, which re-raises it as an op error.
    """

    def __init__(
        self,
        source,
        split: str,
        batch_size: int,
        crop_frames: int,
        seed: int,
        shuffle_buffer: int = 1024,
        epoch_lengths: tuple = (),
        dropped: DroppedClips | None = None,
        description: str | None = None,
        logmel_in_step: bool = False,
    ):
        self.source = open_source(source)
        self.description = description or f"config.data.source {self.source}"
        self.split = split
        self.batch_size = batch_size
        self.crop_frames = crop_frames
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch_lengths = list(epoch_lengths)
        self.dropped = DroppedClips() if dropped is None else dropped
        self.error: InputError | None = None
        self._frontend = None if logmel_in_step else LogMelSpectrogram()

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batches into it) of global step `step`, from the finished epochs' lengths."""
        epoch = 0
        for length in self.epoch_lengths:
            if step < length:
                break
            step -= length
            epoch += 1
        return epoch, step

    def _epoch(self, epoch: int, skip: int):
        """Epoch `epoch` without its first `skip` batches (cropped, but no log-mel for those)."""
        waveforms = pretraining_dataset(
            self.source,
            self.batch_size,
            self.crop_frames,
            seed=epoch_seed(self.seed, epoch),
            deterministic=True,
            logmel_in_pipeline=False,
            split=self.split,
            shuffle_buffer=self.shuffle_buffer,
            dropped=self.dropped,
        )
        waveforms = waveforms.skip(skip)
        if self._frontend is not None:
            waveforms = waveforms.map(self._frontend)
        return waveforms.prefetch(2)

    def batches(self, start_step: int) -> Iterator[tuple[np.ndarray]]:
        """`(batch,)` from global step `start_step` on, forever (the caller bounds the count)."""
        epoch, skip = self.position(start_step)
        while True:
            count = skip
            try:
                for batch in self._epoch(epoch, skip).as_numpy_iterator():
                    count += 1
                    yield (batch,)
            except tf.errors.OpError as error:
                reason = " ".join(_TF_FUNCTION_NAME.sub("", error.message).split())
                self._fail(f"reading epoch {epoch} failed: {reason}", error)
            if count == 0:
                counts = {r: n for r, n in self.dropped.counts.items() if n}
                self._fail(
                    f"not one full batch of {self.batch_size} usable clips in an epoch (clips "
                    f"shorter than {self.crop_frames} frames or undecodable are dropped; "
                    f"dropped so far: {counts or 'none'})"
                )
            if epoch == len(self.epoch_lengths):
                self.epoch_lengths.append(count)
            epoch, skip = epoch + 1, 0

    def _fail(self, reason: str, cause: BaseException | None = None):
        self.error = InputError(f"{self.description}: {reason}")
        raise self.error from cause
