"""Where pipelines read audio from: audio files, or TFDS datasets (TensorFlow-only package).

A source is a folder (searched recursively for audio files), a sequence of audio file paths, a
TFDS builder (prepared; read with a `split`) or a `tf.data.Dataset` of TFDS-style example dicts
whose "audio" is a 1-D waveform (int16, as every `matpac_datasets/` builder stores it, or float).
Files are decoded by `matpac_keras.audio.load_audio` (the embedding code's decoder) inside
`tf.numpy_function`; TFDS examples are already 16 kHz mono.
"""

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from matpac_keras import audio
from matpac_keras.audio import AUDIO_EXTENSIONS, AudioError, list_audio_files, load_audio
from matpac_keras.data.dropped import BAD_AUDIO, DroppedClips
from matpac_keras.errors import InputError

Source = (
    str | os.PathLike | Sequence[str | os.PathLike] | tfds.core.DatasetBuilder | tf.data.Dataset
)


def is_file_source(source: Source) -> bool:
    """Whether `source` is a folder or a sequence of paths (not a TFDS builder or dataset)."""
    return not isinstance(source, tfds.core.DatasetBuilder | tf.data.Dataset)


def audio_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The file list of a file source: a folder's audio files, or the given paths."""
    if isinstance(source, str | os.PathLike):
        files = list_audio_files(source)
        if not files:
            raise InputError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {source}")
        return files
    if isinstance(source, bytes) or not isinstance(source, Sequence):
        raise TypeError(
            "source must be a folder, a sequence of audio file paths, a TFDS builder or a "
            f"tf.data.Dataset; got {type(source).__name__}"
        )
    if not source:
        raise InputError("source is an empty list of audio files")
    return [os.fspath(path) for path in source]


def path_dataset(files: Sequence[str]) -> tf.data.Dataset:
    """File paths as a dataset of byte strings (os.fsencode, so any file name round-trips)."""
    return tf.data.Dataset.from_tensor_slices(np.array([os.fsencode(f) for f in files], object))


def decode_file(path: tf.Tensor, dropped: DroppedClips | None) -> tf.Tensor:
    """Float32 16 kHz mono waveform [samples] of the file at `path` (a scalar string tensor).

    An undecodable file is recorded in `dropped` and gives an empty waveform; with `dropped`
    None it raises instead (the error names the file).
    """

    def decode(encoded: bytes) -> np.ndarray:
        name = os.fsdecode(encoded)
        try:
            return load_audio(name, min_samples=1)
        except AudioError as error:
            if dropped is None:
                raise
            dropped.record(BAD_AUDIO, name, str(error))
            return np.zeros(0, np.float32)

    waveform = tf.numpy_function(decode, [path], tf.float32, stateful=dropped is not None)
    waveform.set_shape([None])
    return waveform


def tfds_dataset(
    source: tfds.core.DatasetBuilder | tf.data.Dataset,
    split: str | None,
    shuffle_files: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """The example dicts of a TFDS source; a builder is read with `split` (and a tfds_id)."""
    if isinstance(source, tfds.core.DatasetBuilder):
        if split is None:
            raise ValueError(f"a split is needed to read the TFDS builder {source.name}")
        read_config = tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True)
        source = source.as_dataset(
            split=split, shuffle_files=shuffle_files, read_config=read_config
        )
    spec = source.element_spec
    if not isinstance(spec, dict) or "audio" not in spec:
        raise ValueError(f"a TFDS source must give dicts with an 'audio' key; got {spec}")
    if spec["audio"].shape.rank != 1:
        raise ValueError(f"'audio' must be a 1-D (mono) waveform; got shape {spec['audio'].shape}")
    return source


def example_name(example: dict[str, tf.Tensor], index: tf.Tensor) -> tf.Tensor:
    """What identifies a TFDS example in logs: its filename, its tfds_id, or its index."""
    if "filename" in example:
        return example["filename"]
    if "tfds_id" in example:
        return example["tfds_id"]
    return tf.strings.join(["example ", tf.strings.as_string(index)])


def to_float(waveform: tf.Tensor) -> tf.Tensor:
    """int16 PCM -> float32 in [-1, 1) (x / 32768, as soundfile reads it); floats as float32.
    `audio.pcm16_to_float` in tf.data."""
    if waveform.dtype == tf.int16:
        return tf.cast(waveform, tf.float32) / audio.PCM16_SCALE
    return tf.cast(waveform, tf.float32)
