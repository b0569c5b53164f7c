"""`matpac-embed` on long audio: peak memory does not grow with the length of the file.

The issue measured 4.6 GB for one hour and 8.4 GB for two (the whole clip's log-mel at once).
Here a 2-hour and a 10-minute file (8 kHz int16 mono, as FSDD's) are embedded by a tiny model,
each by its own `matpac-embed` process; a wrapper process reports the peak RSS of the command
(`RUSAGE_CHILDREN`). Before streaming, the 2-hour run peaked at several times the 10-minute one.

Backend-independent (single_backend): what bounds the memory is the chunking in
`EmbeddingExtractor.embed_stream`, NumPy code that is the same on every backend (the per-chunk
encoding it calls is checked on all three by tests/embedding_stream_test.py).
"""

import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.cli.run_cli import peak_rss, save_tiny_backbone

pytestmark = pytest.mark.single_backend

RATE = 8000


def _write_noise(path: pathlib.Path, seconds: int) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 1, "PCM_16") as f:
        for _ in range(0, seconds, 60):
            f.write((rng.standard_normal(60 * RATE) * 3000).astype(np.int16))


def _peak_rss(model: pathlib.Path, audio: pathlib.Path, output: pathlib.Path) -> int:
    command = [sys.executable, "-m", "matpac_keras.cli.embed", f"--model={model}"]
    peak, out = peak_rss(command + [f"--output={output}", "--batch_size=64", str(audio)], 600)
    assert "1 clips, embeddings (1, 160)" in out
    return peak


def test_two_hours_peak_within_1_5x_of_ten_minutes(tmp_path):
    save_tiny_backbone(tmp_path / "tiny.keras", seed=0, max_frames=256)
    _write_noise(tmp_path / "ten_minutes.wav", 10 * 60)
    _write_noise(tmp_path / "two_hours.wav", 2 * 3600)  # 115 MB; 461 MB as 16 kHz float32
    short = _peak_rss(tmp_path / "tiny.keras", tmp_path / "ten_minutes.wav", tmp_path / "a.npz")
    long = _peak_rss(tmp_path / "tiny.keras", tmp_path / "two_hours.wav", tmp_path / "b.npz")
    assert long < 1.5 * short, f"peak RSS: 2 h {long / 2**20:.0f} MiB, 10 min {short / 2**20:.0f}"
    with np.load(tmp_path / "b.npz") as out:
        assert np.isfinite(out["embeddings"]).all()
