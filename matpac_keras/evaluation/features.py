"""Clip features of a task's splits, computed once and cached on disk.

The cache file name holds the task, the feature source, the embedding mode (and in a
temporal-support sweep the window, hop and aggregate), the input length, and a hash of
everything that changes the features: the model file's SHA-256, the TFDS dataset name and
version, and these options. A second evaluation of the same model and task
reads the file instead of embedding the audio again.
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterable

import numpy as np
import tqdm
from absl import logging

from matpac_keras.audio import SAMPLE_RATE
from matpac_keras.evaluation.probe import ProbeData
from matpac_keras.frontend import N_FFT
from matpac_keras.outputs import atomic_output

SOURCES = ("model", "random_init", "logmel_stats")
INPUT_LENGTHS = ("full", "evar")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks; of a folder (a preset), of its files' names
    and contents, in name order."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            if os.path.isfile(os.path.join(path, name)):
                digest.update(f"{name}\0{file_sha256(os.path.join(path, name))}\0".encode())
        return digest.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def window_key(extractor) -> dict:
    """The part of the cache key of an EmbeddingExtractor's windows (a sweep step): window and
    hop in frames (the values the seconds round to) and the aggregate."""
    return {
        "window_frames": extractor.chunk_frames,
        "hop_frames": extractor.hop_frames,
        "aggregate": extractor.aggregate,
    }


def cache_path(cache_dir: str, task_name: str, key: dict) -> str:
    """`<cache_dir>/<task>-<source>-<mode>-<input_length>-<hash of key>.npz`; with a window
    key, `<mode>-w<window>h<hop><aggregate>` (frames) in place of `<mode>`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    mode = key["mode"]
    if "window_frames" in key:
        mode += f"-w{key['window_frames']}h{key['hop_frames']}{key['aggregate']}"
    name = f"{task_name}-{key['source']}-{mode}-{key['input_length']}-{digest}.npz"
    return os.path.join(cache_dir, name)


def fit_length(waveform: np.ndarray, seconds: float | None) -> np.ndarray:
    """The first `seconds` of a clip, zero-padded to exactly that (EVAR's unit_sec); the clip
    unchanged when `seconds` is None. Always at least one STFT frame (400 samples)."""
    if seconds is not None:
        n = int(round(seconds * SAMPLE_RATE))
        waveform = np.pad(waveform[:n], (0, max(0, n - len(waveform))))
    return np.pad(waveform, (0, max(0, N_FFT - len(waveform))))


def compute(
    batches: dict[str, Iterable],
    embed: Callable[[list[np.ndarray]], np.ndarray],
    seconds: float | None = None,
    totals: dict[str, int] | None = None,
) -> dict[str, ProbeData]:
    """Features of each split from its `ClipBatch`es (tfds_source.clip_batches), with a
    progress bar per split on a terminal (`totals`: clips per split, if known)."""
    splits = {}
    for split, split_batches in batches.items():
        xs, labels, masks = [], [], []
        total = (totals or {}).get(split)
        with tqdm.tqdm(total=total, desc=f"embedding {split}", unit="clip", disable=None) as bar:
            for batch in split_batches:
                xs.append(embed([fit_length(w, seconds) for w in batch.waveforms]))
                labels.append(batch.labels)
                masks.append(batch.mask)
                bar.update(len(batch.waveforms))
        if not xs:
            raise ValueError(f"split {split!r} has no clips")
        mask = None if masks[0] is None else np.concatenate(masks)
        splits[split] = ProbeData(np.concatenate(xs), np.concatenate(labels), mask)
    return splits


def save(path: str, splits: dict[str, ProbeData], key: dict) -> None:
    """Writes the features of every split and the cache key (as JSON) into one `.npz`,
    atomically (matpac_keras.outputs): a killed run leaves no half-written cache file, and
    concurrent runs do not share a temporary name. A cache file of another key is replaced."""
    arrays = {"key": np.array(json.dumps(key, sort_keys=True))}
    for split, data in splits.items():
        arrays[f"{split}/x"] = data.x
        arrays[f"{split}/labels"] = data.labels
        if data.mask is not None:
            arrays[f"{split}/mask"] = data.mask
    with atomic_output(path, overwrite=True) as temporary:
        np.savez(temporary, **arrays)


def load(path: str, key: dict) -> dict[str, ProbeData] | None:
    """The cached features, or None when there is no file or its key differs."""
    if not os.path.isfile(path):
        return None
    with np.load(path) as arrays:
        if json.loads(str(arrays["key"])) != json.loads(json.dumps(key, sort_keys=True)):
            logging.warning("%s: stored for another key, recomputing", path)
            return None
        splits = sorted({name.split("/")[0] for name in arrays.files if "/" in name})
        return {
            split: ProbeData(
                arrays[f"{split}/x"],
                arrays[f"{split}/labels"],
                arrays[f"{split}/mask"] if f"{split}/mask" in arrays.files else None,
            )
            for split in splits
        }
