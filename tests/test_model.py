"""Tests for durgru_jax.model: causality, batch independence, the losses of eq. (12)-(14)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax import cells
from durgru_jax.config import ConfigError, LossConfig, ModelConfig
from durgru_jax.loss import (
    aux_loss,
    full_softmax_loss,
    losses,
    sample_negatives,
    sampled_softmax_loss,
)
from durgru_jax.model import encode, init_params, rating_deviation, score_factors, user_vector
from durgru_jax.recommend_inputs import MODEL_INPUTS

N_ITEMS, CI, CT = 30, 2, 3


def _cfg(cell="agru", mode="input", **kw) -> ModelConfig:
    base = dict(
        cell=cell,
        duration_mode=mode,
        embed_dim=6,
        hidden_dim=5,
        dropout=0.0,
        n_items=N_ITEMS,
        n_input_contexts=CI,
        n_transfer_contexts=CT,
    )
    base.update(kw)
    return ModelConfig(**base)


@functools.cache
def _params(cfg: ModelConfig, seed: int = 0):
    return init_params(cfg, seed)


def _batch(b=3, t=6, seed=0, lengths=None, unique_items=False) -> dict[str, np.ndarray]:
    """A random batch with right padding and per-step duration statistics."""
    rng = np.random.default_rng(seed)
    lengths = lengths if lengths is not None else rng.integers(1, t + 1, size=b)
    mask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
    if unique_items:
        items = (1 + rng.permutation(N_ITEMS)[: b * t]).reshape(b, t).astype(np.int32)
    else:
        items = rng.integers(1, N_ITEMS + 1, size=(b, t)).astype(np.int32)
    items = np.where(mask, items, 0)
    reset = np.zeros((b, t), bool)
    reset[:, 0] = True
    targets = np.where(mask, rng.integers(1, N_ITEMS + 1, size=(b, t)), 0).astype(np.int32)
    targets[:, -1] = 0  # the last step of a window may have no next item
    return {
        "items": items,
        "mask": mask,
        "reset": reset,
        "in_ctx": np.where(mask, rng.integers(0, CI, (b, t)), 0).astype(np.int32),
        "tr_ctx": np.where(mask, rng.integers(0, CT, (b, t)), 0).astype(np.int32),
        "dur": rng.normal(2.0, 1.0, (b, t)).astype(np.float32),
        "dur_ok": mask & (rng.random((b, t)) < 0.9),
        "dur_mean": np.full((b, t), 2.0, np.float32),
        "dur_std": np.full((b, t), 0.8, np.float32),
        "dur_user_ok": np.ones((b, t), bool),
        "targets": targets,
        "rating_target": rng.uniform(1, 5, (b, t)).astype(np.float32),
        "rating_ok": mask & (rng.random((b, t)) < 0.8),
    }


# One batch shape (B, T) = (4, 6) everywhere, and a few jitted entry points, so that the
# compilations are shared between tests.
B, T = 4, 6
_encode = jax.jit(encode, static_argnums=1)
_losses = jax.jit(losses, static_argnums=(1, 2, 6))
_vg_losses = jax.jit(jax.value_and_grad(losses, has_aux=True), static_argnums=(1, 2, 6))
_aux_loss = jax.jit(aux_loss)
_sample_negatives = jax.jit(sample_negatives, static_argnums=(2, 3))
_full_softmax_loss = jax.jit(full_softmax_loss)
_sampled_softmax_loss = jax.jit(sampled_softmax_loss, static_argnums=6)
_categorical = jax.jit(jax.random.categorical, static_argnames="shape")


def _np(tree):
    return jax.tree.map(np.asarray, tree)


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("cell", ["gru", "agru"])
@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_encode_is_causal(cell, mode):
    cfg = _cfg(cell, mode)
    params = _params(cfg)
    batch = _batch(B, T, seed=1, lengths=[T] * B, unique_items=True)
    batch["dur_ok"][:] = True
    items = batch["items"]

    @jax.jit
    def jac(emb, dur):
        def out(emb_, dur_):  # [B, T]: the sum of each state
            hs, _ = encode(dict(params, item_emb=emb_), cfg, dict(batch, dur=dur_))
            return jnp.sum(hs, axis=-1)

        return jax.jacrev(out, argnums=(0, 1))(emb, dur)

    # d out[row, step] / d (embedding of items[r, pos]) and / d dur[r, pos]
    j_emb, j_dur = jac(params["item_emb"], jnp.asarray(batch["dur"]))
    j_emb = np.abs(np.asarray(j_emb)).max(-1)[:, :, items]  # [B, T, B, T]
    j_dur = np.asarray(j_dur)
    for idx in np.ndindex(B, T, B, T):
        row, step, r, pos = idx
        if r != row or pos > step:
            assert j_emb[idx] == 0.0, idx
            assert j_dur[idx] == 0.0, idx
        else:
            assert j_emb[idx] > 0.0, idx
            if mode == "none":
                assert j_dur[idx] == 0.0, idx
            else:
                assert j_dur[idx] != 0.0, idx


# --------------------------------------------------------------------------- batch composition


@pytest.mark.parametrize("cell,mode", [("gru", "input"), ("agru", "gate")])
def test_row_outputs_independent_of_batch(cell, mode):
    cfg = _cfg(cell, mode)
    params = _params(cfg)
    batch = _batch(B, T, seed=2, lengths=[1, 6, 4, 3])
    row = 2  # 4 events
    hs_b, last_b = _encode(params, cfg, batch)
    # the same row alone
    alone = {k: v[[row]] for k, v in batch.items()}
    hs_1, last_1 = _encode(params, cfg, alone)
    # alone with 3 more padded steps
    padded = {
        k: np.concatenate([v, (np.ones if k == "dur_std" else np.zeros)((1, 3), v.dtype)], 1)
        for k, v in alone.items()
    }
    hs_p, last_p = _encode(params, cfg, padded)
    # among other random rows, at another position
    other = _batch(B, T, seed=3)
    mixed = {k: np.concatenate([other[k][:1], batch[k][[row]], other[k][2:]]) for k in batch}
    hs_m, last_m = _encode(params, cfg, mixed)
    for hs_x, last_x in ((hs_b[row], last_b[row]), (hs_p[0, :T], last_p[0]), (hs_m[1], last_m[1])):
        np.testing.assert_allclose(hs_x, hs_1[0], atol=1e-6)
        np.testing.assert_allclose(last_x, last_1[0], atol=1e-6)
    np.testing.assert_allclose(last_1[0], hs_1[0, 3], atol=1e-7)  # the state after event 4
    assert not np.allclose(hs_m[0], hs_1[0], atol=1e-3)  # the rows do differ


# --------------------------------------------------------------------------- auxiliary loss


def _naive_aux(params, hs, target, neg, valid):
    w = np.asarray(params["aux"]["w"], np.float64)
    emb = np.asarray(params["item_emb"], np.float64)
    hs = np.asarray(hs, np.float64)
    total, n = 0.0, 0
    for b in range(hs.shape[0]):
        for t in range(hs.shape[1]):
            if not valid[b, t]:
                continue
            a = hs[b, t] @ w
            sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
            step = -np.log(sig(a @ emb[target[b, t]]))
            step -= np.mean([np.log(1.0 - sig(a @ emb[j])) for j in neg[b, t]])
            total += step
            n += 1
    return total / n


@pytest.mark.parametrize("k", [1, 3])
def test_aux_loss_matches_naive_eq13(k):
    cfg = _cfg("gru", "input")
    params = dict(_params(cfg))
    rng = np.random.default_rng(4)
    params["aux"] = {"w": jnp.asarray(rng.normal(size=(5, 6)).astype(np.float32))}
    b, t = 3, 5
    hs = rng.normal(size=(b, t, 5)).astype(np.float32)
    target = rng.integers(1, N_ITEMS + 1, (b, t)).astype(np.int32)
    neg = rng.integers(1, N_ITEMS + 1, (b, t, k)).astype(np.int32)
    valid = rng.random((b, t)) < 0.6
    valid[0, 0] = True
    got = float(_aux_loss(params, hs, target, neg, valid))
    want = _naive_aux(params, hs, target, neg, valid)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # values at invalid steps do not matter
    inv = ~valid
    hs2 = np.where(inv[..., None], rng.normal(size=hs.shape) * 5, hs).astype(np.float32)
    target2 = np.where(inv, rng.integers(0, N_ITEMS + 1, (b, t)), target).astype(np.int32)
    neg2 = np.where(inv[..., None], rng.integers(1, N_ITEMS + 1, neg.shape), neg).astype(np.int32)
    np.testing.assert_allclose(float(_aux_loss(params, hs2, target2, neg2, valid)), got, rtol=1e-6)
    # and the average is over valid steps: duplicating the batch leaves it unchanged
    dup = lambda a: np.concatenate([a, a])  # noqa: E731
    got2 = float(_aux_loss(params, dup(hs), dup(target), dup(neg), dup(valid)))
    np.testing.assert_allclose(got2, got, rtol=1e-6)


# --------------------------------------------------------------------------- negatives


def test_sample_negatives_never_positive_and_in_range():
    n = 5
    pos = jnp.asarray(np.tile(np.arange(1, n + 1), 400).astype(np.int32))
    logp = jnp.asarray(np.log([0.6, 0.2, 0.1, 0.05, 0.05]), jnp.float32)
    for logp_ in (None, logp):
        neg = np.asarray(_sample_negatives(jax.random.PRNGKey(0), pos, n, 8, logp_))
        assert neg.shape == (len(pos), 8)
        assert neg.min() >= 1 and neg.max() <= n
        assert not np.any(neg == np.asarray(pos)[:, None])


def _chi2(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def test_sample_negatives_uniform_over_other_items():
    n = 5
    for p in range(1, n + 1):
        pos = jnp.full((2000,), p, jnp.int32)  # one compiled shape for all these tests
        neg = np.asarray(_sample_negatives(jax.random.PRNGKey(p), pos, n, 8, None)).ravel()
        counts = np.bincount(neg, minlength=n + 1)[1:]
        assert counts[p - 1] == 0
        others = np.delete(counts, p - 1)
        # 3 degrees of freedom: chi2 > 25 has probability < 1e-4
        assert _chi2(others, np.full(n - 1, 1.0 / (n - 1))) < 25.0, others


def test_sample_negatives_popularity():
    n = 5
    pop = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    pos_id = 2
    pos = jnp.full((2000,), pos_id, jnp.int32)
    logp = jnp.asarray(np.log(pop), jnp.float32)
    neg = np.asarray(_sample_negatives(jax.random.PRNGKey(7), pos, n, 8, logp)).ravel()
    counts = np.bincount(neg, minlength=n + 1)[1:]
    assert counts[pos_id - 1] == 0
    # a draw of the positive is replaced by a uniform draw over the other items
    expected = pop + pop[pos_id - 1] / (n - 1)
    expected[pos_id - 1] = 0.0
    others = np.delete(counts, pos_id - 1)
    assert _chi2(others, np.delete(expected, pos_id - 1)) < 25.0, (counts, expected)
    # popularity ordering is visible
    assert counts[0] > counts[2] > counts[3] > counts[4]


# --------------------------------------------------------------------------- target losses


def test_full_softmax_loss_matches_naive():
    rng = np.random.default_rng(5)
    m, d, n = 4, 3, 7
    u = rng.normal(size=(m, d)).astype(np.float32)
    v = rng.normal(size=(d, n + 1)).astype(np.float32)
    c = rng.normal(size=n + 1).astype(np.float32)
    c[0] = 100.0  # a huge padding score must not matter
    tgt = np.array([1, 7, 3, 3], np.int32)
    got = np.asarray(_full_softmax_loss(u, v, c, tgt))
    logits = (u.astype(np.float64) @ v + c)[:, 1:]
    want = -(logits[np.arange(m), tgt - 1] - np.log(np.exp(logits).sum(1)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sampled_softmax_loss_matches_naive():
    """The docstring, step by step: at step t the positive competes with the other rows'
    targets at t and the S shared samples; every logit is reduced by ``log(n_t p_j + S q_j)``;
    candidates equal to the target and padding are removed."""
    rng = np.random.default_rng(6)
    b, t, d, n, s = 3, 2, 2, 5, 4
    u = rng.normal(size=(b, t, d)).astype(np.float32)
    v = rng.normal(size=(d, n + 1)).astype(np.float32)
    c = rng.normal(size=n + 1).astype(np.float32)
    tgt = np.array([[2, 1], [2, 4], [5, 0]], np.int32)
    valid = np.array([[True, True], [True, True], [False, False]])
    pop = np.array([0.0, 0.4, 0.3, 0.1, 0.1, 0.1])
    q = np.array([0.0, 0.1, 0.2, 0.3, 0.2, 0.2])
    with np.errstate(divide="ignore"):
        log_q = np.log(q).astype(np.float32)
    key = jax.random.PRNGKey(3)
    got = np.asarray(
        _sampled_softmax_loss(key, u, v, c, tgt, valid, s, jnp.asarray(log_q), jnp.asarray(pop))
    )
    assert got.shape == (b, t)
    sampled = np.asarray(_categorical(key, jnp.asarray(log_q), shape=(s,)))
    assert np.all(sampled > 0)

    for step in range(t):
        n_t = int(valid[:, step].sum())

        def logit(i, j, step=step, n_t=n_t):  # score minus log expected count of j
            score = float(u[i, step].astype(np.float64) @ v[:, j] + c[j])
            return score - np.log(n_t * pop[j] + s * q[j])

        in_batch = [int(tgt[r, step]) if valid[r, step] else 0 for r in range(b)]
        for i in range(b):
            if not valid[i, step]:
                continue
            y = int(tgt[i, step])
            pos = logit(i, y)
            cands = [pos]
            cands += [logit(i, j) for j in in_batch if j not in (0, y)]
            cands += [logit(i, int(j)) for j in sampled if j != y]
            want = np.log(np.sum(np.exp(cands))) - pos
            np.testing.assert_allclose(got[i, step], want, rtol=1e-5, err_msg=f"{i}, {step}")
    assert np.all(np.isfinite(got))


# --------------------------------------------------------------------------- losses()


def _log_pop():
    rng = np.random.default_rng(9)
    pop = rng.uniform(0.5, 2.0, N_ITEMS + 1)
    pop[0] = 0.0
    with np.errstate(divide="ignore"):
        return jnp.asarray(np.log(pop / pop.sum()).astype(np.float32))


def _naive_target_loss(params, cfg, batch, hs):
    """Mean over valid steps (real event with a next item) of -log softmax, id 0 excluded."""
    params = _np(params)
    v, c = score_factors(params, cfg)
    logits = (user_vector(params, cfg, np.asarray(hs)) @ v + c).astype(np.float64)[..., 1:]
    lse = np.log(np.exp(logits).sum(-1))
    vals = [
        lse[b, t] - logits[b, t, batch["targets"][b, t] - 1]
        for b, t in np.argwhere(batch["mask"] & (batch["targets"] > 0))
    ]
    return np.mean(vals)


@pytest.mark.parametrize("target", ["full", "sampled"])
def test_losses_total_is_weighted_sum_and_finite(target):
    cfg = _cfg("agru", "gate", rating_head=True)
    params = jax.tree.map(jnp.asarray, _params(cfg))
    rng = np.random.default_rng(10)
    params["rating"] = {
        "w": jnp.asarray(rng.normal(size=(5, 6)).astype(np.float32)),
        "b_item": jnp.asarray(rng.normal(size=N_ITEMS + 1).astype(np.float32)),
        "mu": jnp.asarray(3.0),
        "w_user": jnp.asarray(0.7),
    }
    lcfg = LossConfig(target=target, n_sampled=8, aux_weight=0.3, rating_weight=0.2)
    batch = _batch(B, T, seed=11, lengths=[6, 3, 5, 1])
    key = jax.random.PRNGKey(0)
    if target == "full":
        (total, parts), g = _vg_losses(params, cfg, lcfg, batch, key, _log_pop(), True)
        # gradients are finite although padded steps have target 0
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))
        assert np.abs(np.asarray(g["rating"]["w"])).max() > 0
    else:
        total, parts = _losses(params, cfg, lcfg, batch, key, _log_pop(), True)
    assert set(parts) == {"target_loss", "aux_loss", "rating_mse", "loss"}
    want = parts["target_loss"] + 0.3 * parts["aux_loss"] + 0.2 * parts["rating_mse"]
    np.testing.assert_allclose(total, want, rtol=1e-6)
    np.testing.assert_allclose(parts["loss"], total, rtol=1e-7)
    assert np.isfinite(float(total)) and float(parts["aux_loss"]) > 0

    # dropout is 0: the parts are those of the deterministic encoder
    hs, _ = _encode(params, _cfg("agru", "gate"), batch)
    if target == "full":
        np.testing.assert_allclose(
            parts["target_loss"], _naive_target_loss(params, cfg, batch, hs), rtol=1e-5
        )
    # the rating MSE by hand, on the valid steps with a rating
    hs = np.asarray(hs, np.float64)
    r = _np(params["rating"])
    emb = np.asarray(params["item_emb"], np.float64)
    errs = []
    for b, t in np.argwhere(batch["mask"] & (batch["targets"] > 0) & batch["rating_ok"]):
        j = batch["targets"][b, t]
        pred = 3.0 + float(r["b_item"][j]) + hs[b, t] @ np.asarray(r["w"], np.float64) @ emb[j]
        errs.append(pred - batch["rating_target"][b, t])
    np.testing.assert_allclose(parts["rating_mse"], np.mean(np.square(errs)), rtol=1e-5)


def test_target_loss_is_mean_full_softmax_over_valid_steps():
    cfg = _cfg("gru", "input")
    params = _params(cfg)
    batch = _batch(B, T, seed=12, lengths=[6, 2, 4, 5])
    lcfg = LossConfig(target="full", aux_weight=0.0)
    (total, parts), _ = _vg_losses(
        params, cfg, lcfg, batch, jax.random.PRNGKey(0), _log_pop(), False
    )
    assert set(parts) == {"target_loss", "loss"}
    hs, _ = _encode(params, cfg, batch)
    np.testing.assert_allclose(total, _naive_target_loss(params, cfg, batch, hs), rtol=1e-5)
    np.testing.assert_allclose(parts["loss"], parts["target_loss"], rtol=1e-7)
    # values at steps that are not valid do not matter
    noisy = dict(batch)
    invalid = ~(batch["mask"] & (batch["targets"] > 0))
    noisy["rating_target"] = batch["rating_target"] + 100.0
    noisy["targets"] = np.where(
        invalid & batch["mask"], 0, np.where(invalid, 7, batch["targets"])
    ).astype(np.int32)
    (total2, _), _ = _vg_losses(params, cfg, lcfg, noisy, jax.random.PRNGKey(0), _log_pop(), False)
    np.testing.assert_allclose(total2, total, rtol=1e-6)


def test_dropout_only_in_train_mode():
    cfg = _cfg("agru", "gate", dropout=0.5)
    params = _params(cfg)
    batch = _batch(B, T, seed=13, lengths=[6, 5, 4, 6])
    lcfg = LossConfig(target="full", aux_weight=0.0)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    tr1 = float(_losses(params, cfg, lcfg, batch, k1, _log_pop(), True)[0])
    tr1b = float(_losses(params, cfg, lcfg, batch, k1, _log_pop(), True)[0])
    tr2 = float(_losses(params, cfg, lcfg, batch, k2, _log_pop(), True)[0])
    ev1 = float(_losses(params, cfg, lcfg, batch, k1, _log_pop(), False)[0])
    ev2 = float(_losses(params, cfg, lcfg, batch, k2, _log_pop(), False)[0])
    assert tr1 == tr1b  # same key, same dropout
    assert tr1 != tr2
    assert ev1 == ev2
    assert ev1 != tr1
    # evaluation mode is the model without dropout
    cfg0 = _cfg("agru", "gate")
    hs0, _ = _encode(params, cfg0, batch)
    np.testing.assert_allclose(ev1, _naive_target_loss(params, cfg0, batch, hs0), rtol=1e-5)


# --------------------------------------------------------------------------- tied output


def test_tie_output_scores_with_item_embeddings():
    cfg = _cfg("gru", "input", tie_output=True)
    params = _params(cfg)
    assert set(params["out"]) == {"proj", "b"}
    v, c = score_factors(params, cfg)
    np.testing.assert_array_equal(v, np.asarray(params["item_emb"]).T)
    h = np.random.default_rng(14).normal(size=(2, 5)).astype(np.float32)
    pn = _np(params)
    np.testing.assert_allclose(user_vector(pn, cfg, h), h @ pn["out"]["proj"], rtol=1e-6)

    # Items 1..5 only in the inputs and targets: an item never seen gets gradient through the
    # output layer only when the output is tied to the embeddings.
    batch = _batch(B, T, seed=12, lengths=[6, 2, 4, 5])
    batch["items"] = np.where(batch["mask"], 1 + batch["items"] % 5, 0).astype(np.int32)
    batch["targets"] = np.where(batch["targets"] > 0, 1 + batch["targets"] % 5, 0).astype(np.int32)
    lcfg = LossConfig(target="full", aux_weight=0.0)
    key = jax.random.PRNGKey(0)

    (total, _), g = _vg_losses(params, cfg, lcfg, batch, key, _log_pop(), False)
    hs, _ = _encode(params, cfg, batch)
    np.testing.assert_allclose(total, _naive_target_loss(params, cfg, batch, hs), rtol=1e-5)
    cfg_u = _cfg("gru", "input")
    (_, _), g_u = _vg_losses(_params(cfg_u), cfg_u, lcfg, batch, key, _log_pop(), False)
    g_tied, g_untied = np.asarray(g["item_emb"]), np.asarray(g_u["item_emb"])
    assert np.abs(g_tied[20]).max() > 0.0
    assert np.all(g_untied[20] == 0.0)
    assert np.all(g_tied[0] == 0.0)  # padding id is never scored


# --------------------------------------------------------------------------- time-gap input


def _gap_params(cfg: ModelConfig, seed: int = 0):
    """The GRU's parameters with distinct, non-zero time-gap rows (they start at zero)."""
    params = _np(_params(cfg))
    rng = np.random.default_rng(seed)
    params["cell"]["w_gap"] = rng.normal(size=params["cell"]["w_gap"].shape).astype(np.float32)
    return params


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_gap_input_off_ignores_the_gap_and_on_starts_as_the_plain_gru(mode):
    off, on = _cfg("gru", mode), _cfg("gru", mode, gap_input=True)
    p_off, p_on = _np(_params(off)), _np(_params(on))
    assert "w_gap" not in p_off["cell"] and p_on["cell"]["w_gap"].shape == (CT, 15)
    assert not p_on["cell"]["w_gap"].any()  # zero at the start
    del p_on["cell"]["w_gap"]
    jax.tree.map(np.testing.assert_array_equal, p_on, p_off)  # the other draws are unchanged
    batch = _batch(B, T, seed=4)
    hs_off, last_off = _encode(p_off, off, batch)
    other_gaps = dict(batch, tr_ctx=(batch["tr_ctx"] + 1) % CT)
    hs_other, _ = _encode(p_off, off, other_gaps)
    np.testing.assert_array_equal(hs_other, hs_off)  # off: the gap is not read
    hs_on, last_on = _encode(_params(on), on, batch)
    np.testing.assert_array_equal(hs_on, hs_off)
    np.testing.assert_array_equal(last_on, last_off)


