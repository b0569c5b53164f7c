"""Whole clips for embedding extraction and evaluation (TensorFlow-only package).

Yields every clip of a source once, in the source's order, full length (never cropped or padded):
`{"waveform": float32 [samples] at 16 kHz, "filename": string, "label": ...}`, the label only when
the source has labels. A file that cannot be decoded raises an error naming it: evaluating on
fewer clips than the split holds must never go unnoticed (the TFDS builders have already dropped
bad files, and counted them in their metadata).
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from matpac_keras.data import sources


def clip_dataset(
    source: sources.Source,
    *,
    labels: Sequence | np.ndarray | None = None,
    split: str | None = None,
    label_key: str | None = "label",
    filename_key: str = "filename",
    num_parallel_calls: int = tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """Unbatched whole clips `{"waveform", "filename"[, "label"]}` of a file or TFDS source.

    Args:
        source: a folder of audio files (sorted paths), a sequence of paths, a prepared TFDS
            builder (read with `split`, files in order) or a `tf.data.Dataset` of TFDS examples.
        labels: one label per file (ints, or equal-shape arrays such as multi-hot vectors), for
            a file source; None: no "label". Defaults to None.
        split: str or None. The split of a TFDS builder source. Defaults to None.
        label_key: str or None. The TFDS feature copied to "label" ("labels" for multi-label
            sets); None: no "label". Defaults to "label".
        filename_key: str. The TFDS feature copied to "filename" (e.g. "sample_key" for
            OpenMIC). Defaults to "filename".
        num_parallel_calls: int. Files decoded in parallel (the order is kept). Defaults to
            `tf.data.AUTOTUNE`.

    Example:
        `for clip in clip_dataset(tfds.builder("matpac_esc50"), split="fold1"): ...`
    """
    if sources.is_file_source(source):
        files = sources.audio_files(source)
        elements = {"filename": sources.path_dataset(files)}
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != len(files):
                raise ValueError(f"got {len(labels)} labels for {len(files)} audio files")
            elements["label"] = tf.data.Dataset.from_tensor_slices(labels)
        return tf.data.Dataset.zip(elements).map(
            lambda clip: {**clip, "waveform": sources.decode_file(clip["filename"], None)},
            num_parallel_calls=num_parallel_calls,
            deterministic=True,
        )
    if labels is not None:
        raise ValueError("labels are for file sources; a TFDS source's labels are label_key")
    examples = sources.tfds_dataset(source, split)
    sources.require_key(examples.element_spec, filename_key, "filename_key")
    if label_key is not None:
        sources.require_key(examples.element_spec, label_key, "label_key")

    def clip(example):
        out = {"waveform": sources.to_float(example["audio"]), "filename": example[filename_key]}
        if label_key is not None:
            out["label"] = example[label_key]
        return out

    return examples.map(clip, num_parallel_calls=num_parallel_calls, deterministic=True)
