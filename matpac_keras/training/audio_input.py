"""Pretraining batches from real audio, resumable at any step (TensorFlow-only: tf.data, TFDS).

The stream is a sequence of epochs; epoch `e` is `pretraining_dataset`
(`matpac_keras.data.pretraining`) over the source with its own seed (from the run's seed and
`e`), read in deterministic order. The
number of batches of every finished epoch is recorded, so a global step maps to a data position
(epoch, batch within it), and a resumed run re-creates that epoch and skips its first batches:
it sees the batches an uninterrupted run would have (skipping reads and decodes the clips
already seen in that epoch, but computes no log-mel for them).
"""

import os
import pathlib
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from matpac_keras.data.pretraining import pretraining_dataset
from matpac_keras.frontend import LogMelSpectrogram


def open_source(source: str | os.PathLike):
    """A prepared TFDS dataset directory (holding dataset_info.json) as a builder, else the
    path itself (a folder of audio files)."""
    path = pathlib.Path(source)
    if not path.exists():
        raise FileNotFoundError(f"data.source {os.fspath(source)!r} does not exist")
    if (path / "dataset_info.json").exists():
        return tfds.builder_from_directory(os.fspath(path))
    return os.fspath(path)


def epoch_seed(seed: int, epoch: int) -> int:
    """A seed for one epoch's shuffles and crops, distinct for every (seed, epoch)."""
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0] % (2**31 - 3))


class AudioBatchStream:
    """Log-mel crop batches [batch, 80, crop_frames] from `source`, epoch after epoch.

    Args:
        source: a folder of audio files or a prepared TFDS dataset directory.
        split: the TFDS split(s) to read, e.g. "balanced_train+unbalanced_train".
        batch_size, crop_frames, shuffle_buffer: see `pretraining_dataset`.
        seed: int. The run's seed.
        epoch_lengths: batches in each finished epoch, as recorded by an earlier run (from a
            checkpoint's metadata); extended as epochs finish.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        split: str,
        batch_size: int,
        crop_frames: int,
        seed: int,
        shuffle_buffer: int = 1024,
        epoch_lengths: tuple = (),
    ):
        self.source = open_source(source)
        self.split = split
        self.batch_size = batch_size
        self.crop_frames = crop_frames
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch_lengths = list(epoch_lengths)
        self._frontend = LogMelSpectrogram()

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
        )
        return waveforms.skip(skip).map(self._frontend).prefetch(2)

    def batches(self, start_step: int) -> Iterator[np.ndarray]:
        """Batches from global step `start_step` on, forever (the caller bounds the count)."""
        epoch, skip = self.position(start_step)
        while True:
            count = skip
            for batch in self._epoch(epoch, skip).as_numpy_iterator():
                count += 1
                yield batch
            if count == 0:
                raise ValueError(
                    f"data.source {self.source}: no full batch of {self.batch_size} usable clips "
                    f"(clips shorter than {self.crop_frames} frames are dropped)"
                )
            if epoch == len(self.epoch_lengths):
                self.epoch_lengths.append(count)
            epoch, skip = epoch + 1, 0