@pytest.mark.parametrize("mode", ["none", "input"])
def test_gap_input_adds_the_row_of_the_events_gap_bucket(mode):
    cfg = _cfg("gru", mode, gap_input=True)
    params = _gap_params(cfg)
    batch = _batch(B, T, seed=5, lengths=[T] * B)
    cell = params["cell"]
    x = params["item_emb"][batch["items"]]
    alpha = np.full((B, T), 0.7, np.float32)
    plain = {k: v for k, v in cell.items() if k != "w_gap"}
    got = cells.gru_inputs(cell, x, alpha, mode, batch["tr_ctx"])
    want = cells.gru_inputs(plain, x, alpha, mode) + cell["w_gap"][batch["tr_ctx"]]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="no gap_BxT"):
        cells.gru_inputs(cell, x, alpha, mode)
    if mode != "none":
        return
    # Through the model: the first step of each row is eq. (10)-(11) from a zero state with
    # that row's bucket row added to the input projections (dropout off).
    hs, _ = _encode(params, cfg, batch)
    for row in range(B):
        xp = x[row, 0] @ cell["w_x"] + cell["b"] + cell["w_gap"][batch["tr_ctx"][row, 0]]
        z = 1 / (1 + np.exp(-xp[:5]))  # H = 5; r meets a zero state
        np.testing.assert_allclose(hs[row, 0], z * np.tanh(xp[10:]), rtol=1e-5, atol=1e-6)


