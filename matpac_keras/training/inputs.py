"""Training batches from an in-memory corpus, indexed by the global step.

An `InMemoryCorpus` is a pretraining source of equal-length clips made in memory (the demo's
synthetic corpus is one, `matpac_keras.demo.synthetic.pretraining_corpus`); a run turns it into
a log-mel corpus (`logmel_corpus`) and draws its batches from that (`RandomCropBatches`).

`fit` takes normalised log-mel crops [batch, mels, frames] (x only). Here batch `s` of a run is
a pure function of `(seed, s)`: examples drawn uniformly (with replacement) from the corpus, each
cropped at a uniform random offset. So the data position of a run is just its step, and a
resumed run sees exactly the batches an uninterrupted one would have seen.
"""

import dataclasses
from collections.abc import Callable

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class InMemoryCorpus:
    """A pretraining source held in memory: `num_clips` unlabelled 16 kHz clips of
    `num_samples` samples each, made when the run starts (checking a config and counting the
    run's steps need only the sizes).

    Attributes:
        description: the corpus in words, for the data line and errors ("the synthetic demo
            corpus (config.data.synthetic)").
        num_clips: int. Clips in the corpus: one epoch.
        num_samples: int. Samples of every clip.
        make_waveforms: a function of no argument returning the clips, float32
            [num_clips, num_samples], mono at 16 kHz.
    """

    description: str
    num_clips: int
    num_samples: int
    make_waveforms: Callable[[], np.ndarray]

    def waveforms(self) -> np.ndarray:
        """The clips [num_clips, num_samples] float32; ValueError if another shape was made."""
        waveforms = np.asarray(self.make_waveforms(), dtype=np.float32)
        if waveforms.shape != (self.num_clips, self.num_samples):
            raise ValueError(
                f"{self.description}: made clips of shape {waveforms.shape}, not the "
                f"({self.num_clips}, {self.num_samples}) it declares"
            )
        return waveforms


class RandomCropBatches(keras.utils.PyDataset):
    """Batches `start_step, ..., start_step + num_steps - 1` of random crops of `logmels`.

    Args:
        logmels: np.ndarray [examples, mels, frames]. The corpus (normalised log-mel).
        batch_size: int. Crops per batch.
        crop_frames: int. Frames per crop (at most the corpus' frames).
        seed: int. With the step, fixes which examples and offsets a batch holds.
        start_step: int. The global step of this dataset's first batch. Defaults to 0.
        num_steps: int. Number of batches. Defaults to 1.
    """

    def __init__(
        self,
        logmels: np.ndarray,
        batch_size: int,
        crop_frames: int,
        seed: int,
        start_step: int = 0,
        num_steps: int = 1,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        if logmels.ndim != 3 or logmels.shape[2] < crop_frames:
            raise ValueError(
                f"need a corpus [examples, mels, frames >= crop_frames={crop_frames}]; "
                f"got {logmels.shape}"
            )
        if batch_size < 1 or num_steps < 1 or start_step < 0:
            raise ValueError(
                f"need batch_size >= 1, num_steps >= 1, start_step >= 0; got {batch_size}, "
                f"{num_steps}, {start_step}"
            )
        self.logmels = logmels
        self.batch_size = batch_size
        self.crop_frames = crop_frames
        self.seed = seed
        self.start_step = start_step
        self.steps = num_steps

    @property
    def num_batches(self) -> int:
        return self.steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.steps:
            raise IndexError(f"batch {index} of {self.steps}")
        rng = np.random.default_rng((self.seed, self.start_step + index))
        examples = rng.integers(0, len(self.logmels), self.batch_size)
        offsets = rng.integers(0, self.logmels.shape[2] - self.crop_frames + 1, self.batch_size)
        return np.stack(
            [
                self.logmels[e, :, o : o + self.crop_frames]
                for e, o in zip(examples, offsets, strict=True)
            ]
        ).astype(np.float32)


def logmel_corpus(waveforms: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Normalised log-mel [N, 80, frames] of equal-length 16 kHz waveforms [N, samples]."""
    from matpac_keras.frontend import LogMelSpectrogram

    frontend = LogMelSpectrogram()
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(frontend(waveforms[i : i + batch_size]))
            for i in range(0, len(waveforms), batch_size)
        ]
    )
