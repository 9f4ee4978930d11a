"""Two-sided t-tests over seeds without scipy: Student-t tail probabilities from the
regularised incomplete beta function (`betainc`), paired and Welch t-tests, and the mean and
sample standard deviation of a group of runs. `durgru_jax.report` compares sweep groups with
them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) (Lentz's continued fraction, float64)."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float, max_iter: int = 1000) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if math.isnan(t) or not df > 0:
        return math.nan
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


@dataclasses.dataclass(frozen=True)
class TTest:
    """The outcome of a two-sided t-test of mean(x) - mean(y)."""

    diff: float  # mean(x) - mean(y)
    t: float
    df: float
    p: float  # two-sided
    kind: str  # "paired" | "welch"


def paired_t_test(x: Sequence[float], y: Sequence[float]) -> TTest:
    """Two-sided paired t-test of ``x - y`` (the i-th values share a seed)."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    n = len(d)
    if n < 2:
        raise ValueError("a paired t-test needs at least 2 pairs")
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    return _test(mean, se, n - 1.0, "paired")


def welch_t_test(x: Sequence[float], y: Sequence[float]) -> TTest:
    """Two-sided Welch t-test of mean(x) - mean(y) (unequal variances)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("a Welch t-test needs at least 2 values in each group")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else 1.0
    return _test(float(x.mean() - y.mean()), se, float(df), "welch")


def _test(diff: float, se: float, df: float, kind: str) -> TTest:
    if se == 0.0:  # no spread: identical runs (p = 1) or a difference without noise (p = 0)
        t = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        t = diff / se
    return TTest(diff, t, df, 1.0 if t == 0.0 else t_two_sided_p(t, df), kind)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value, NaN for none)."""
    v = np.asarray(list(values), np.float64)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