def _assert_input_is_causal(params, cfg, batch, field, other, positions, tol):
    """Another value of ``batch[field]`` at one event (``other`` of the old ones) leaves every
    earlier step's output as it was and changes that event's step in every row."""
    hs, _ = _encode(params, cfg, batch)
    for pos in positions:
        moved = batch[field].copy()
        moved[:, pos] = other(moved[:, pos])
        hs_m, _ = _encode(params, cfg, dict(batch, **{field: moved}))
        np.testing.assert_array_equal(hs_m[:, :pos], hs[:, :pos])  # earlier steps: unchanged
        assert np.all(np.abs(np.asarray(hs_m[:, pos]) - np.asarray(hs[:, pos])).max(-1) > tol)


def test_gap_input_is_causal():
    cfg = _cfg("gru", "gate", gap_input=True)
    params = _gap_params(cfg, seed=1)
    batch = _batch(B, T, seed=6, lengths=[T] * B)
    another_bucket = lambda c: (c + 1) % CT  # noqa: E731
    _assert_input_is_causal(params, cfg, batch, "tr_ctx", another_bucket, range(T), 1e-4)


def test_gap_input_needs_the_gru():
    with pytest.raises(ConfigError, match="gap_input=True needs config.model.cell='gru'"):
        _cfg("agru", "input", gap_input=True)


