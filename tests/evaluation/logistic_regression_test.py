"""The NumPy logistic-regression probe against scikit-learn's, and its l2 selection."""

import numpy as np
import pytest

from matpac_keras.evaluation.logistic_regression import LogisticRegression, probe_accuracy

pytestmark = pytest.mark.single_backend


def _blobs(n=240, features=60, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features)) * 0.4
    labels = rng.integers(0, classes, n)
    scales = 1 + 3 * rng.random(features)  # unequal feature scales: standardisation matters
    features = (centres[labels] + rng.normal(size=(n, features))) * scales + 10
    return features, labels


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_matches_scikit_learn(l2):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _blobs()
    # 1e-8: at l2=0.1 the float64 gradient stalls near 1e-9 (rounding), seen with numpy 2.4.
    ours = LogisticRegression(l2, tolerance=1e-8).fit(x, y)
    assert ours.converged
    standardised = (x - x.mean(0)) / x.std(0)
    # sklearn minimises ||W||^2 / 2 + C * sum(CE): the same optimum for C = 1 / (n * l2).
    reference = sklearn.LogisticRegression(C=1 / (len(x) * l2), tol=1e-12, max_iter=10_000)
    reference.fit(standardised, y)
    test_x, _ = _blobs(seed=1)
    np.testing.assert_allclose(
        ours.predict_proba(test_x),
        reference.predict_proba((test_x - x.mean(0)) / x.std(0)),
        atol=1e-5,  # an l2 off by 10% moves them by ~1e-2
    )
    np.testing.assert_allclose(
        ours.weights, reference.coef_.T, atol=1e-5 * np.abs(ours.weights).max()
    )


def test_separable_classes_are_learned():
    x, y = _blobs(n=300, features=10, seed=2)
    x[:, 0] += 50 * y  # one feature alone separates the classes
    result = probe_accuracy(x[:200], y[:200], x[200:], y[200:])
    assert result.accuracy == 1.0 and result.validation_accuracy == 1.0
    shuffled = probe_accuracy(
        x[:200], np.random.default_rng(0).permutation(y[:200]), x[200:], y[200:]
    )
    assert shuffled.accuracy < 0.45  # chance is 0.2: nothing to learn from shuffled labels


def test_bad_input():
    x, y = _blobs(n=20)
    with pytest.raises(ValueError, match="l2 must be positive"):
        LogisticRegression(0.0)
    with pytest.raises(ValueError, match=r"features \[N, F\] and labels \[N\]"):
        LogisticRegression().fit(x, y[:-1])
    with pytest.raises(ValueError, match="non-negative integers"):
        LogisticRegression().fit(x, y - 1)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        LogisticRegression().fit(x, y)
