"""Student-t tails, the incomplete beta function and the paired and Welch t-tests of
durgru_jax/stats.py against tables, closed forms, jax.scipy and hand-computed values."""

from __future__ import annotations

import math

import jax.scipy.special as jsp
import pytest

from durgru_jax import stats


def test_student_t_two_sided_p_known_values():
    assert stats.t_two_sided_p(2.776, 4) == pytest.approx(0.05, abs=1e-4)  # t table
    assert stats.t_two_sided_p(-2.228, 10) == pytest.approx(0.05, abs=1e-4)
    assert stats.t_two_sided_p(1.96, 1e6) == pytest.approx(0.05, abs=1e-4)  # normal limit
    for t in (0.3, 1.0, 4.0, 30.0):
        # Closed forms: df=1 is Cauchy, df=2 has P(|T|>t) = 1 - t / sqrt(2 + t^2).
        assert stats.t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t))
        assert stats.t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert stats.t_two_sided_p(0.0, 3) == 1.0 and stats.t_two_sided_p(math.inf, 3) == 0.0
    for a, b, x in ((0.5, 0.5, 0.3), (2.0, 3.0, 0.9), (1.5, 0.5, 0.97), (5.0, 0.5, 0.2)):
        assert stats.betainc(a, b, x) == pytest.approx(float(jsp.betainc(a, b, x)), abs=2e-6)


def test_paired_and_welch_t_tests_by_hand():
    ref, new = [0.50, 0.52, 0.54], [0.55, 0.56, 0.60]
    t = stats.paired_t_test(new, ref)  # differences 0.05, 0.04, 0.06: mean 0.05, sd 0.01
    assert t.kind == "paired" and t.df == 2 and t.diff == pytest.approx(0.05)
    assert t.t == pytest.approx(0.05 / (0.01 / math.sqrt(3)))
    assert t.p == pytest.approx(1 - t.t / math.sqrt(2 + t.t**2))
    w = stats.welch_t_test([0.60, 0.62], ref)
    vx, vy = 0.0002 / 2, 0.0004 / 3  # sample variances / n
    assert w.kind == "welch" and w.diff == pytest.approx(0.09)
    assert w.t == pytest.approx(0.09 / math.sqrt(vx + vy))
    assert w.df == pytest.approx((vx + vy) ** 2 / (vx**2 / 1 + vy**2 / 2))
    assert w.p == pytest.approx(stats.t_two_sided_p(w.t, w.df))
    assert 0.005 < w.p < 0.02  # t = 5.89 on 2.88 degrees of freedom
    same = stats.paired_t_test(ref, ref)
    assert same.diff == 0 and same.p == 1.0


def test_mean_std_uses_the_sample_standard_deviation():
    assert stats.mean_std([0.90, 0.92, 0.94]) == pytest.approx((0.92, 0.02))
    assert stats.mean_std([3.0]) == (3.0, 0.0)
    assert all(math.isnan(v) for v in stats.mean_std([]))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="a, b > 0"):
        stats.betainc(0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        stats.paired_t_test([1.0], [2.0])
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.welch_t_test([1.0, 2.0], [3.0])
    assert math.isnan(stats.t_two_sided_p(math.nan, 3)) and math.isnan(stats.t_two_sided_p(1, 0))
