"""The seen-item offset (durgru_jax/seen.py): its seen sets by hand, the fused loss and its
gradient against a dense softmax written out in numpy and in jax, causality, ``b = 0`` as the
plain model, the evaluator's ranking against brute force, and its config checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rank_windows, window_examples

from durgru_jax import seen
from durgru_jax.config import (
    ConfigError,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from durgru_jax.loss import full_softmax_loss_sum, losses, seen_softmax_loss_sum
from durgru_jax.model import encode, init_params, score_factors, user_vector

N_ITEMS = 9
B, T = 3, 6
CFG = ModelConfig(
    cell="gru",
    duration_mode="none",
    embed_dim=4,
    hidden_dim=5,
    dropout=0.0,
    n_items=N_ITEMS,
    seen_bias=True,
)
PLAIN = dataclasses.replace(CFG, seen_bias=False)
_seen_sum = jax.jit(seen_softmax_loss_sum)
_encode = jax.jit(encode, static_argnums=1)


def _params(b: float = -1.5, seed: int = 0):
    p = init_params(CFG, seed)
    p["seen"]["b"] = jnp.asarray(b, jnp.float32)
    p["out"]["b"] = jnp.asarray(np.random.default_rng(seed).normal(0, 1, N_ITEMS + 1), jnp.float32)
    return p


def _batch() -> dict[str, np.ndarray]:
    """Row 0: one sequence with repeats; row 1: two packed sequences (reset at step 3);
    row 2: three events, then padding whose ids are not 0 (masked)."""
    items = np.array([[5, 4, 5, 2, 4, 1], [1, 3, 1, 3, 6, 3], [7, 7, 2, 9, 9, 9]], np.int32)
    targets = np.array([[4, 5, 2, 4, 1, 6], [3, 1, 0, 6, 3, 8], [7, 2, 5, 0, 0, 0]], np.int32)
    mask = np.arange(T)[None, :] < np.array([[6], [6], [3]])
    reset = np.zeros((B, T), bool)
    reset[:, 0] = True
    reset[1, 3] = True
    return {"items": items, "mask": mask, "reset": reset, "targets": targets}


def _np_seen_sets(batch) -> dict[tuple[int, int], set[int]]:
    """The items of the real steps ``s <= t`` of step t's sequence, for every real step."""
    out = {}
    for r, t in zip(*np.nonzero(batch["mask"]), strict=True):
        start = max(s for s in range(t + 1) if batch["reset"][r, s])
        out[r, t] = {int(batch["items"][r, s]) for s in range(start, t + 1) if batch["mask"][r, s]}
    return out


def test_seen_ids_by_hand():
    ids = np.asarray(seen.train_ids(_batch())).reshape(B, T, T)
    # row 0, step 2: items 5, 4, 5 -> 5 and 4 once each (the second 5 is not a first step)
    np.testing.assert_array_equal(ids[0, 2], [5, 4, 0, 0, 0, 0])
    np.testing.assert_array_equal(ids[0, 5], [5, 4, 0, 2, 0, 1])
    # row 1: the second sequence starts at step 3 and does not see the first's items
    np.testing.assert_array_equal(ids[1, 2], [1, 3, 0, 0, 0, 0])
    np.testing.assert_array_equal(ids[1, 5], [0, 0, 0, 3, 6, 0])
    # row 2: item 7 twice, then padding (ids 9, masked) is never seen
    np.testing.assert_array_equal(ids[2, 2], [7, 0, 2, 0, 0, 0])
    np.testing.assert_array_equal(ids[2, 5], [7, 0, 2, 0, 0, 0])
    sets = _np_seen_sets(_batch())
    for (r, t), want in sets.items():
        got = ids[r, t][ids[r, t] > 0]
        assert sorted(got.tolist()) == sorted(want), (r, t)


def _user_vectors(params, batch):
    hs, _ = _encode(params, CFG, batch)
    return user_vector(params, CFG, hs)


def _np_step_ce(params, batch) -> np.ndarray:
    """Per real step with a target: the softmax cross-entropy, written out in float64, where
    the step's seen items score ``l_i + b``."""
    u = np.asarray(_user_vectors(params, batch), np.float64)
    v, c = (np.asarray(x, np.float64) for x in score_factors(params, CFG))
    b = float(params["seen"]["b"])
    ce = np.zeros((B, T))
    for (r, t), items in _np_seen_sets(batch).items():
        tgt = batch["targets"][r, t]
        if tgt == 0:
            continue
        logits = u[r, t] @ v + c
        for i in items:
            logits[i] += b
        logits = logits[1:]  # id 0 never scores
        ce[r, t] = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[tgt - 1]
    return ce


def _fused_step_ce(params, batch) -> np.ndarray:
    """Per step: `seen_softmax_loss_sum` with weight 1 on that step alone."""
    u = _user_vectors(params, batch).reshape(B * T, -1)
    v, c = score_factors(params, CFG)
    ids, b = seen.train_ids(batch), params["seen"]["b"]
    tgt = jnp.asarray(batch["targets"]).reshape(-1)
    out = np.zeros(B * T)
    for m in range(B * T):
        w = jnp.zeros(B * T).at[m].set(1.0)
        out[m] = _seen_sum(u, v, c, tgt, w, ids, b)
    valid = batch["mask"] & (batch["targets"] > 0)
    return np.where(valid, out.reshape(B, T), 0.0)


def test_loss_matches_a_numpy_softmax_with_the_offset():
    params, batch = _params(), _batch()
    np.testing.assert_allclose(_fused_step_ce(params, batch), _np_step_ce(params, batch), rtol=1e-5)
    # and through `losses`: the mean over the valid steps
    got, _ = losses(params, CFG, LossConfig(aux_weight=0.0), batch, jax.random.key(0), None)
    valid = batch["mask"] & (batch["targets"] > 0)
    np.testing.assert_allclose(got, _np_step_ce(params, batch).sum() / valid.sum(), rtol=1e-5)


