"""AudioSet clips for fine-tuning, read by random access (TensorFlow-only: TFDS reads them).

The `matpac_audioset` builder stores full-length 16 kHz int16 clips with their label MIDs.
Fine-tuning draws training clips by weight (`balanced_sampling.py`), so it reads them by
(split, index) through TFDS's random-access data sources, which TFDS 4.9 offers for the
ArrayRecord file format only (its tf.data reader takes TFRecord only, so `matpac-train` needs
the TFRecord shards):

- a dataset this module prepares (from `manual_dir`) is written as ArrayRecord;
- one prepared as TFRecord (e.g. for pretraining) gets ArrayRecord shards beside its own once,
  with `tfds convert_format --dataset_version_dir=DIR --out_file_format=array_record` (the
  records are copied, no audio is decoded; the disk use doubles). Until then it is refused,
  naming that command.

Targets follow the authors' AudioSet head: class i is the i-th MID of
`class_mappings.audioset_mids()` (the mapping sorted by `mid`); a MID outside the 527 is an
error naming it and its clip. The label lists of the training splits are read in one pass (the
audio bytes are skipped, not decoded) and cached as `label_index.npz` in the run's workdir.
"""

import os
import pathlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from matpac_keras.class_mappings import audioset_mids
from matpac_keras.errors import InputError
from matpac_keras.evaluation import tfds_source
from matpac_keras.evaluation.balanced_sampling import LabelIndex
from matpac_keras.evaluation.tasks import Task
from matpac_keras.outputs import atomic_output

# The builder's splits (one per segment CSV). Not a row of `tasks.TASKS`: the linear-probe
# evaluation does not run on AudioSet.
AUDIOSET = Task("audioset", "audioset", "labels", "map", "balanced_train", None, "eval")
SPLITS = ("balanced_train", "unbalanced_train", "eval")
ARRAY_RECORD = tfds.core.FileFormat.ARRAY_RECORD
LABEL_INDEX_FILE = "label_index.npz"
_READ_CHUNK = 4096  # records read at once in the counting pass


def open_audioset(data_dir: str | None, manual_dir: str | None) -> tfds.core.DatasetBuilder:
    """The `matpac_audioset` dataset of `data_dir` (prepared from `manual_dir`, as ArrayRecord,
    if not there yet), opened from its directory; InputError if it has no ArrayRecord shards."""
    builder = tfds_source.prepared_builder(AUDIOSET, data_dir, manual_dir, ARRAY_RECORD.value)
    prepared = tfds.builder_from_directory(builder.data_dir)
    formats = [prepared.info.file_format, *prepared.info.alternative_file_formats]
    if ARRAY_RECORD not in formats:
        raise InputError(
            f"{builder.data_dir}: prepared as {', '.join(f.value for f in formats)} only; "
            "fine-tuning reads AudioSet by random access, which TFDS offers for ArrayRecord: add "
            f"ArrayRecord shards once with `tfds convert_format --dataset_version_dir="
            f"{builder.data_dir} --out_file_format=array_record` (records copied, no audio "
            "decoded; twice the disk space)"
        )
    return prepared


def class_indices(mids, vocabulary: dict[str, int], where: Callable[[], str]) -> list[int]:
    """The head's class indices of label MIDs (bytes or str); InputError naming the first MID
    not in `vocabulary` and `where()` (the clip)."""
    out = []
    for mid in mids:
        mid = mid.decode() if isinstance(mid, bytes) else str(mid)
        if mid not in vocabulary:
            raise InputError(
                f"{where()}: label {mid!r} is not one of the {len(vocabulary)} AudioSet classes "
                "of the authors' head (matpac_keras/class_mappings/audioset_mapping.csv)"
            )
        out.append(vocabulary[mid])
    return out


