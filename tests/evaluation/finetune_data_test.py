"""Fine-tuning batches: crops, zero padding of the log-mel, and MixUp's convex combinations."""

import keras
import numpy as np
import pytest

from matpac_keras.evaluation.finetune_data import CropBatches, targets_of
from matpac_keras.frontend import HOP_LENGTH, LogMelSpectrogram, num_frames, samples_for_frames


def _clips():
    rng = np.random.default_rng(0)
    return [
        rng.normal(size=n).astype("float32") * 0.1 for n in (3000, 5000, 8000, 6400, 2000, 7000)
    ]


def test_samples_for_gives_exact_frames():
    for frames in (1, 16, 64, 608):
        assert num_frames(samples_for_frames(frames)) == frames
        assert num_frames(samples_for_frames(frames) - 1) == frames - 1


def test_targets():
    np.testing.assert_array_equal(targets_of(np.array([2, 0]), None, 3), [[0, 0, 1], [1, 0, 0]])
    labels, mask = np.array([[1, 0]], bool), np.array([[1, 1]], bool)
    np.testing.assert_array_equal(targets_of(labels, mask, 2), [[1, 0, 1, 1]])


def test_validation_batches_are_start_crops_padded_with_zero():
    clips = _clips()
    targets = targets_of(np.arange(6) % 3, None, 3)
    batches = CropBatches(clips, targets, crop_frames=48, batch_size=4, training=False)
    assert len(batches) == 2
    logmel, got_targets = batches[0]
    assert logmel.shape == (4, 80, 48)
    np.testing.assert_array_equal(got_targets, targets[:4])
    frontend = LogMelSpectrogram()
    for b, clip in enumerate(clips[:4]):
        crop = clip[: samples_for_frames(48)]
        reference = keras.ops.convert_to_numpy(frontend(crop[None]))[0]
        n = reference.shape[1]
        np.testing.assert_allclose(logmel[b, :, :n], reference, atol=1e-4)
        assert (logmel[b, :, n:] == 0).all()


def test_mixup_mixes_log_mels_and_targets_alike():
    clips = _clips()
    targets = targets_of(np.arange(6), None, 6)
    plain = CropBatches(clips, targets, crop_frames=64, batch_size=6, training=False)[0][0]
    mixed_batches = CropBatches(clips, targets, 64, 6, training=True, mixup_alpha=0.5, seed=1)
    logmel, mixed = mixed_batches[0]
    order = mixed_batches.order  # clips of < 64 frames: the training crop is the whole clip
    np.testing.assert_allclose(mixed.sum(axis=1), 1, atol=1e-5)
    mixed_any = False
    for b in range(6):
        weights = mixed[b]
        (sources,) = np.nonzero(weights > 1e-6)
        assert 1 <= len(sources) <= 2 and order[b] in sources
        expected = sum(weights[s] * plain[s] for s in sources)
        np.testing.assert_allclose(logmel[b], expected, atol=1e-4)
        mixed_any |= len(sources) == 2
    assert mixed_any


def test_training_crops_are_random_windows():
    clip = np.random.default_rng(1).normal(size=48000).astype("float32")
    batches = CropBatches([clip], np.ones((1, 1), "float32"), 16, 1, training=True, seed=0)
    length = samples_for_frames(16)
    starts = set()
    for _ in range(5):
        crop, frames = batches._crop(clip)
        assert frames == 16 and len(crop) == length
        [start] = np.flatnonzero(clip == crop[0])  # distinct random samples: a unique match
        np.testing.assert_array_equal(crop, clip[start : start + length])
        assert start % HOP_LENGTH == 0  # a frame offset: its log-mel is frames of the clip's
        starts.add(int(start))
    assert len(starts) > 1
    short, frames = batches._crop(clip[:1000])
    assert frames == num_frames(1000) and len(short) == length and not short[1000:].any()
    with pytest.raises(ValueError, match="1 clips for 2 targets"):
        CropBatches([clip], np.ones((2, 1)), 16, 1, training=False)
