"""A task's clips and labels from its TFDS dataset (TensorFlow-only: TFDS reads the data).

The builders are the `matpac_datasets` package, installed with `matpac_keras`.
"""

import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

import matpac_datasets
from matpac_keras.audio import pcm16_to_float
from matpac_keras.errors import InputError
from matpac_keras.evaluation.tasks import Task


@dataclasses.dataclass
class ClipBatch:
    """Up to `batch_size` clips of one split: 16 kHz float32 waveforms (any lengths)."""

    waveforms: list[np.ndarray]
    labels: np.ndarray  # int [B] or bool [B, C]
    mask: np.ndarray | None  # bool [B, C] or None


def prepared_builder(
    task: Task,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    file_format: str | None = None,
) -> tfds.core.DatasetBuilder:
    """The task's builder, prepared in `data_dir` (from `manual_dir` if not there yet, then in
    `file_format`: None for TFDS's default, TFRecord; a prepared dataset keeps its own)."""
    builder_cls = matpac_datasets.builder_class(task.builder)
    kwargs = {"config": task.builder_config} if task.builder_config else {}
    builder = builder_cls(data_dir=data_dir, **kwargs)
    if not builder.is_prepared():
        if file_format is not None:
            builder = builder_cls(data_dir=data_dir, file_format=file_format, **kwargs)
        if manual_dir is None:
            raise FileNotFoundError(
                f"{task.tfds_name} is not prepared in {builder.data_dir}: pass --manual_dir with "
                "the downloaded files (see the builder's MANUAL_DOWNLOAD_INSTRUCTIONS)"
            )
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(f"manual_dir {manual_dir!r} is not a directory")
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except AssertionError as error:  # TFDS's only word for a split without clips
            if "No examples were yielded" not in str(error):
                raise
            raise InputError(
                f"manual_dir {manual_dir}: {task.name}: {error} (no clips of that split in the "
                "folder; see the builder's MANUAL_DOWNLOAD_INSTRUCTIONS)"
            ) from None
    return builder


def label_names(builder: tfds.core.DatasetBuilder, task: Task, num_classes: int) -> list[str]:
    """The names of the task's classes: the dataset's (a ClassLabel's), else those of the
    authors' head for this task (`class_mappings`, in our builders' label order), else indices."""
    from matpac_keras.class_mappings import TASK_HEADS, task_labels

    names = getattr(builder.info.features[task.label_key], "names", None)
    if not names and task.name in TASK_HEADS and TASK_HEADS[task.name].num_classes == num_classes:
        names = task_labels(task.name)
    return list(names) if names else [str(k) for k in range(num_classes)]


def num_classes(builder: tfds.core.DatasetBuilder, task: Task) -> int:
    """Output units of the task's probe, from the label feature."""
    feature = builder.info.features[task.label_key]
    if task.multi_label:
        return int(feature.shape[-1])
    return int(feature.num_classes)


MAX_BATCH_SAMPLES = 1 << 26  # 67 M samples: 70 min of 16 kHz audio, 268 MB as float32


def clip_batches(
    builder: tfds.core.DatasetBuilder,
    split: str,
    task: Task,
    batch_size: int = 256,
    max_samples: int = MAX_BATCH_SAMPLES,
) -> Iterator[ClipBatch]:
    """The clips of a split in stored order, `batch_size` at a time, or fewer once they hold
    `max_samples` samples (whole music tracks, e.g. MTG-Jamendo's, are minutes long each)."""
    keys = ["audio", task.label_key] + ([task.mask_key] if task.mask_key else [])
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(lambda ex: {k: ex[k] for k in keys})
    batch: list[dict] = []
    samples = 0
    for example in tfds.as_numpy(dataset):
        batch.append(example)
        samples += len(example["audio"])
        if len(batch) == batch_size or samples >= max_samples:
            yield _to_batch(batch, task)
            batch, samples = [], 0
    if batch:
        yield _to_batch(batch, task)


def _to_batch(examples: list[dict], task: Task) -> ClipBatch:
    waveforms = [pcm16_to_float(ex["audio"]) for ex in examples]
    labels = np.stack([ex[task.label_key] for ex in examples])
    mask = np.stack([ex[task.mask_key] for ex in examples]).astype(bool) if task.mask_key else None
    return ClipBatch(waveforms, labels, mask)
