"""Class-balanced crop batches: a pure function of (seed, step), crops of the drawn clips, MixUp."""

import keras
import numpy as np
import pytest

from matpac_keras.evaluation.balanced_sampling import LabelIndex, WeightedSampler, clip_weights
from matpac_keras.evaluation.finetune_data import crop_start, mixup
from matpac_keras.evaluation.finetune_stream import BalancedCropBatches
from matpac_keras.frontend import HOP_LENGTH, LogMelSpectrogram, samples_for_frames

CROP = 32


@pytest.fixture(scope="module")
def store():
    """Six clips in two splits, each a distinct tone; clip 4 shorter than one crop."""
    rng = np.random.default_rng(0)
    lengths = {("a", 0): 9000, ("a", 1): 12000, ("a", 2): 7000, ("b", 0): 8000, ("b", 1): 3000}
    lengths[("b", 2)] = 10000
    clips = {
        key: (0.3 * np.sin(2 * np.pi * 200 * (k + 1) * np.arange(n) / 16000)).astype("float32")
        + 0.001 * rng.standard_normal(n).astype("float32")
        for k, (key, n) in enumerate(lengths.items())
    }
    index = LabelIndex.from_lists(
        ("a", "b"), [[[0, 2], [1], [0]], [[1, 0], [2], [0]]], num_classes=3
    )
    return index, clips


def _batches(store, alpha=0.0, start=0, steps=4, seed=3, batch=5):
    index, clips = store
    sampler = WeightedSampler(clip_weights(index), seed)
    read = lambda locations: [clips[loc] for loc in locations]  # noqa: E731
    return BalancedCropBatches(index, read, sampler, CROP, batch, alpha, start, steps)


def test_a_batch_is_a_function_of_its_global_step(store):
    whole = _batches(store)
    assert len(whole) == 4
    resumed = _batches(store, start=2, steps=2)
    for i in range(2):
        for a, b in zip(resumed[i], whole[2 + i], strict=True):
            np.testing.assert_array_equal(a, b)
    logmel, targets = whole[0]
    assert logmel.shape == (5, 80, CROP) and targets.shape == (5, 3)
    assert logmel.dtype == targets.dtype == np.float32
    with pytest.raises(IndexError):
        whole[4]


def test_crops_are_frames_of_the_drawn_clips(store):
    index, clips = store
    batches = _batches(store)
    rng = batches.sampler.generator(1)
    ids = batches.sampler.draw(rng, 5)
    offsets = rng.random(5)
    logmel, targets = batches[1]
    np.testing.assert_array_equal(targets, index.targets(ids))
    frontend = LogMelSpectrogram()
    for row, (clip_id, u) in enumerate(zip(ids, offsets, strict=True)):
        wave = clips[index.locate([clip_id])[0]]
        start = crop_start(len(wave), CROP, u)
        assert start % HOP_LENGTH == 0
        whole = keras.ops.convert_to_numpy(frontend(wave[None]))[0]  # the whole clip's log-mel
        frames = min(CROP, whole.shape[1] - start // HOP_LENGTH)
        np.testing.assert_allclose(
            logmel[row, :, :frames], whole[:, start // HOP_LENGTH :][:, :frames], atol=2e-5
        )
        assert np.all(logmel[row, :, frames:] == 0)  # past a short clip's end


def test_crop_offsets_cover_every_frame_start():
    samples = samples_for_frames(CROP) + 5 * HOP_LENGTH  # 6 possible starts
    starts = {crop_start(samples, CROP, u) for u in np.linspace(0, 0.999, 100)}
    assert starts == {k * HOP_LENGTH for k in range(6)}
    assert crop_start(1000, CROP, 0.9) == 0  # shorter than a crop: from its start


def test_mixup_mixes_logmels_and_targets_alike(store):
    plain, mixed = _batches(store)[2], _batches(store, alpha=0.5)[2]
    rng = np.random.default_rng(0)
    x, y = mixup(plain[0], plain[1], 0.5, rng)
    rng = np.random.default_rng(0)
    weight = rng.beta(0.5, 0.5, 5).astype("float32")
    partner = rng.permutation(5)
    np.testing.assert_allclose(
        y, weight[:, None] * plain[1] + (1 - weight[:, None]) * plain[1][partner]
    )
    np.testing.assert_allclose(
        x, weight[:, None, None] * plain[0] + (1 - weight[:, None, None]) * plain[0][partner]
    )
    assert not np.allclose(mixed[0], plain[0])
    assert np.all((mixed[1] >= 0) & (mixed[1] <= 1))
    np.testing.assert_array_equal(mixed[0], _batches(store, alpha=0.5)[2][0])  # reproducible
