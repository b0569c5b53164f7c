"""Batches for fine-tuning: random log-mel crops of in-memory clips, with MixUp (any backend).

Each batch: a crop of `crop_frames` frames per clip (for training at a random frame offset,
`crop_start`; for validation from the start), turned into the normalised log-mel; frames past a
clip's end are 0 (the normalised mean, as the embeddings pad). Training batches are then mixed
(`mixup`: the log-mels and the targets, per-clip Beta(alpha, alpha) weights). Targets are
float [B, C]: one-hot, multi-hot, or [labels, mask] for masked tasks (mixing the mask makes it
a per-label weight).
"""

import math

import keras
import numpy as np
from keras import ops

from matpac_keras.audio import pcm16_to_float
from matpac_keras.frontend import HOP_LENGTH, LogMelSpectrogram, num_frames, samples_for_frames


def crop_start(num_samples: int, crop_frames: int, u: float) -> int:
    """The first sample of a crop at a uniformly random frame offset, `u` uniform in [0, 1)."""
    starts = max(0, num_frames(num_samples) - crop_frames) + 1
    return min(int(u * starts), starts - 1) * HOP_LENGTH


def mixup(
    logmel: np.ndarray, targets: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`keras.layers.MixUp`'s mixing of a batch, its draws taken from `rng`."""
    weight = rng.beta(alpha, alpha, len(logmel)).astype("float32")
    partner = rng.permutation(len(logmel))
    mixed = weight[:, None, None] * logmel + (1 - weight)[:, None, None] * logmel[partner]
    return mixed, weight[:, None] * targets + (1 - weight)[:, None] * targets[partner]


def crop_clip(waveform: np.ndarray, crop_frames: int, start: int = 0) -> tuple[np.ndarray, int]:
    """`samples_for_frames(crop_frames)` float32 samples of a clip (int16 read as x / 32768) from
    `start`, zero-padded past its end, and the number of frames they fill (at least 1)."""
    waveform = pcm16_to_float(waveform)
    length = samples_for_frames(crop_frames)
    crop = waveform[start : start + length]
    frames = max(1, num_frames(len(crop)))
    return np.pad(crop, (0, length - len(crop))).astype("float32"), frames


def crop_logmels(frontend, crops: list[np.ndarray], frames: list[int]) -> np.ndarray:
    """Normalised log-mel float32 [B, mels, crop_frames] of equal-length crops, 0 (the
    normalised mean) past each crop's `frames`."""
    logmel = ops.convert_to_numpy(frontend(np.stack(crops)))
    valid = np.arange(logmel.shape[-1])[None, :] < np.array(frames)[:, None]
    return np.where(valid[:, None, :], logmel, 0.0).astype("float32")


def targets_of(labels: np.ndarray, mask: np.ndarray | None, num_classes: int) -> np.ndarray:
    """float32 training targets: one-hot of class indices, multi-hot, or [multi-hot, mask]."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        return np.eye(num_classes, dtype="float32")[labels]
    targets = labels.astype("float32")
    if mask is None:
        return targets
    return np.concatenate([targets, np.asarray(mask, "float32")], axis=1)


class CropBatches(keras.utils.PyDataset):
    """(log-mel [B, mels, crop_frames], targets [B, T]) batches over in-memory clips.

    Args:
        waveforms: list of 1-D 16 kHz clips (float, or int16 read as x / 32768).
        targets: float32 [N, T] (targets_of).
        crop_frames: int. Frames per example.
        batch_size: int.
        training: bool. Random crops, shuffling each epoch, MixUp; else fixed crops in order.
        mixup_alpha: float. MixUp's Beta parameter; 0 disables it.
        seed: int. Seeds the order, the crops and MixUp.
    """

    def __init__(
        self,
        waveforms: list[np.ndarray],
        targets: np.ndarray,
        crop_frames: int,
        batch_size: int,
        training: bool,
        mixup_alpha: float = 0.0,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if len(waveforms) != len(targets) or not waveforms:
            raise ValueError(f"{len(waveforms)} clips for {len(targets)} targets")
        self.waveforms = waveforms
        self.targets = np.asarray(targets, "float32")
        self.crop_frames = crop_frames
        self.batch_size = batch_size
        self.training = training
        self.rng = np.random.default_rng(seed)
        self.frontend = LogMelSpectrogram()
        self.mixup_alpha = mixup_alpha
        self.order = np.arange(len(waveforms))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.waveforms) / self.batch_size)

    def on_epoch_end(self):
        if self.training:
            self.order = self.rng.permutation(len(self.waveforms))

    def _crop(self, waveform: np.ndarray) -> tuple[np.ndarray, int]:
        """A crop of at most `samples_for_frames(crop_frames)` samples, zero-padded, and its
        frames."""
        start = 0
        if self.training:
            start = crop_start(len(waveform), self.crop_frames, self.rng.random())
        return crop_clip(waveform, self.crop_frames, start)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        crops, frames = zip(*(self._crop(self.waveforms[i]) for i in rows), strict=True)
        logmel = crop_logmels(self.frontend, crops, frames)
        targets = self.targets[rows]
        if self.training and self.mixup_alpha > 0:
            logmel, targets = mixup(logmel, targets, self.mixup_alpha, self.rng)
        return logmel, targets
