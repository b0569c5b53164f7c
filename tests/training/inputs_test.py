"""Random-crop batches: real windows of the corpus, a pure function of (seed, global step)."""

import numpy as np
import pytest

from matpac_keras.training.inputs import RandomCropBatches, logmel_corpus

pytestmark = pytest.mark.single_backend


def _corpus(examples=3, frames=40):
    # Every value unique, so a crop identifies its example and offset.
    return np.arange(examples * 80 * frames, dtype=np.float32).reshape(examples, 80, frames)


def _locate(crop, corpus):
    """(example, offset) of the window of `corpus` equal to `crop`, by exhaustive search."""
    frames = crop.shape[1]
    for e in range(len(corpus)):
        for o in range(corpus.shape[2] - frames + 1):
            if np.array_equal(corpus[e, :, o : o + frames], crop):
                return e, o
    raise AssertionError("crop is not a window of the corpus")


def test_batches_are_windows_and_cover_the_corpus():
    corpus = _corpus()
    batches = RandomCropBatches(corpus, batch_size=8, crop_frames=16, seed=0, num_steps=20)
    assert len(batches) == 20
    found = [_locate(crop, corpus) for i in range(len(batches)) for crop in batches[i]]
    assert batches[0].shape == (8, 80, 16) and batches[0].dtype == np.float32
    examples = {e for e, _ in found}
    offsets = {o for _, o in found}
    assert examples == {0, 1, 2}  # 160 draws over 3 examples
    assert len(offsets) > 15 and min(offsets) >= 0 and max(offsets) <= 24  # of 25 possible


def test_a_resumed_dataset_yields_the_same_batches():
    corpus = _corpus()
    whole = RandomCropBatches(corpus, 4, 16, seed=3, start_step=0, num_steps=10)
    tail = RandomCropBatches(corpus, 4, 16, seed=3, start_step=6, num_steps=4)
    for i in range(4):
        np.testing.assert_array_equal(tail[i], whole[6 + i])
    other_seed = RandomCropBatches(corpus, 4, 16, seed=4, num_steps=10)
    assert not np.array_equal(other_seed[0], whole[0])
    with pytest.raises(IndexError):
        tail[4]


def test_bad_arguments():
    with pytest.raises(ValueError, match="crop_frames=50"):
        RandomCropBatches(_corpus(), 4, crop_frames=50, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        RandomCropBatches(_corpus(), 0, 16, seed=0)


def test_logmel_corpus_matches_the_front_end_in_batches():
    from matpac_keras.frontend import LogMelSpectrogram

    waveforms = np.random.default_rng(0).uniform(-0.5, 0.5, (5, 4000)).astype(np.float32)
    expected = np.asarray(LogMelSpectrogram()(waveforms))
    np.testing.assert_allclose(logmel_corpus(waveforms, batch_size=2), expected, atol=1e-5)
