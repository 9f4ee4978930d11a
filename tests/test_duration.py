"""Tests for durgru_jax.duration: the duration attention factor of eq. (9)."""

from __future__ import annotations

import numpy as np
import pytest

from durgru_jax.duration import duration_factor, fit_user_stats, transform_durations

# User 0: training durations 10, 20, 40 s. By hand (log1p, population std):
#   log1p(10) = ln 11 = 2.397895, log1p(20) = ln 21 = 3.044522, log1p(40) = ln 41 = 3.713572
#   mean = 9.155990 / 3 = 3.051997
#   deviations -0.654101, -0.007474, 0.661575; squares 0.427849, 0.000056, 0.437682
#   std = sqrt(0.865587 / 3) = sqrt(0.288529) = 0.537149
# A new event of 30 s: log1p(30) = ln 31 = 3.433987, z = 0.381991 / 0.537149 = 0.711145,
#   alpha = 1 / (1 + exp(-0.711145)) = 0.670654
LOG_MEAN, LOG_STD, LOG_ALPHA_30 = 3.051997, 0.537149, 0.670654
# Without the transform: mean 23.333333, std sqrt((13.333^2 + 3.333^2 + 16.667^2) / 3)
#   = sqrt(155.5556) = 12.472191, z(30) = 6.666667 / 12.472191 = 0.534522, alpha = 0.630537
RAW_MEAN, RAW_STD, RAW_ALPHA_30 = 23.333333, 12.472191, 0.630537


def _events():
    """Two users. User 0: train 10, 20, 40; valid 30; test 1000. User 1: train 5, 7 only."""
    user = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    dur = np.array([10.0, 20.0, 40.0, 30.0, 1000.0, 5.0, 7.0, 9.0])
    is_train = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    return user, dur, is_train


def _alpha(value, valid, mean, std, ok):
    return np.asarray(
        duration_factor(
            np.asarray(value, np.float32)[None],
            np.asarray(valid, bool)[None],
            np.asarray([mean], np.float32),
            np.asarray([std], np.float32),
            np.asarray([ok], bool),
        )
    )[0]


def test_hand_computed_example_log1p():
    user, dur, is_train = _events()
    value, valid = transform_durations(dur, "log1p")
    np.testing.assert_allclose(value[:3], [2.397895, 3.044522, 3.713572], atol=1e-6)
    assert valid.all()
    mean, std, ok = fit_user_stats(user, value, valid, is_train, n_users=2, min_events=3)
    np.testing.assert_allclose(mean[0], LOG_MEAN, atol=1e-5)
    np.testing.assert_allclose(std[0], LOG_STD, atol=1e-5)
    assert ok[0]
    alpha = _alpha(value[3:4], valid[3:4], mean[0], std[0], ok[0])
    np.testing.assert_allclose(alpha, [LOG_ALPHA_30], atol=1e-5)
    # an event of exactly the user's geometric-mean-like length gets 0.5, longer ones more
    a = _alpha(
        [LOG_MEAN, LOG_MEAN + LOG_STD, LOG_MEAN - LOG_STD], [True] * 3, LOG_MEAN, LOG_STD, True
    )
    np.testing.assert_allclose(a, [0.5, 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))], atol=1e-5)


def test_hand_computed_example_no_transform():
    user, dur, is_train = _events()
    value, valid = transform_durations(dur, "none")
    np.testing.assert_array_equal(value, dur.astype(np.float32))
    mean, std, ok = fit_user_stats(user, value, valid, is_train, n_users=2, min_events=3)
    np.testing.assert_allclose([mean[0], std[0]], [RAW_MEAN, RAW_STD], rtol=1e-6)
    alpha = _alpha(value[3:4], valid[3:4], mean[0], std[0], ok[0])
    np.testing.assert_allclose(alpha, [RAW_ALPHA_30], atol=1e-5)


def test_unknown_transform_raises():
    with pytest.raises(ValueError, match="transform"):
        transform_durations(np.array([1.0]), "sqrt")


def test_statistics_use_training_events_only():
    user, dur, is_train = _events()
    value, valid = transform_durations(dur, "log1p")
    ref = fit_user_stats(user, value, valid, is_train, n_users=2, min_events=2)
    dur2 = dur.copy()
    dur2[~is_train] = [1e6, 0.0, 12345.0]  # change every validation / test duration
    value2, valid2 = transform_durations(dur2, "log1p")
    got = fit_user_stats(user, value2, valid2, is_train, n_users=2, min_events=2)
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)
    # and a held-out event that is missing does not matter either
    dur3 = dur.copy()
    dur3[4] = np.nan
    got3 = fit_user_stats(user, *transform_durations(dur3, "log1p"), is_train, 2, 2)
    for a, b in zip(ref, got3, strict=True):
        np.testing.assert_array_equal(a, b)
    # but a training duration does
    dur4 = dur.copy()
    dur4[0] = 100.0
    got4 = fit_user_stats(user, *transform_durations(dur4, "log1p"), is_train, 2, 2)
    assert got4[0][0] != ref[0][0]


def test_too_few_events_or_no_spread_is_neutral():
    user = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    dur = np.array([10.0, 50.0, 7.0, 7.0, 7.0, 1.0, 2.0, 3.0])
    is_train = np.ones(8, bool)
    value, valid = transform_durations(dur, "log1p")
    mean, std, ok = fit_user_stats(user, value, valid, is_train, n_users=4, min_events=3)
    # user 0: 2 events < 3; user 1: zero spread; user 2: fine; user 3: no events at all
    np.testing.assert_array_equal(ok, [False, False, True, False])
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    for u in (0, 1, 3):
        a = _alpha([0.0, 3.0, 100.0], [True] * 3, mean[u], std[u], ok[u])
        np.testing.assert_array_equal(a, [0.5, 0.5, 0.5])
    # min_events=2 admits user 0; a single event is never enough (std of one value)
    _, _, ok2 = fit_user_stats(user, value, valid, is_train, n_users=4, min_events=2)
    np.testing.assert_array_equal(ok2, [True, False, True, False])
    _, _, ok1 = fit_user_stats(user[:1], value[:1], valid[:1], is_train[:1], 1, min_events=1)
    assert not ok1[0]


