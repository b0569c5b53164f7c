"""Class-balanced sampling of a multi-label training set, addressed by the global step (NumPy).

The training clips of one or more splits are numbered in one sequence (split after split, each
in its stored order). `LabelIndex` holds every clip's label (class) indices, counted in one
pass over the data and cached; from it:

- the class frequencies `count(c)`: training clips with label c;
- each clip's sampling weight (`clip_weights`):

      w_i = sum over the labels c of clip i of 1 / count(c)

  the weights of PSLA's balanced sampling (Gong, Chung, Glass, "PSLA: Improving Audio Tagging
  with Pretraining, Sampling, Labeling, and Aggregation", TASLP 2021, `src/gen_weight_file.py`:
  `1000 / (count + 0.01)` per label, summed over the clip's labels; the 1000 and the 0.01 change
  no probability here, every counted label having count >= 1), which AST, Audio-MAE and later
  AudioSet fine-tuning recipes feed to PyTorch's `WeightedRandomSampler` (with replacement). A
  class then carries the same total weight, 1, whatever its frequency: the sum of w_i over the
  clips is the number of classes present;
- `WeightedSampler`: clips drawn with replacement with probability w_i / sum(w). The draws of
  step s come from NumPy's generator seeded with (seed, s) (then the crops and MixUp of that
  batch, from the same generator): a batch is a pure function of (seed, step), so a
  checkpoint's step is the whole state of the sampler, and a resumed run draws what an
  uninterrupted one would. Memory: the weights' cumulative sum, 8 bytes a clip.
"""

import dataclasses
import hashlib
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class LabelIndex:
    """The label indices of every training clip, clip `i` holding `classes[offsets[i]:
    offsets[i + 1]]`.

    splits: the splits' names, in numbering order. sizes: their numbers of clips.
    offsets: int64 [N + 1]. classes: int [offsets[-1]] class indices in [0, num_classes).
    num_classes: int. source: where the clips were read (a dataset directory), or "".
    """

    splits: tuple[str, ...]
    sizes: tuple[int, ...]
    offsets: np.ndarray
    classes: np.ndarray
    num_classes: int
    source: str = ""

    def __post_init__(self):
        if len(self.splits) != len(self.sizes) or len(self.offsets) != sum(self.sizes) + 1:
            raise ValueError(
                f"{len(self.offsets) - 1} clips' offsets for splits {self.splits} of sizes "
                f"{self.sizes}"
            )
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.classes):
            raise ValueError("offsets must run from 0 to the number of label indices")
        if (
            len(self.classes)
            and not 0 <= self.classes.min() <= self.classes.max() < self.num_classes
        ):
            raise ValueError(f"class indices outside [0, {self.num_classes})")

    @classmethod
    def from_lists(
        cls, splits, labels: list[list[list[int]]], num_classes: int, source: str = ""
    ) -> "LabelIndex":
        """From, per split, per clip, its list of class indices."""
        per_clip = [clip for split in labels for clip in split]
        lengths = np.array([len(clip) for clip in per_clip], dtype=np.int64)
        flat = [c for clip in per_clip for c in clip]
        return cls(
            tuple(splits),
            tuple(len(split) for split in labels),
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            np.asarray(flat, dtype=np.int32),
            num_classes,
            str(source),
        )

    @property
    def num_clips(self) -> int:
        return len(self.offsets) - 1

    def counts(self) -> np.ndarray:
        """int64 [num_classes]: training clips with each label."""
        return np.bincount(self.classes, minlength=self.num_classes).astype(np.int64)

    def locate(self, ids: np.ndarray) -> list[tuple[str, int]]:
        """(split, index in the split) of global clip numbers."""
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        parts = np.searchsorted(starts, ids, side="right") - 1
        return [(self.splits[p], int(i - starts[p])) for p, i in zip(parts, ids, strict=True)]

    def targets(self, ids: np.ndarray) -> np.ndarray:
        """Multi-hot float32 [len(ids), num_classes] of global clip numbers."""
        out = np.zeros((len(ids), self.num_classes), dtype=np.float32)
        for row, i in enumerate(ids):
            out[row, self.classes[self.offsets[i] : self.offsets[i + 1]]] = 1.0
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Writes the index to `path` (an `.npz`; the caller makes it atomic)."""
        np.savez(
            path,
            splits=np.array(self.splits),
            sizes=np.array(self.sizes, dtype=np.int64),
            offsets=self.offsets,
            classes=self.classes,
            num_classes=np.int64(self.num_classes),
            source=np.array(self.source),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelIndex":
        with np.load(path) as data:
            return cls(
                tuple(str(s) for s in data["splits"]),
                tuple(int(n) for n in data["sizes"]),
                data["offsets"],
                data["classes"],
                int(data["num_classes"]),
                str(data["source"]),
            )


def clip_weights(index: LabelIndex) -> np.ndarray:
    """float64 [N]: w_i = sum over clip i's labels c of 1 / count(c) (0 for a clip without
    labels, which is then never drawn)."""
    inverse = np.zeros(index.num_classes)
    counts = index.counts()
    inverse[counts > 0] = 1.0 / counts[counts > 0]
    clip_of_label = np.repeat(np.arange(index.num_clips), np.diff(index.offsets))
    return np.bincount(clip_of_label, weights=inverse[index.classes], minlength=index.num_clips)


class WeightedSampler:
    """Clip numbers drawn with replacement, with probability proportional to `weights`.

    Args:
        weights: float [N], non-negative, not all 0.
        seed: int. With the step, fixes every draw.
    """

    def __init__(self, weights: np.ndarray, seed: int):
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or not len(weights) or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError(
                "weights must be a non-empty vector of non-negative numbers, not all 0"
            )
        self.seed = seed
        self.cumulative = np.cumsum(weights)
        self.fingerprint = hashlib.sha256(weights.tobytes()).hexdigest()[:16]

    def generator(self, step: int) -> np.random.Generator:
        """The generator of step `step`'s batch: its clips, then their crops and MixUp."""
        return np.random.default_rng((self.seed, step))

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """`count` clip numbers (int64); a clip of weight 0 is never drawn."""
        u = rng.random(count) * self.cumulative[-1]
        return np.minimum(
            np.searchsorted(self.cumulative, u, side="right"), len(self.cumulative) - 1
        )

    def state(self, step: int) -> dict:
        """What a checkpoint at `step` records of the sampler (its generator is (seed, step))."""
        return {
            "seed": self.seed,
            "step": step,
            "clips": len(self.cumulative),
            "weights": self.fingerprint,
        }
