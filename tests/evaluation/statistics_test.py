"""Confidence intervals and the t quantile against scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from matpac_keras.evaluation import statistics

pytestmark = pytest.mark.single_backend


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 9, 10, 29, 100])
def test_t_cdf_and_quantile_match_scipy(df):
    for t in (-3.0, -0.4, 0.0, 0.7, 2.0, 12.0):
        assert statistics.student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    for p in (0.5, 0.9, 0.975, 0.995):
        expected = stats.t.ppf(p, df)
        assert statistics.student_t_quantile(p, df) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_confidence_interval_five_runs():
    scores = [0.91, 0.93, 0.92, 0.95, 0.90]
    mean, half = statistics.confidence_interval(scores)
    low, high = stats.t.interval(0.95, 4, loc=np.mean(scores), scale=stats.sem(scores))
    assert mean == pytest.approx(np.mean(scores))
    assert half == pytest.approx((high - low) / 2, rel=1e-9)
    _, normal = statistics.confidence_interval(scores, method="normal")
    assert normal == pytest.approx(1.959964 * np.std(scores, ddof=1) / math.sqrt(5), rel=1e-6)
    assert statistics.confidence_interval([0.5]) == (0.5, pytest.approx(math.nan, nan_ok=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        statistics.confidence_interval([1.0, 2.0], method="bootstrap")
    with pytest.raises(ValueError, match="no scores"):
        statistics.confidence_interval([])
    with pytest.raises(ValueError, match="degrees of freedom"):
        statistics.student_t_cdf(1.0, 0)
