"""Clip features of a task's splits, computed once and cached on disk.

The cache file name holds the task, the feature source, the embedding mode and input length,
and a hash of everything that changes the features: the model file's SHA-256, the TFDS
dataset name and version, and these options. A second evaluation of the same model and task
reads the file instead of embedding the audio again.
"""

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable

import numpy as np
import tqdm
from absl import logging

from matpac_keras.embedding import EmbeddingExtractor
from matpac_keras.evaluation.probe import ProbeData
from matpac_keras.frontend import HOP_LENGTH, N_FFT, num_frames
from matpac_keras.outputs import atomic_output

SOURCES = ("model", "random_init", "logmel_stats")
INPUT_LENGTHS = ("full", "evar")
SAMPLE_RATE = 16000


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(cache_dir: str, task_name: str, key: dict) -> str:
    """`<cache_dir>/<task>-<source>-<mode>-<input_length>-<hash of key>.npz`."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{task_name}-{key['source']}-{key['mode']}-{key['input_length']}-{digest}.npz"
    return os.path.join(cache_dir, name)


def fit_length(waveform: np.ndarray, seconds: float | None) -> np.ndarray:
    """The first `seconds` of a clip, zero-padded to exactly that (EVAR's unit_sec); the clip
    unchanged when `seconds` is None. Always at least one STFT frame (400 samples)."""
    if seconds is not None:
        n = int(round(seconds * SAMPLE_RATE))
        waveform = np.pad(waveform[:n], (0, max(0, n - len(waveform))))
    return np.pad(waveform, (0, max(0, N_FFT - len(waveform))))


def exact_logmels(
    frontend: Callable[[np.ndarray], np.ndarray],
    waveforms: list[np.ndarray],
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Each clip's normalised log-mel [mels, num_frames(len)], with few distinct shapes.

    Computing clips of many lengths one by one costs a retrace (TensorFlow) or an op-by-op
    recompilation (JAX: over a second per clip) for every new length. Here clips are
    zero-padded to a multiple of 16 hops, computed in batches, and each log-mel is cut back to
    the clip's own frames: a frame only reads samples inside the clip, so they are unchanged.
    `frontend` maps waveforms [B, samples] to log-mels [B, mels, frames] (numpy).
    """
    bucket = 16 * HOP_LENGTH
    logmels: list = [None] * len(waveforms)
    by_samples: dict[int, list[int]] = {}
    for i, wave in enumerate(waveforms):
        if len(wave) < N_FFT:
            raise ValueError(f"clip {i} has {len(wave)} samples, fewer than one frame")
        by_samples.setdefault(math.ceil(len(wave) / bucket) * bucket, []).append(i)
    for length, indices in by_samples.items():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            batch = np.stack([np.pad(waveforms[i], (0, length - len(waveforms[i]))) for i in rows])
            for i, logmel in zip(rows, frontend(batch.astype("float32")), strict=True):
                logmels[i] = logmel[:, : num_frames(len(waveforms[i]))]
    return logmels


def bucketed_embeddings(
    extractor: EmbeddingExtractor, waveforms: list[np.ndarray], batch_size: int = 64
) -> np.ndarray:
    """Clip embeddings [N, F*D] equal to `extractor.embed_clips`, with few distinct shapes.

    `embed_clips` batches clips of identical length only (FSDD's lengths nearly all differ).
    Here the log-mels come from `exact_logmels`, each is padded with zeros to a multiple of the
    patch size as the precise mode does, and clips of equal padded length are encoded together.
    """
    patch = extractor.backbone.patch_size
    logmels = [
        np.pad(m, ((0, 0), (0, -m.shape[1] % patch)))
        for m in exact_logmels(extractor.logmel, waveforms, batch_size)
    ]
    dim = extractor.backbone.num_freq_patches * extractor.backbone.embed_dim
    out = np.zeros((len(waveforms), dim), "float32")
    by_frames: dict[int, list[int]] = {}
    for i, logmel in enumerate(logmels):
        by_frames.setdefault(logmel.shape[1], []).append(i)
    for indices in by_frames.values():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            out[rows] = extractor.embed_logmel(np.stack([logmels[i] for i in rows])).embedding
    return out


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
