"""Class-balanced sampling: the label index, PSLA's weights, draws as a function of (seed, step)."""

import numpy as np
import pytest

from matpac_keras.evaluation.balanced_sampling import LabelIndex, WeightedSampler, clip_weights

pytestmark = pytest.mark.single_backend  # NumPy only


def _index() -> LabelIndex:
    # Two splits; classes 0, 1, 2 label 4, 2 and 1 clips; the last clip has no label.
    return LabelIndex.from_lists(
        ("a", "b"), [[[0, 2], [1], [0]], [[1, 0], [0], []]], num_classes=4, source="here"
    )


def test_the_index_numbers_clips_split_after_split(tmp_path):
    index = _index()
    assert (index.num_clips, index.sizes) == (6, (3, 3))
    np.testing.assert_array_equal(index.counts(), [4, 2, 1, 0])
    assert index.locate(np.array([0, 2, 3, 5])) == [("a", 0), ("a", 2), ("b", 0), ("b", 2)]
    np.testing.assert_array_equal(
        index.targets(np.array([0, 3, 5])), [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    )
    index.save(tmp_path / "index.npz")
    loaded = LabelIndex.load(tmp_path / "index.npz")
    assert (loaded.splits, loaded.sizes, loaded.source) == (("a", "b"), (3, 3), "here")
    np.testing.assert_array_equal(loaded.classes, index.classes)
    np.testing.assert_array_equal(loaded.offsets, index.offsets)


def test_a_bad_index_is_refused():
    with pytest.raises(ValueError, match="outside"):
        LabelIndex.from_lists(("a",), [[[0, 5]]], num_classes=4)
    with pytest.raises(ValueError, match="splits"):
        LabelIndex(("a",), (2,), np.array([0, 1]), np.array([0]), 4)


def test_weights_sum_the_inverse_frequencies_of_a_clips_labels():
    weights = clip_weights(_index())
    np.testing.assert_allclose(weights, [1 / 4 + 1, 1 / 2, 1 / 4, 1 / 2 + 1 / 4, 1 / 4, 0])
    assert weights.sum() == pytest.approx(3)  # one unit of weight per class present


def test_draws_are_a_function_of_seed_and_step():
    sampler = WeightedSampler(clip_weights(_index()), seed=7)
    first = sampler.draw(sampler.generator(3), 50)
    np.testing.assert_array_equal(first, sampler.draw(sampler.generator(3), 50))
    assert not np.array_equal(first, sampler.draw(sampler.generator(4), 50))
    other = WeightedSampler(clip_weights(_index()), seed=8)
    assert not np.array_equal(first, other.draw(other.generator(3), 50))
    assert sampler.state(3) == {
        "seed": 7,
        "step": 3,
        "clips": 6,
        "weights": sampler.fingerprint,
    }


def test_draw_frequencies_follow_the_weights_and_balance_single_label_classes():
    weights = clip_weights(_index())
    sampler = WeightedSampler(weights, seed=0)
    draws = np.concatenate([sampler.draw(sampler.generator(s), 1000) for s in range(40)])
    assert 5 not in draws  # weight 0
    frequencies = np.bincount(draws, minlength=6) / len(draws)
    expected = weights / weights.sum()
    sigma = np.sqrt(expected * (1 - expected) / len(draws))
    assert np.all(np.abs(frequencies - expected) <= 4 * sigma + 1e-12)
    # Single-label clips, classes of 1, 10 and 100 clips: each class a third of the draws.
    single = LabelIndex.from_lists(("a",), [[[0]] + [[1]] * 10 + [[2]] * 100], num_classes=3)
    sampler = WeightedSampler(clip_weights(single), seed=0)
    draws = np.concatenate([sampler.draw(sampler.generator(s), 1000) for s in range(30)])
    per_class = single.targets(draws).mean(axis=0)
    np.testing.assert_allclose(per_class, [1 / 3] * 3, atol=0.02)


def test_weights_must_be_usable():
    for weights in ([], [0.0, 0.0], [1.0, -1.0]):
        with pytest.raises(ValueError, match="non-negative"):
            WeightedSampler(np.array(weights), seed=0)
