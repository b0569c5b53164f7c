"""Mean and 95% confidence interval over repeated runs (Student's t or normal), no scipy.

The papers report "mean +- 95% CI" over 5 probe runs without saying how; we use the
t-distribution by default: `mean +- t(0.975, n - 1) * s / sqrt(n)`, s the sample standard
deviation (t = 2.776 for n = 5); `method="normal"` uses 1.96 instead of t.
"""

import math
from collections.abc import Sequence

METHODS = ("t", "normal")
_NORMAL_975 = 1.959963984540054


def student_t_cdf(t: float, df: int) -> float:
    """CDF of Student's t with an integer number of degrees of freedom.

    Closed form for integer df (Abramowitz & Stegun 26.7.3-4) with theta = atan(t / sqrt(df)):
    a finite series in cos(theta)^2, times sin(theta) (even df) or plus theta (odd df).
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer; got {df}")
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return 0.5 + 0.5 * s * total
    if df == 1:
        return 0.5 + theta / math.pi
    term, total = 1.0, 1.0
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 0.5 + (theta + s * math.cos(theta) * total) / math.pi


def student_t_quantile(p: float, df: int) -> float:
    """Inverse of `student_t_cdf` (bisection to 1e-12), for 0.5 <= p < 1."""
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1); got {p}")
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2
    while high - low > 1e-12 * max(1.0, high):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if student_t_cdf(mid, df) < p else (low, mid)
    return 0.5 * (low + high)


def confidence_interval(
    scores: Sequence[float], level: float = 0.95, method: str = "t"
) -> tuple[float, float]:
    """(mean, half-width) of the two-sided `level` interval; half-width is nan for one score."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    n = len(scores)
    if n == 0:
        raise ValueError("confidence interval of no scores")
    mean = math.fsum(scores) / n
    if n == 1:
        return mean, math.nan
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in scores) / (n - 1))
    p = 0.5 + level / 2
    if method == "t":
        factor = student_t_quantile(p, n - 1)
    elif level == 0.95:
        factor = _NORMAL_975
    else:
        raise ValueError("method='normal' supports only level=0.95")
    return mean, factor * std / math.sqrt(n)