def test_later_events_do_not_change_earlier_steps():
    params, batch = _params(), _batch()
    before = _fused_step_ce(params, batch)
    later = dict(batch, items=batch["items"].copy())
    later["items"][0, 3:] = [4, 5, 4]  # row 0 from step 3: earlier items again
    after = _fused_step_ce(params, later)
    np.testing.assert_allclose(after[0, :3], before[0, :3], rtol=1e-6)
    assert not np.allclose(after[0, 3:], before[0, 3:])
    np.testing.assert_allclose(after[1:], before[1:], rtol=1e-6)


def test_fused_gradient_matches_autodiff_of_a_dense_softmax():
    params, batch = _params(), _batch()
    u = _user_vectors(params, batch).reshape(B * T, -1)
    v, c = score_factors(params, CFG)
    ids, b = seen.train_ids(batch), params["seen"]["b"]
    tgt = jnp.asarray(batch["targets"]).reshape(-1)
    w = jnp.asarray((batch["mask"] & (batch["targets"] > 0)).reshape(-1) / 7.0, jnp.float32)

    def dense(u, v, c, b):
        logits = (u @ v + c).at[:, 0].set(-jnp.inf)
        onehot = jnp.zeros_like(logits).at[jnp.arange(B * T)[:, None], ids].set(1.0)
        logits = logits + b * onehot.at[:, 0].set(0.0)
        ce = jax.nn.logsumexp(logits, axis=1) - logits[jnp.arange(B * T), tgt]
        return jnp.sum(jnp.where(w != 0, w * ce, 0.0))

    want_v, want_g = jax.value_and_grad(dense, argnums=(0, 1, 2, 3))(u, v, c, b)
    fused = lambda u, v, c, b: seen_softmax_loss_sum(u, v, c, tgt, w, ids, b)  # noqa: E731
    got_v, got_g = jax.value_and_grad(fused, argnums=(0, 1, 2, 3))(u, v, c, b)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-5)
    for got, want in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert abs(float(got_g[3])) > 1e-4  # the offset is learned


def test_a_zero_offset_is_the_plain_softmax():
    params, batch = _params(b=0.0), _batch()
    u = _user_vectors(params, batch).reshape(B * T, -1)
    v, c = score_factors(params, CFG)
    tgt = jnp.asarray(batch["targets"]).reshape(-1)
    w = jnp.asarray((batch["mask"] & (batch["targets"] > 0)).reshape(-1), jnp.float32)
    got = seen_softmax_loss_sum(u, v, c, tgt, w, seen.train_ids(batch), params["seen"]["b"])
    np.testing.assert_allclose(got, full_softmax_loss_sum(u, v, c, tgt, w), rtol=1e-6)


# ------------------------------------------------------------------------ the evaluator


def _np_ranking(params, ex, k: int = 4):
    """Brute force: logits after the last input, ``+ b`` on the window's items; ranks (ties
    against the model), top-k ids and scores."""
    _, h_last = _encode(params, CFG, {kk: ex[kk] for kk in ("items", "mask", "reset")})
    u = np.asarray(user_vector(params, CFG, h_last), np.float64)
    v, c = (np.asarray(x, np.float64) for x in score_factors(params, CFG))
    ranks, tops, scores = [], [], []
    for e in range(len(ex["target"])):
        s = u[e] @ v + c
        s[np.unique(ex["items"][e][ex["mask"][e]])] += float(params["seen"]["b"])
        s[0] = -np.inf
        tgt = ex["target"][e]
        ranks.append(np.sum(np.delete(s[1:], tgt - 1) >= s[tgt]))
        order = 1 + np.argsort(-s[1:], kind="stable")[:k]
        tops.append(order)
        scores.append(s[order])
    return np.array(ranks), np.array(tops), np.array(scores)


def test_evaluator_ranks_the_offset_scores_like_brute_force():
    params, ex = _params(b=-2.0), window_examples(N_ITEMS)
    got = rank_windows(params, CFG, ex, N_ITEMS, False)
    rank, top, score = _np_ranking(params, ex)
    np.testing.assert_array_equal(got.rank, rank)
    np.testing.assert_array_equal(got.top, top)
    np.testing.assert_allclose(got.top_score, score, rtol=1e-5)
    plain = rank_windows(
        {k: x for k, x in params.items() if k != "seen"}, PLAIN, ex, N_ITEMS, False
    )
    assert np.any(got.rank != plain.rank)  # the offset moved window targets


def test_with_excluded_history_the_offset_cannot_change_the_ranking():
    params, ex = _params(b=3.0), window_examples(N_ITEMS, seed=1)
    got = rank_windows(params, CFG, ex, N_ITEMS, True)
    plain = rank_windows({k: x for k, x in params.items() if k != "seen"}, PLAIN, ex, N_ITEMS, True)
    np.testing.assert_array_equal(got.rank, plain.rank)
    np.testing.assert_array_equal(got.top, plain.top)


# ------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "change",
    [
        {"model": dataclasses.replace(CFG, repeat_head=True)},
        {"loss": LossConfig(target="bpr_max")},
        {"train": TrainConfig(bptt=1)},
    ],
)
def test_the_offset_needs_the_full_softmax_without_repeat_head_or_bptt(change):
    parts = {"model": CFG, "loss": LossConfig(), "train": TrainConfig()} | change
    with pytest.raises(ConfigError, match="seen_bias"):
        RunConfig(0, parts["model"], parts["loss"], OptimConfig(), parts["train"], EvalConfig())