def test_missing_or_negative_durations_are_neutral():
    dur = np.array([np.nan, -1.0, np.inf, 0.0, 30.0])
    value, valid = transform_durations(dur, "log1p")
    np.testing.assert_array_equal(valid, [False, False, False, True, True])
    assert np.all(np.isfinite(value))
    a = _alpha(value, valid, LOG_MEAN, LOG_STD, True)
    np.testing.assert_array_equal(a[:3], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(a[4], LOG_ALPHA_30, atol=1e-5)
    assert a[3] < 0.01  # 0 s is far below this user's mean
    # missing durations are left out of the statistics
    user = np.zeros(6, int)
    dur6 = np.array([10.0, np.nan, 20.0, -5.0, 40.0, np.nan])
    v6, ok6 = transform_durations(dur6, "log1p")
    mean, std, ok = fit_user_stats(user, v6, ok6, np.ones(6, bool), 1, min_events=3)
    np.testing.assert_allclose([mean[0], std[0]], [LOG_MEAN, LOG_STD], atol=1e-5)
    assert ok[0]


def test_per_step_statistics_equal_per_row():
    rng = np.random.default_rng(0)
    b, t = 4, 5
    value = rng.normal(3.0, 1.0, (b, t)).astype(np.float32)
    valid = rng.random((b, t)) < 0.8
    mean = rng.normal(3.0, 0.5, b).astype(np.float32)
    std = rng.uniform(0.3, 2.0, b).astype(np.float32)
    ok = np.array([True, False, True, True])
    per_row = np.asarray(duration_factor(value, valid, mean, std, ok))
    per_step = np.asarray(
        duration_factor(
            value,
            valid,
            np.repeat(mean[:, None], t, 1),
            np.repeat(std[:, None], t, 1),
            np.repeat(ok[:, None], t, 1),
        )
    )
    np.testing.assert_allclose(per_step, per_row, rtol=1e-6)
    want = np.where(
        valid & ok[:, None], 1 / (1 + np.exp(-(value - mean[:, None]) / std[:, None])), 0.5
    )
    np.testing.assert_allclose(per_row, want, rtol=1e-5)
    # a packed row: two users in one row, statistics per step
    m2 = np.array([[1.0, 1.0, 3.0, 3.0, 3.0]], np.float32)
    s2 = np.array([[0.5, 0.5, 2.0, 2.0, 2.0]], np.float32)
    v2 = np.array([[1.5, 1.0, 5.0, 3.0, 1.0]], np.float32)
    got = np.asarray(duration_factor(v2, np.ones((1, 5), bool), m2, s2, np.ones((1, 5), bool)))
    np.testing.assert_allclose(
        got[0], 1 / (1 + np.exp(-np.array([1.0, 0.0, 1.0, 0.0, -1.0]))), rtol=1e-6
    )


def test_prepare_fits_duration_statistics_on_training_events_only():
    import pandas as pd

    from durgru_jax.data.dataset import TRAIN, PrepConfig, prepare

    # leave-one-out: each user's last event is test, the one before validation
    events = pd.DataFrame(
        {
            "user": [7] * 5 + [3] * 5,
            "item": [1, 2, 3, 4, 5, 2, 3, 4, 5, 6],
            "timestamp": [1.0, 2.0, 3.0, 4.0, 5.0] * 2,
            "duration": [10.0, 20.0, 40.0, 30.0, 1000.0, 5.0, 6.0, 9.0, 2.0, 3.0],
        }
    )
    cfg = PrepConfig(duration_transform="log1p", duration_min_events=3, gap_buckets=0)
    ref = prepare(events, cfg)
    u7 = int(ref.user[np.flatnonzero(ref.split == TRAIN)][0])
    np.testing.assert_allclose(ref.dur_mean[u7], LOG_MEAN, atol=1e-5)
    np.testing.assert_allclose(ref.dur_std[u7], LOG_STD, atol=1e-5)
    changed = events.copy()
    changed.loc[[3, 4, 8, 9], "duration"] = [1e5, np.nan, 0.0, 777.0]
    got = prepare(changed, cfg)
    np.testing.assert_array_equal(got.split, ref.split)
    np.testing.assert_array_equal(got.dur_mean, ref.dur_mean)
    np.testing.assert_array_equal(got.dur_std, ref.dur_std)
    np.testing.assert_array_equal(got.dur_user_ok, ref.dur_user_ok)


def test_duration_scale_two_makes_an_average_or_unknown_event_exactly_one():
    import jax.numpy as jnp

    from durgru_jax.duration import duration_factor

    value = jnp.array([[1.0, 3.0, 0.0]])
    valid = jnp.array([[True, True, False]])
    mean, std, ok = jnp.array([1.0]), jnp.array([2.0]), jnp.array([True])
    a1 = duration_factor(value, valid, mean, std, ok)
    a2 = duration_factor(value, valid, mean, std, ok, scale=2.0)
    np.testing.assert_allclose(a2, 2.0 * a1)
    assert float(a2[0, 0]) == 1.0 and float(a2[0, 2]) == 1.0  # z = 0 and unknown
    assert float(a1[0, 0]) == 0.5
