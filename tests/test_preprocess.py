"""Preprocessing switches (sessions, k-core, repeats, temporal split, derived dwell) and the
delayed-duration encoder that keeps a derived dwell from leaking the next click's time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from durgru_jax.config import ModelConfig
from durgru_jax.data.dataset import TEST, TRAIN, VALID, PrepConfig, eval_examples, prepare
from durgru_jax.model import encode, init_params

DAY = 86400.0


def _events(rows):
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def test_sessionisation_cuts_at_long_gaps_and_keeps_the_owner_statistics():
    ev = _events([("u", 1, 0), ("u", 2, 10), ("u", 3, 5000), ("u", 4, 5010), ("v", 1, 0)])
    ev["duration"] = [1.0, 2.0, 4.0, 8.0, 3.0]
    p = prepare(
        ev,
        PrepConfig(
            session_gap_s=100,
            split="random",
            random_test_ratio=0.0,
            random_valid_ratio=0.0,
            duration_min_events=2,
        ),
    )
    assert p.n_users == 3  # two sessions of u, one of v
    assert p.info["n_sequences"] == 3
    assert list(p.offsets) == [0, 2, 4, 5]
    # Both sessions of u share u's statistics over all four of u's training durations.
    assert p.dur_mean[0] == pytest.approx(p.dur_mean[1])
    assert p.dur_mean[0] == pytest.approx(np.mean(np.log1p([1.0, 2.0, 4.0, 8.0])), rel=1e-6)


def test_kcore_is_iterative():
    # Item 9 has one event; dropping it leaves user b with one event, which then goes too,
    # and with it item 5's second event.
    ev = _events(
        [("a", 1, 0), ("a", 5, 1), ("a", 1, 2), ("b", 9, 0), ("b", 5, 1), ("c", 1, 0), ("c", 1, 1)]
    )
    p = prepare(
        ev,
        PrepConfig(
            kcore_users=2, kcore_items=2, split="random", random_test_ratio=0, random_valid_ratio=0
        ),
    )
    assert p.info["kcore_dropped"] == 3  # (b,9), then (b,5), then (a,5)
    assert sorted(p.item_ids[1:].tolist()) == [1]


def test_consecutive_repeats_dropped_within_a_sequence_only():
    ev = _events([("a", 1, 0), ("a", 1, 1), ("a", 2, 2), ("a", 1, 3), ("b", 1, 0)])
    p = prepare(
        ev,
        PrepConfig(
            drop_consecutive_repeats=True, split="random", random_test_ratio=0, random_valid_ratio=0
        ),
    )
    assert p.info["consecutive_repeats_dropped"] == 1
    assert len(p.item) == 4


def test_temporal_split_by_sequence_and_all_past_evaluation_inputs():
    rows = []
    for s in range(6):  # one session per day, 3 clicks each
        for k in range(3):
            rows.append((f"s{s}", 1 + (s + k) % 4, s * DAY + k * 60))
    p = prepare(
        _events(rows),
        PrepConfig(split="temporal", temporal_test_days=1, temporal_valid_days=1, max_len=5),
    )
    per_seq = [set(p.split[p.offsets[u] : p.offsets[u + 1]]) for u in range(p.n_users)]
    assert per_seq[-1] == {TEST} and per_seq[-2] == {VALID}
    assert all(s == {TRAIN} for s in per_seq[:-2])
    assert p.all_past_visible
    ex = eval_examples(p, "test")
    # The first click of the test session is not a target; the next two are, each with the
    # earlier clicks of the same (test) session as inputs.
    assert len(ex["target"]) == 2
    assert ex["mask"][0].sum() == 1 and ex["mask"][1].sum() == 2


def test_next_gap_dwell_is_capped_and_missing_on_a_sequences_last_event():
    ev = _events([("a", 1, 0), ("a", 2, 30), ("a", 3, 5000), ("b", 1, 0), ("b", 2, 7)])
    p = prepare(
        ev,
        PrepConfig(
            duration_proxy="next_gap",
            dwell_cap_s=100,
            duration_transform="none",
            split="random",
            random_test_ratio=0,
            random_valid_ratio=0,
        ),
    )
    np.testing.assert_allclose(p.dur[p.dur_ok], [30, 100, 7])
    assert list(p.dur_ok) == [True, True, False, True, False]
    assert "next_gap" in p.info["duration_source"]


@pytest.mark.parametrize("cell", ["gru", "agru"])
def test_duration_delay_hides_the_current_events_duration_from_its_prediction(cell):
    cfg = ModelConfig(
        cell=cell,
        duration_mode="input",
        embed_dim=4,
        hidden_dim=3,
        dropout=0.0,
        n_items=10,
        duration_delay=1,
    )
    params = init_params(cfg, 0)
    t = 5
    batch = {
        "items": jnp.arange(1, t + 1)[None],
        "mask": jnp.ones((1, t), bool),
        "reset": jnp.zeros((1, t), bool).at[0, 0].set(True),
        "in_ctx": jnp.zeros((1, t), jnp.int32),
        "tr_ctx": jnp.zeros((1, t), jnp.int32),
        "dur_ok": jnp.ones((1, t), bool),
        "dur_mean": jnp.zeros((1, t)),
        "dur_std": jnp.ones((1, t)),
        "dur_user_ok": jnp.ones((1, t), bool),
    }

    def out_t(dur, step, delay):
        c = cfg if delay else ModelConfig(**{**cfg.__dict__, "duration_delay": 0})
        hs, _ = encode(params, c, {**batch, "dur": dur})
        return jnp.sum(hs[0, step])

    dur = jnp.linspace(-1.0, 1.0, t)[None]
    g1 = jax.grad(out_t)(dur, 3, True)[0]
    assert float(g1[3]) == 0.0 and float(jnp.abs(g1[2])) > 0  # own dwell hidden, past used
    assert np.all(np.asarray(g1[4:]) == 0.0)
    g0 = jax.grad(out_t)(dur, 3, False)[0]
    assert float(jnp.abs(g0[3])) > 0  # without the delay the current duration is used


def test_shuffled_durations_keep_each_users_values_but_break_the_event_link():
    rng = np.random.default_rng(0)
    n = 400
    ev = _events([(f"u{i % 4}", int(rng.integers(1, 50)), float(i)) for i in range(n)])
    ev["duration"] = rng.lognormal(3, 1, n)
    cfg = dict(duration_transform="none", split="random", random_test_ratio=0.2)
    p0 = prepare(ev, PrepConfig(**cfg))
    p1 = prepare(ev, PrepConfig(**cfg, shuffle_durations=True))
    assert not np.allclose(p0.dur, p1.dur)
    for u in range(p0.n_users):
        for sp in (TRAIN, VALID, TEST):
            sel = (p0.user == u) & (p0.split == sp)
            np.testing.assert_allclose(np.sort(p0.dur[sel]), np.sort(p1.dur[sel]))
    np.testing.assert_allclose(p0.dur_mean, p1.dur_mean, rtol=1e-5)
    assert "shuffled" in p1.info["duration_source"]


def test_packed_windows_hold_the_same_transitions_and_give_the_same_loss():
    from durgru_jax.data.dataset import train_windows
    from durgru_jax.loss import full_softmax_loss
    from durgru_jax.model import score_factors, user_vector

    rng = np.random.default_rng(1)
    rows = [
        (f"u{u}", int(rng.integers(1, 30)), float(t))
        for u in range(25)
        for t in range(int(rng.integers(3, 12)))
    ]
    ev = _events(rows)
    ev["duration"] = rng.lognormal(2, 1, len(ev))
    p = prepare(ev, PrepConfig(max_len=8))
    plain, packed = train_windows(p), train_windows(p, pack=True)
    assert len(packed["items"]) < len(plain["items"])
    pairs = lambda w: sorted(zip(w["items"][w["mask"]], w["targets"][w["mask"]], strict=True))  # noqa: E731
    assert pairs(plain) == pairs(packed)
    assert packed["reset"].sum() == plain["reset"].sum()  # one reset per window

    cfg = ModelConfig(
        cell="agru",
        duration_mode="input",
        embed_dim=4,
        hidden_dim=5,
        dropout=0.0,
        n_items=p.n_items,
        n_input_contexts=p.n_input_contexts,
        n_transfer_contexts=p.n_transfer_contexts,
    )
    params = init_params(cfg, 0)

    def total(w):
        batch = {k: jnp.asarray(v) for k, v in w.items() if k != "user"}
        hs, _ = encode(params, cfg, batch)
        v, c = score_factors(params, cfg)
        u = user_vector(params, cfg, hs).reshape(-1, hs.shape[-1])
        per = full_softmax_loss(u, v, c, batch["targets"].reshape(-1))
        valid = (batch["mask"] & (batch["targets"] > 0)).reshape(-1)
        return float(jnp.sum(jnp.where(valid, per, 0.0)))

    assert total(packed) == pytest.approx(total(plain), rel=1e-5)


def test_next_gap_dwell_break_leaves_long_pauses_without_dwell():
    ev = _events([("a", 1, 0), ("a", 2, 30), ("a", 3, 5000), ("a", 4, 5010)])
    p = prepare(
        ev,
        PrepConfig(
            duration_proxy="next_gap",
            dwell_cap_s=20,
            dwell_break_s=100,
            duration_transform="none",
            split="random",
            random_test_ratio=0,
            random_valid_ratio=0,
        ),
    )
    assert list(p.dur_ok) == [True, False, True, False]
    np.testing.assert_allclose(p.dur[p.dur_ok], [20, 10])