# --------------------------------------------------------------------------- rating input


def _rating_case(seed: int = 0):
    """A GRU with the rating head and ``rating_input``, non-zero ``w_rating``, and a batch of
    ratings (one in five missing)."""
    cfg = _cfg("gru", "gate", rating_head=True, rating_input=True)
    params = _np(_params(cfg))
    rng = np.random.default_rng(seed)
    w = rng.normal(size=params["cell"]["w_rating"].shape).astype(np.float32)
    params["cell"]["w_rating"] = w
    params["rating"]["mu"] = np.float32(3.5)
    batch = _batch(B, T, seed=7, lengths=[T, T - 2, 3, T])
    batch["rating_in"] = rng.integers(1, 6, size=(B, T)).astype(np.float32)
    batch["rating_in_ok"] = rng.random((B, T)) < 0.8
    return cfg, params, batch


def test_rating_input_adds_the_item_scaled_by_its_rating_deviation():
    cfg, params, batch = _rating_case()
    dev = np.where(batch["rating_in_ok"] & batch["mask"], batch["rating_in"] - 3.5, 0.0)
    np.testing.assert_allclose(rating_deviation(params, batch), dev)
    cell = params["cell"]
    x = params["item_emb"][batch["items"]]
    alpha = np.full((B, T), 0.7, np.float32)
    plain = {k: v for k, v in cell.items() if k != "w_rating"}
    got = cells.gru_inputs(cell, x, alpha, "gate", None, dev)
    want = cells.gru_inputs(plain, x, alpha, "gate") + (dev[..., None] * x) @ cell["w_rating"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no ratings"):
        cells.gru_inputs(cell, x, alpha, "gate")
    # Without ratings in the batch (a user's events without a rating column): deviation 0.
    no_ratings = {k: v for k, v in batch.items() if not k.startswith("rating_in")}
    assert not np.asarray(rating_deviation(params, no_ratings)).any()
    # It starts as the plain GRU with the head: w_rating is zero, the other draws unchanged.
    fresh = _np(_params(cfg))
    assert not fresh["cell"]["w_rating"].any()
    del fresh["cell"]["w_rating"]
    off = _np(_params(_cfg("gru", "gate", rating_head=True)))
    jax.tree.map(np.testing.assert_array_equal, fresh, off)


def test_rating_input_is_causal():
    cfg, params, batch = _rating_case(seed=1)
    batch["rating_in_ok"] = batch["mask"].copy()
    another_rating = lambda r: np.where(r > 3, 1.0, 5.0)  # noqa: E731
    # the shortest row has 3 events
    _assert_input_is_causal(params, cfg, batch, "rating_in", another_rating, range(3), 1e-5)


def test_the_served_inputs_carry_what_the_rating_input_reads():
    # Recommend, export and explain feed the encoder `MODEL_INPUTS` only: a model reading the
    # ratings must see them there, or it would score without them.
    cfg, params, batch = _rating_case(seed=2)
    served = {k: batch[k] for k in MODEL_INPUTS if k in batch}
    assert {"rating_in", "rating_in_ok"} <= set(served)
    np.testing.assert_array_equal(_encode(params, cfg, served)[0], _encode(params, cfg, batch)[0])


def test_rating_input_needs_the_gru_and_the_rating_head():
    with pytest.raises(ConfigError, match="rating_input=True needs config.model.cell='gru'"):
        _cfg("agru", "input", rating_input=True)
    with pytest.raises(ConfigError, match="rating_weight > 0"):
        _params(_cfg("gru", "gate", rating_input=True))
