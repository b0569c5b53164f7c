"""Test helpers for the builders: prepare from a manual dir, read examples, check stored audio.

The audio reference is independent of the builders' pipeline (matpac_keras.audio: soundfile +
soxr): it averages the channels and resamples with scipy's polyphase filter.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds
from scipy import signal

SAMPLE_RATE = 16000


def prepare(builder_cls: type, manual_dir: os.PathLike | str | None, data_dir: str, **kwargs: Any):
    """Builds `builder_cls` from `manual_dir` into `data_dir`; returns the builder."""
    builder = builder_cls(data_dir=data_dir, **kwargs)
    manual_dir = os.fspath(manual_dir) if manual_dir is not None else None
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=config)
    return builder


def examples(builder, split: str, key: str = "filename") -> dict[str, dict[str, Any]]:
    """A split's examples as numpy dicts, by `key` (decoded to str); checks their `split`."""
    out = {}
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
        if "split" in ex:
            assert ex["split"].decode() == split, (ex["split"], split)
        out[ex[key].decode()] = ex
    return out


def reference_waveform(path: os.PathLike | str) -> np.ndarray:
    """Mono 16 kHz float64 waveform of `path`: channel mean + scipy polyphase resampling."""
    wave, rate = sf.read(os.fspath(path), dtype="float64", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        wave = signal.resample_poly(wave, SAMPLE_RATE // g, rate // g)
    return wave


def assert_audio_matches(stored: np.ndarray, path: os.PathLike | str, atol: float = 0.01):
    """Stored int16 audio has the source's 16 kHz length (+-1) and its samples (up to `atol`)."""
    assert stored.dtype == np.int16, stored.dtype
    ref = reference_waveform(path)
    assert abs(len(stored) - len(ref)) <= 1, (path, len(stored), len(ref))
    n = min(len(stored), len(ref))
    edge = min(64, n // 4)  # resampler filters differ only in their start/end transients
    got = stored[edge : n - edge].astype(np.float64) / 32768.0
    err = np.max(np.abs(got - ref[edge : n - edge]))
    assert err <= atol, (path, err)
