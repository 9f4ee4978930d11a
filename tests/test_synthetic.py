"""Tests for durgru_jax.data.synthetic.generate_synthetic."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from durgru_jax.data.synthetic import generate_synthetic, synthetic_item_rings

_SMALL = {"n_users": 300, "n_items": 400, "n_topics": 8, "min_len": 20, "max_len": 60}


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return generate_synthetic(**_SMALL, seed=3)


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_columns_and_dtypes(log: pd.DataFrame) -> None:
    assert list(log.columns) == ["user", "item", "timestamp", "duration", "_is_noise"]
    assert log["user"].dtype == np.int64 and log["item"].dtype == np.int64
    assert log["timestamp"].dtype == np.float64 and log["duration"].dtype == np.float64
    assert log["_is_noise"].dtype == bool
    assert log["user"].between(0, _SMALL["n_users"] - 1).all()
    assert log["item"].between(0, _SMALL["n_items"] - 1).all()
    assert log["user"].nunique() == _SMALL["n_users"]


def test_deterministic_for_a_seed_and_seeds_differ(log: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(log, generate_synthetic(**_SMALL, seed=3))
    other = generate_synthetic(**_SMALL, seed=4)
    assert len(other) != len(log) or not np.array_equal(other["item"], log["item"])


def test_grouped_by_user_and_time_sorted(log: pd.DataFrame) -> None:
    users = log["user"].to_numpy()
    assert (np.diff(users) >= 0).all()
    same_user = np.diff(users) == 0
    assert (np.diff(log["timestamp"].to_numpy())[same_user] > 0).all()
    lengths = log.groupby("user").size()
    assert lengths.min() >= _SMALL["min_len"] and lengths.max() <= _SMALL["max_len"]


def test_no_repeated_items_and_positive_durations(log: pd.DataFrame) -> None:
    assert not log.duplicated(["user", "item"]).any()
    assert (log["duration"] > 0).all() and np.isfinite(log["duration"]).all()


def test_time_window_and_gaps_leave_room_for_dwell(log: pd.DataFrame) -> None:
    first = log.groupby("user")["timestamp"].min()
    start = pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert first.between(start, start + 30 * 86400).all()
    gap = log.groupby("user")["timestamp"].diff().shift(-1)
    valid = gap.notna()
    assert (gap[valid] >= log["duration"][valid]).all()


def test_noise_rate_is_respected(log: pd.DataFrame) -> None:
    assert log["_is_noise"].mean() == pytest.approx(0.3, abs=0.03)


def test_user_normalised_dwell_separates_noise(log: pd.DataFrame) -> None:
    genuine = ~log["_is_noise"].to_numpy()
    log_dwell = np.log(log["duration"])
    by_user = log_dwell.groupby(log["user"])
    z = ((log_dwell - by_user.transform("mean")) / by_user.transform("std")).to_numpy()
    assert z[genuine].mean() - z[~genuine].mean() > 1.5
    auc_normalised = _auc(z, genuine)
    auc_raw = _auc(log["duration"].to_numpy(), genuine)
    assert auc_normalised > 0.97
    # The per-user speed confounds raw durations; normalising must clearly help.
    assert auc_normalised - auc_raw > 0.04


def test_genuine_items_follow_the_topic_ring(log: pd.DataFrame) -> None:
    rings = synthetic_item_rings(_SMALL["n_items"], _SMALL["n_topics"], seed=3)
    assert sorted(np.concatenate(rings).tolist()) == list(range(_SMALL["n_items"]))
    topic = np.empty(_SMALL["n_items"], np.int64)
    position = np.empty(_SMALL["n_items"], np.int64)
    size = np.empty(_SMALL["n_items"], np.int64)
    for t, ring in enumerate(rings):
        topic[ring], position[ring], size[ring] = t, np.arange(len(ring)), len(ring)
    genuine = log[~log["_is_noise"]]
    previous = genuine.groupby("user")["item"].shift()
    has_previous = previous.notna().to_numpy()
    prev = previous[has_previous].astype(np.int64).to_numpy()
    cur = genuine["item"].to_numpy()[has_previous]
    same_topic = topic[prev] == topic[cur]
    step = (position[cur] - position[prev]) % size[cur]
    assert same_topic.mean() > 0.75
    assert ((step[same_topic] >= 1) & (step[same_topic] <= 2)).mean() > 0.9
    noise = log[log["_is_noise"]]
    noise_prev = noise.index - 1
    noise_prev = noise_prev[noise_prev >= 0]
    same = (
        topic[log["item"].to_numpy()[noise_prev]] == topic[log["item"].to_numpy()[noise_prev + 1]]
    )
    assert same.mean() < 0.4


def test_drift_zero_and_all_noise() -> None:
    no_drift = generate_synthetic(
        n_users=20, n_items=200, n_topics=2, min_len=30, max_len=30, noise_rate=0.0, drift=0.0
    )
    rings = synthetic_item_rings(200, 2, seed=0)
    topic = np.zeros(200, np.int64)
    topic[rings[1]] = 1
    assert (no_drift.groupby("user")["item"].agg(lambda s: topic[s].std()) == 0).all()
    all_noise = generate_synthetic(n_users=5, n_items=50, min_len=50, max_len=50, noise_rate=1.0)
    assert all_noise["_is_noise"].all()
    assert (all_noise.groupby("user")["item"].nunique() == 50).all()


def test_exhausted_rings_switch_topic() -> None:
    frame = generate_synthetic(
        n_users=10, n_items=40, n_topics=4, min_len=40, max_len=40, noise_rate=0.0, drift=0.0
    )
    assert (frame.groupby("user")["item"].nunique() == 40).all()


def test_default_size_is_fast() -> None:
    start = time.perf_counter()
    frame = generate_synthetic(min_len=60, max_len=60)
    assert len(frame) == 2000 * 60
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_items": 2.5}, "n_items"),
        ({"n_topics": 2000}, "n_topics"),
        ({"min_len": 0}, "min_len"),
        ({"min_len": 30, "max_len": 10}, "max_len"),
        ({"max_len": 5000}, "max_len"),
        ({"noise_rate": 1.5}, "noise_rate"),
        ({"drift": -0.1}, "drift"),
        ({"seed": -1}, "seed"),
        ({"genuine_dwell": 0.0}, "genuine_dwell"),
        ({"noise_dwell": float("nan")}, "noise_dwell"),
        ({"user_speed_sigma": -1.0}, "user_speed_sigma"),
        ({"n_users": True}, "n_users"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        generate_synthetic(**kwargs)
