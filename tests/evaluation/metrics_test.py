"""Metrics against scikit-learn on random data, ties included, and against hand-worked cases."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from matpac_keras.evaluation import metrics

pytestmark = pytest.mark.single_backend


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_map_equals_sklearn(seed, decimals):
    rng = np.random.default_rng(seed)
    targets = rng.random((200, 12)) < rng.uniform(0.05, 0.5, 12)
    scores = rng.normal(size=targets.shape) + 0.8 * targets
    if decimals is not None:  # many ties
        scores = np.round(scores, decimals)
    expected = average_precision_score(targets, scores, average="macro")
    assert metrics.mean_average_precision(targets, scores) == pytest.approx(expected, abs=1e-12)


def test_average_precision_hand_worked():
    # ranked: 0.9 (pos), then a tie {0.5 pos, 0.5 neg}, then 0.1 (pos)
    # thresholds: P=1 R=1/3; P=2/3 R=2/3; P=3/4 R=1 -> 1/3 + 2/9 + 1/4
    targets = np.array([1, 1, 0, 1])
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    assert metrics.average_precision(targets, scores) == pytest.approx(1 / 3 + 2 / 9 + 1 / 4)
    assert metrics.average_precision(np.zeros(4), scores) == 0.0  # no positive: 0, as sklearn


def test_class_without_positives_scores_zero_like_sklearn():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.5], [0.4, 0.3]])
    with pytest.warns(UserWarning):
        expected = average_precision_score(targets, scores, average="macro")
    assert metrics.mean_average_precision(targets, scores) == pytest.approx(expected)


def test_masked_map_is_per_class_sklearn_over_masked_in_clips():
    rng = np.random.default_rng(3)
    targets = rng.random((150, 6)) < 0.4
    scores = np.round(rng.normal(size=targets.shape) + targets, 1)
    mask = rng.random(targets.shape) < 0.6
    expected = np.mean(
        [average_precision_score(targets[mask[:, c], c], scores[mask[:, c], c]) for c in range(6)]
    )
    assert metrics.mean_average_precision(targets, scores, mask) == pytest.approx(expected)
    # Masked-out entries do not count: scrambling them leaves the score unchanged.
    scrambled = np.where(mask, scores, rng.normal(size=scores.shape) * 100)
    assert metrics.mean_average_precision(targets, scrambled, mask) == pytest.approx(expected)
    assert metrics.mean_average_precision(targets, scrambled) != pytest.approx(expected)


def test_accuracy():
    scores = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])
    labels = np.array([1, 0, 0, 1])
    assert metrics.accuracy(labels, scores) == 0.5
    assert metrics.accuracy(np.eye(3)[labels], scores) == 0.5


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="scores"):
        metrics.accuracy(np.zeros(3, int), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="mask shape"):
        metrics.mean_average_precision(np.zeros((3, 2)), np.zeros((3, 2)), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        metrics.mean_average_precision(
            np.ones((3, 2)), np.zeros((3, 2)), np.array([[1, 0]] * 3, bool)
        )
