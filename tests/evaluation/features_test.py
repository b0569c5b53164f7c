"""Feature cache, input length, and the log-mel statistics baseline against librosa."""

import hashlib
import os

import keras
import librosa
import numpy as np
import pytest

from matpac_keras.backbone import MatpacBackbone
from matpac_keras.embedding import EmbeddingExtractor, bucketed_embeddings
from matpac_keras.evaluation import baselines, features
from matpac_keras.evaluation.probe import ProbeData
from matpac_keras.evaluation.tfds_source import ClipBatch
from matpac_keras.frontend import LOGMEL_MEAN, LOGMEL_STD


def test_cache_round_trip_and_key_check(tmp_path):
    key = {"source": "model", "model_sha256": "ab", "mode": "precise", "input_length": "full"}
    splits = {
        "train": ProbeData(np.ones((3, 2)), np.array([0, 1, 2])),
        "test": ProbeData(np.zeros((2, 2)), np.ones((2, 4), bool), np.eye(2, 4, dtype=bool)),
    }
    path = features.cache_path(str(tmp_path), "openmic", key)
    assert os.path.basename(path).startswith("openmic-model-precise-full-")
    assert path != features.cache_path(str(tmp_path), "openmic", {**key, "model_sha256": "cd"})
    assert features.load(path, key) is None
    features.save(path, splits, key)
    loaded = features.load(path, key)
    assert sorted(loaded) == ["test", "train"] and loaded["train"].mask is None
    np.testing.assert_array_equal(loaded["test"].mask, splits["test"].mask)
    np.testing.assert_array_equal(loaded["train"].labels, [0, 1, 2])
    assert features.load(path, {**key, "mode": "fast"}) is None


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert features.file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_fit_length_crops_pads_and_keeps_one_frame():
    wave = np.arange(1, 24001, dtype="float32")
    np.testing.assert_array_equal(features.fit_length(wave, 1.0), wave[:16000])
    padded = features.fit_length(wave, 2.0)
    assert len(padded) == 32000 and padded[24000:].max() == 0
    np.testing.assert_array_equal(features.fit_length(wave, None), wave)
    assert len(features.fit_length(wave[:10], None)) == 400


def test_compute_concatenates_batches_in_order():
    batches = {
        "train": [
            ClipBatch([np.ones(500), np.ones(800)], np.array([1, 2]), None),
            ClipBatch([np.ones(100)], np.array([0]), None),
        ],
    }
    out = features.compute(batches, lambda waves: np.array([[len(w)] for w in waves], "float32"))
    np.testing.assert_array_equal(out["train"].x[:, 0], [500, 800, 400])
    np.testing.assert_array_equal(out["train"].labels, [1, 2, 0])
    with pytest.raises(ValueError, match="no clips"):
        features.compute({"test": []}, lambda w: w)


def test_logmel_statistics_against_librosa():
    rng = np.random.default_rng(0)
    waves = [
        rng.normal(size=8000).astype("float32") * 0.1,
        rng.normal(size=8100).astype("float32") * 0.2,  # same front-end bucket as the first
        np.sin(np.arange(12345) * 0.3) * 0.5,
        rng.normal(size=300).astype("float32") * 0.1,  # shorter than a frame: zero-padded
    ]
    got = baselines.logmel_statistics(waves, batch_size=1)
    np.testing.assert_allclose(got, baselines.logmel_statistics(waves), atol=1e-6)  # batching
    for wave, row in zip(waves, got, strict=True):
        wave = np.pad(np.asarray(wave, "float64"), (0, max(0, 400 - len(wave))))
        mel = librosa.feature.melspectrogram(
            y=wave, sr=16000, n_fft=400, hop_length=160, center=False, power=2.0, n_mels=80,
            fmin=50, fmax=8000, htk=False, norm="slaney", window=np.hanning(401)[:-1],
        )  # fmt: skip
        logmel = (np.log(mel + np.finfo(np.float32).eps) - LOGMEL_MEAN) / LOGMEL_STD
        np.testing.assert_allclose(row[:80], logmel.mean(axis=1), atol=2e-3)
        np.testing.assert_allclose(row[80:], logmel.std(axis=1), atol=2e-3)
    assert got.shape == (4, 160) and got.dtype == np.float32


@pytest.mark.parametrize("mode", ["precise", "fast"])
def test_bucketed_embeddings_equal_embed_clips(mode):
    keras.utils.set_random_seed(0)
    backbone = MatpacBackbone(embed_dim=16, depth=1, num_heads=2, max_frames=48)
    extractor = EmbeddingExtractor(backbone, mode=mode)
    rng = np.random.default_rng(0)
    lengths = [400, 2561, 2561, 7100, 12000]  # 1 frame, a bucket edge, 1 and 2 chunks
    clips = [rng.normal(size=n).astype("float32") * 0.1 for n in lengths]
    expected = np.stack([r.embedding for r in extractor.embed_clips(clips)])
    got = bucketed_embeddings(extractor, clips, batch_size=3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="clip 0 has 399 samples"):
        bucketed_embeddings(extractor, [clips[0][:399]])
