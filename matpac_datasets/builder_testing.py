"""Test helpers for the builders: prepare from a manual dir, read examples, check stored audio.

The audio reference is independent of the builders' pipeline (matpac_keras.audio: soundfile +
soxr): it averages the channels and resamples with scipy's polyphase filter.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds
from scipy import signal

SAMPLE_RATE = 16000


def prepare(
    builder_cls: type,
    manual_dir: os.PathLike | str | None,
    data_dir: str,
    beam_options: Sequence[str] | None = None,
    **kwargs: Any,
):
    """Builds `builder_cls` from `manual_dir` into `data_dir`; returns the builder.

    With `beam_options` (Beam flags, e.g. `["--runner=DirectRunner"]`) it is prepared as
    `tfds build --beam_pipeline_options=...` prepares it: through a Beam pipeline.
    """
    builder = builder_cls(data_dir=data_dir, **kwargs)
    manual_dir = os.fspath(manual_dir) if manual_dir is not None else None
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    if beam_options is not None:
        from apache_beam.options.pipeline_options import PipelineOptions

        config = tfds.download.DownloadConfig(
            manual_dir=manual_dir, beam_options=PipelineOptions(list(beam_options))
        )
    builder.download_and_prepare(download_config=config)
    return builder


def assert_same_builds(builder, other) -> None:
    """Two prepared builders hold the same splits, examples (in the same order, every
    feature equal) and skipped counts: e.g. a plain and a Beam build of one builder."""
    assert set(builder.info.splits) == set(other.info.splits)
    for split in builder.info.splits:
        ours = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
        theirs = list(tfds.as_numpy(other.as_dataset(split=split, shuffle_files=False)))
        assert len(ours) == len(theirs) == builder.info.splits[split].num_examples, split
        for a, b in zip(ours, theirs, strict=True):
            assert sorted(a) == sorted(b), (split, sorted(a), sorted(b))
            for key in a:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{split}: {key}")
    assert builder.info.metadata.get("skipped") == other.info.metadata.get("skipped")


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