class AudioSetClips:
    """Random access to the clips of a prepared `matpac_audioset` dataset.

    Args:
        builder: the dataset, from `open_audioset`.

    Each thread opens its own data sources, so batches can be read by several workers at once.
    """

    def __init__(self, builder: tfds.core.DatasetBuilder):
        self.builder = builder
        self.vocabulary = {mid: i for i, mid in enumerate(audioset_mids())}
        self._local = threading.local()

    @property
    def splits(self) -> dict[str, int]:
        """{split: clips} of the splits present."""
        return {
            s: self.builder.info.splits[s].num_examples
            for s in SPLITS
            if s in self.builder.info.splits
        }

    def _source(self, split: str, audio: bool):
        sources = self._local.__dict__.setdefault("sources", {})
        if (split, audio) not in sources:
            decoders = None if audio else {"audio": tfds.decode.SkipDecoding()}
            sources[split, audio] = self.builder.as_data_source(
                split, decoders=decoders, file_format=ARRAY_RECORD
            )
        return sources[split, audio]

    def records(self, split: str, indices, audio: bool = True) -> list[dict]:
        """The examples `indices` of `split` (audio as int16, or its bytes undecoded)."""
        return self._source(split, audio).__getitems__([int(i) for i in indices])

    def waveforms(self, locations: list[tuple[str, int]]) -> list[np.ndarray]:
        """The int16 waveforms at (split, index) locations, in that order."""
        out: list = [None] * len(locations)
        by_split: dict[str, list[int]] = {}
        for row, (split, _) in enumerate(locations):
            by_split.setdefault(split, []).append(row)
        for split, rows in by_split.items():
            examples = self.records(split, [locations[r][1] for r in rows])
            for row, example in zip(rows, examples, strict=True):
                out[row] = example["audio"]
        return out

    def classes_of(self, example: dict, split: str) -> list[int]:
        """The class indices of an example's label MIDs."""

        def where() -> str:
            return f"AudioSet clip {example['ytid'].decode()} ({split})"

        return class_indices(example["labels"], self.vocabulary, where)

    def count_labels(self, splits: tuple[str, ...], log=print) -> LabelIndex:
        """One pass over `splits` (audio skipped): every clip's class indices."""
        labels = []
        for split in splits:
            size = self.splits[split]
            per_clip = []
            for start in range(0, size, _READ_CHUNK):
                indices = range(start, min(size, start + _READ_CHUNK))
                per_clip += [
                    self.classes_of(ex, split) for ex in self.records(split, indices, False)
                ]
                if size > 10 * _READ_CHUNK and start // _READ_CHUNK % 50 == 49:
                    log(f"counting labels: {split} {start + _READ_CHUNK} of {size} clips")
            labels.append(per_clip)
        return LabelIndex.from_lists(splits, labels, len(self.vocabulary), self.builder.data_dir)

    def test_batches(self, split: str, clips: int) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        """(int16 waveforms, multi-hot targets [n, 527]) of `split`, `clips` at a time, in
        stored order."""
        size = self.splits[split]
        for start in range(0, size, clips):
            examples = self.records(split, range(start, min(size, start + clips)))
            targets = np.zeros((len(examples), len(self.vocabulary)), dtype=np.float32)
            for row, example in enumerate(examples):
                targets[row, self.classes_of(example, split)] = 1.0
            yield [ex["audio"] for ex in examples], targets


def cached_label_index(
    clips: AudioSetClips, splits: tuple[str, ...], workdir: str | os.PathLike, log=print
) -> LabelIndex:
    """The label index of `splits`: from `<workdir>/label_index.npz` when it was counted on
    this dataset's splits and sizes, else counted now and written there atomically."""
    path = pathlib.Path(workdir) / LABEL_INDEX_FILE
    sizes = tuple(clips.splits[s] for s in splits)
    if path.exists():
        try:
            index = LabelIndex.load(path)
        except (OSError, KeyError, ValueError):
            index = None
        if index is not None and (index.splits, index.sizes, index.source) == (
            splits,
            sizes,
            os.fspath(clips.builder.data_dir),
        ):
            return index
        log(f"{path}: counted on other data: counting again")
    counted = ", ".join(f"{s} ({n} clips)" for s, n in zip(splits, sizes, strict=True))
    log(f"counting the labels of {counted}")
    index = clips.count_labels(splits, log)
    with atomic_output(path, overwrite=True) as temporary:
        index.save(temporary)
    return index
