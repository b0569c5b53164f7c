"""Fine-tuning batches drawn by weight from a large clip store, addressed by step (any backend).

The small tasks' batches (`finetune_data.CropBatches`) shuffle clips held in memory; AudioSet's
two million clips are read as each batch needs them. The batch of global step s is made from
the sampler's generator of s (`balanced_sampling.WeightedSampler`), in a fixed order of draws:

1. `batch_size` clips by weight, with replacement;
2. per clip, a crop of `crop_frames` frames at a uniformly random frame offset (a multiple of
   the 160-sample hop, so the crop's log-mel is exactly those frames of the clip's); a clip
   shorter than the crop is zero-padded and its log-mel frames past its end are 0 (the
   normalised mean), as in `CropBatches`;
3. MixUp (`finetune_data.mixup`), its weights and permutation drawn from the same generator.

So a batch is a pure function of (seed, step) whatever the number of workers reading batches
ahead: a resumed run gets the batches of an uninterrupted one. Memory: the batches in flight
(`max_queue_size` of them) and the sampler's weights.
"""

from collections.abc import Callable

import keras
import numpy as np

from matpac_keras.evaluation.balanced_sampling import LabelIndex, WeightedSampler
from matpac_keras.evaluation.finetune_data import crop_clip, crop_logmels, crop_start, mixup
from matpac_keras.frontend import LogMelSpectrogram


class BalancedCropBatches(keras.utils.PyDataset):
    """(log-mel [B, mels, crop_frames], multi-hot targets [B, C]) of steps `start_step, ...,
    start_step + num_steps - 1`.

    Args:
        index: LabelIndex. The clips' labels (the targets) and their (split, index) locations.
        read: a function of a list of (split, index) returning those clips' waveforms (16 kHz,
            int16 or float).
        sampler: WeightedSampler over the index's clips.
        crop_frames, batch_size: ints.
        mixup_alpha: float. MixUp's Beta parameter; 0 disables it.
        start_step, num_steps: ints. The global steps served.
        **kwargs: `keras.utils.PyDataset`'s (`workers`, `max_queue_size`).
    """

    def __init__(
        self,
        index: LabelIndex,
        read: Callable[[list[tuple[str, int]]], list[np.ndarray]],
        sampler: WeightedSampler,
        crop_frames: int,
        batch_size: int,
        mixup_alpha: float,
        start_step: int,
        num_steps: int,
        **kwargs,
    ):
        super().__init__(use_multiprocessing=False, **kwargs)
        if num_steps < 1 or start_step < 0:
            raise ValueError(f"need num_steps >= 1, start_step >= 0; got {num_steps}, {start_step}")
        self.index = index
        self.read = read
        self.sampler = sampler
        self.crop_frames = crop_frames
        self.batch_size = batch_size
        self.mixup_alpha = mixup_alpha
        self.start_step = start_step
        self.steps = num_steps
        self.frontend = LogMelSpectrogram()

    def __len__(self) -> int:
        return self.steps

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of global step `step`."""
        rng = self.sampler.generator(step)
        ids = self.sampler.draw(rng, self.batch_size)
        offsets = rng.random(self.batch_size)
        waveforms = self.read(self.index.locate(ids))
        crops, frames = zip(
            *(
                crop_clip(w, self.crop_frames, crop_start(len(w), self.crop_frames, u))
                for w, u in zip(waveforms, offsets, strict=True)
            ),
            strict=True,
        )
        logmel, targets = crop_logmels(self.frontend, crops, frames), self.index.targets(ids)
        if self.mixup_alpha > 0:
            logmel, targets = mixup(logmel, targets, self.mixup_alpha, rng)
        return logmel, targets

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.steps:
            raise IndexError(f"batch {index} of {self.steps}")
        return self.batch(self.start_step + index)
