"""Tests for durgru_jax.model: causality, batch independence, the losses of eq. (12)-(14)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax.config import LossConfig, ModelConfig
from durgru_jax.model import (
    aux_loss,
    encode,
    full_softmax_loss,
    init_params,
    losses,
    sample_negatives,
    sampled_softmax_loss,
    score_factors,
    user_vector,
)

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


_encode = jax.jit(encode, static_argnums=1)


# --------------------------------------------------------------------------- causality


@pytest.mark.parametrize("cell", ["gru", "agru"])
@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_encode_is_causal(cell, mode):
    cfg = _cfg(cell, mode)
    params = _params(cfg)
    b, t = 2, 6
    batch = _batch(b, t, seed=1, lengths=[6, 6], unique_items=True)
    batch["dur_ok"][:] = True
    items = batch["items"]

    @jax.jit
    def grads(emb, dur):
        def out(emb_, dur_, step):
            p = dict(params, item_emb=emb_)
            hs, _ = encode(p, cfg, dict(batch, dur=dur_))
            return jnp.sum(hs[:, step])

        return [jax.grad(out, argnums=(0, 1))(emb, dur, s) for s in range(t)]

    all_g = grads(params["item_emb"], jnp.asarray(batch["dur"]))
    for step, (g_emb, g_dur) in enumerate(all_g):
        g_emb, g_dur = np.asarray(g_emb), np.asarray(g_dur)
        for row in range(b):
            for pos in range(t):
                g_item = np.abs(g_emb[items[row, pos]]).max()
                if pos > step:
                    assert g_item == 0.0, (step, row, pos)
                    assert g_dur[row, pos] == 0.0, (step, row, pos)
                else:
                    assert g_item > 0.0, (step, row, pos)
                    if mode == "none":
                        assert g_dur[row, pos] == 0.0
                    else:
                        assert g_dur[row, pos] != 0.0, (step, row, pos)


# --------------------------------------------------------------------------- batch composition


def _take(batch, rows, pad_t=0):
    out = {}
    for k, v in batch.items():
        v = v[rows]
        if pad_t:
            fill = np.ones if k == "dur_std" else np.zeros
            v = np.concatenate([v, fill((v.shape[0], pad_t), v.dtype)], axis=1)
        out[k] = v
    return out


@pytest.mark.parametrize("cell,mode", [("gru", "input"), ("agru", "input"), ("agru", "gate")])
def test_row_outputs_independent_of_batch(cell, mode):
    cfg = _cfg(cell, mode)
    params = _params(cfg)
    batch = _batch(5, 6, seed=2, lengths=[4, 6, 1, 3, 5])
    hs_all, last_all = _encode(params, cfg, batch)
    row = 0
    hs_1, last_1 = _encode(params, cfg, _take(batch, [row]))
    hs_p, last_p = _encode(params, cfg, _take(batch, [row], pad_t=3))
    other = _batch(4, 6, seed=3)
    mixed = {k: np.concatenate([other[k][:2], batch[k][[row]], other[k][2:]]) for k in batch}
    hs_m, last_m = _encode(params, cfg, mixed)
    for hs_x, last_x in ((hs_all[row], last_all[row]), (hs_p[0, :6], last_p[0]), (hs_m[2], last_m[2])):
        np.testing.assert_allclose(hs_x, hs_1[0], atol=1e-6)
        np.testing.assert_allclose(last_x, last_1[0], atol=1e-6)
    # row 0 has 4 events: h_last is the state after the 4th
    np.testing.assert_allclose(last_1[0], hs_1[0, 3], atol=1e-7)


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
    got = float(aux_loss(params, hs, target, neg, valid))
    want = _naive_aux(params, hs, target, neg, valid)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # values at invalid steps do not matter
    inv = ~valid
    hs2 = np.where(inv[..., None], rng.normal(size=hs.shape) * 5, hs).astype(np.float32)
    target2 = np.where(inv, rng.integers(0, N_ITEMS + 1, (b, t)), target).astype(np.int32)
    neg2 = np.where(inv[..., None], rng.integers(1, N_ITEMS + 1, neg.shape), neg).astype(np.int32)
    np.testing.assert_allclose(float(aux_loss(params, hs2, target2, neg2, valid)), got, rtol=1e-6)
    # and the average is over valid steps: duplicating the batch leaves it unchanged
    dup = lambda a: np.concatenate([a, a])  # noqa: E731
    got2 = float(aux_loss(params, dup(hs), dup(target), dup(neg), dup(valid)))
    np.testing.assert_allclose(got2, got, rtol=1e-6)


# --------------------------------------------------------------------------- negatives


def test_sample_negatives_never_positive_and_in_range():
    n = 5
    pos = jnp.asarray(np.tile(np.arange(1, n + 1), 400).astype(np.int32))
    logp = jnp.log(jnp.asarray([0.6, 0.2, 0.1, 0.05, 0.05]))
    for logp_ in (None, logp):
        neg = np.asarray(sample_negatives(jax.random.PRNGKey(0), pos, n, 7, logp_))
        assert neg.shape == (len(pos), 7)
        assert neg.min() >= 1 and neg.max() <= n
        assert not np.any(neg == np.asarray(pos)[:, None])


def _chi2(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def test_sample_negatives_uniform_over_other_items():
    n = 5
    for p in range(1, n + 1):
        pos = jnp.full((4000,), p, jnp.int32)
        neg = np.asarray(sample_negatives(jax.random.PRNGKey(p), pos, n, 5, None)).ravel()
        counts = np.bincount(neg, minlength=n + 1)[1:]
        assert counts[p - 1] == 0
        others = np.delete(counts, p - 1)
        # 3 degrees of freedom: chi2 > 25 has probability < 1e-4
        assert _chi2(others, np.full(n - 1, 1.0 / (n - 1))) < 25.0, others


def test_sample_negatives_popularity():
    n = 5
    pop = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    pos_id = 2
    pos = jnp.full((5000,), pos_id, jnp.int32)
    neg = np.asarray(sample_negatives(jax.random.PRNGKey(7), pos, n, 4, jnp.log(pop))).ravel()
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
    got = np.asarray(full_softmax_loss(u, v, c, tgt))
    logits = (u.astype(np.float64) @ v + c)[:, 1:]
    want = -(logits[np.arange(m), tgt - 1] - np.log(np.exp(logits).sum(1)))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_sampled_softmax_loss_matches_naive():
    rng = np.random.default_rng(6)
    m, d, n, s = 3, 2, 5, 4
    u = rng.normal(size=(m, d)).astype(np.float32)
    v = rng.normal(size=(d, n + 1)).astype(np.float32)
    c = rng.normal(size=n + 1).astype(np.float32)
    tgt = np.array([2, 2, 4], np.int32)
    valid = np.array([True, True, False])
    pop = np.array([0.0, 0.4, 0.3, 0.1, 0.1, 0.1])
    q = np.array([0.0, 0.1, 0.2, 0.3, 0.2, 0.2])
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    key = jax.random.PRNGKey(3)
    got = np.asarray(
        sampled_softmax_loss(key, u, v, c, tgt, valid, s, jnp.asarray(log_q), jnp.asarray(pop))
    )
    sampled = np.asarray(jax.random.categorical(key, jnp.asarray(log_q), shape=(s,)))
    assert np.all(sampled > 0)
    # the pool: each valid row's target, plus the shared samples
    pool = [int(tgt[i]) for i in range(m) if valid[i]] + [int(j) for j in sampled]
    n_valid = int(valid.sum())

    def logit(i, j):  # score minus log expected count of j in the pool
        score = float(u[i].astype(np.float64) @ v[:, j] + c[j])
        return score - np.log(n_valid * pop[j] + s * q[j])

    for i in range(m):
        pos = logit(i, tgt[i])
        cands = [pos] + [logit(i, j) for j in pool if j != tgt[i]]
        want = np.log(np.sum(np.exp(cands))) - pos
        np.testing.assert_allclose(got[i], want, rtol=1e-5, err_msg=f"row {i}")


# --------------------------------------------------------------------------- losses()


def _log_pop():
    rng = np.random.default_rng(9)
    pop = rng.uniform(0.5, 2.0, N_ITEMS + 1)
    pop[0] = 0.0
    with np.errstate(divide="ignore"):
        return jnp.asarray(np.log(pop / pop.sum()).astype(np.float32))


@pytest.mark.parametrize("target", ["full", "sampled"])
def test_losses_total_is_weighted_sum_and_finite(target):
    cfg = _cfg("agru", "input", rating_head=True)
    params = jax.tree.map(jnp.asarray, _params(cfg))
    rng = np.random.default_rng(10)
    params["rating"] = {
        "w": jnp.asarray(rng.normal(size=(5, 6)).astype(np.float32)),
        "b_item": jnp.asarray(rng.normal(size=N_ITEMS + 1).astype(np.float32)),
        "mu": jnp.asarray(3.0),
    }
    lcfg = LossConfig(target=target, n_sampled=8, aux_weight=0.3, rating_weight=0.2)
    batch = _batch(3, 6, seed=11, lengths=[6, 3, 5])
    key = jax.random.PRNGKey(0)
    loss_fn = jax.jit(losses, static_argnums=(1, 2, 6))
    total, parts = loss_fn(params, cfg, lcfg, batch, key, _log_pop(), True)
    want = parts["target_loss"] + 0.3 * parts["aux_loss"] + 0.2 * parts["rating_mse"]
    np.testing.assert_allclose(total, want, rtol=1e-6)
    np.testing.assert_allclose(parts["loss"], total, rtol=1e-7)
    assert np.isfinite(float(total)) and float(parts["aux_loss"]) > 0

    # the rating MSE by hand, on the valid steps with a rating
    hs, _ = _encode(params, cfg, batch)
    hs = np.asarray(hs, np.float64)
    r = params["rating"]
    emb = np.asarray(params["item_emb"], np.float64)
    errs = []
    for b, t in zip(*np.nonzero(batch["mask"] & (batch["targets"] > 0) & batch["rating_ok"])):
        j = batch["targets"][b, t]
        pred = 3.0 + float(r["b_item"][j]) + hs[b, t] @ np.asarray(r["w"], np.float64) @ emb[j]
        errs.append(pred - batch["rating_target"][b, t])
    np.testing.assert_allclose(parts["rating_mse"], np.mean(np.square(errs)), rtol=1e-5)

    # gradients are finite although padded steps have target 0
    g = jax.grad(lambda p: loss_fn(p, cfg, lcfg, batch, key, _log_pop(), True)[0])(params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))


def test_target_loss_is_mean_full_softmax_over_valid_steps():
    cfg = _cfg("gru", "gate")
    params = _params(cfg)
    batch = _batch(3, 6, seed=12, lengths=[6, 2, 4])
    lcfg = LossConfig(target="full", aux_weight=0.0)
    _, parts = losses(params, cfg, lcfg, batch, jax.random.PRNGKey(0), _log_pop(), False)
    assert set(parts) == {"target_loss", "loss"}
    hs, _ = _encode(params, cfg, batch)
    v, c = score_factors(params, cfg)
    logits = np.asarray(user_vector(params, cfg, hs) @ v + c, np.float64)[..., 1:]
    lse = np.log(np.exp(logits).sum(-1))
    vals = []
    for b, t in zip(*np.nonzero(batch["mask"] & (batch["targets"] > 0))):
        vals.append(lse[b, t] - logits[b, t, batch["targets"][b, t] - 1])
    np.testing.assert_allclose(parts["target_loss"], np.mean(vals), rtol=1e-5)
    np.testing.assert_allclose(parts["loss"], parts["target_loss"], rtol=1e-7)


def test_dropout_only_in_train_mode():
    cfg = _cfg("agru", "input", dropout=0.5)
    params = _params(cfg)
    batch = _batch(3, 6, seed=13, lengths=[6, 5, 4])
    lcfg = LossConfig(target="full", aux_weight=0.0)
    loss_fn = jax.jit(losses, static_argnums=(1, 2, 6))
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    tr1 = float(loss_fn(params, cfg, lcfg, batch, k1, _log_pop(), True)[0])
    tr1b = float(loss_fn(params, cfg, lcfg, batch, k1, _log_pop(), True)[0])
    tr2 = float(loss_fn(params, cfg, lcfg, batch, k2, _log_pop(), True)[0])
    ev1 = float(loss_fn(params, cfg, lcfg, batch, k1, _log_pop(), False)[0])
    ev2 = float(loss_fn(params, cfg, lcfg, batch, k2, _log_pop(), False)[0])
    assert tr1 == tr1b  # same key, same dropout
    assert tr1 != tr2
    assert ev1 == ev2
    assert ev1 != tr1
    # evaluation mode equals the model without dropout
    cfg0 = _cfg("agru", "input", dropout=0.0)
    ev0 = float(loss_fn(params, cfg0, lcfg, batch, k2, _log_pop(), False)[0])
    np.testing.assert_allclose(ev1, ev0, rtol=1e-6)
    # and encode without a key is deterministic too
    np.testing.assert_array_equal(_encode(params, cfg, batch)[0], _encode(params, cfg0, batch)[0])


# --------------------------------------------------------------------------- tied output


def test_tie_output_scores_with_item_embeddings():
    cfg = _cfg("gru", "input", tie_output=True)
    params = _params(cfg)
    assert set(params["out"]) == {"proj", "b"}
    v, c = score_factors(params, cfg)
    np.testing.assert_array_equal(v, np.asarray(params["item_emb"]).T)
    h = np.random.default_rng(14).normal(size=(2, 5)).astype(np.float32)
    np.testing.assert_allclose(
        user_vector(params, cfg, h), h @ np.asarray(params["out"]["proj"]), rtol=1e-6
    )

    # Items 1..5 only in the inputs and targets: an item never seen gets gradient through the
    # output layer only when the output is tied to the embeddings.
    batch = _batch(2, 5, seed=15, lengths=[5, 4])
    batch["items"] = np.where(batch["mask"], 1 + batch["items"] % 5, 0).astype(np.int32)
    batch["targets"] = np.where(batch["targets"] > 0, 1 + batch["targets"] % 5, 0).astype(np.int32)
    lcfg = LossConfig(target="full", aux_weight=0.0)

    def grad_emb(cfg_):
        p = _params(cfg_)
        f = lambda p_: losses(p_, cfg_, lcfg, batch, jax.random.PRNGKey(0), _log_pop(), False)[0]  # noqa: E731
        total = f(p)
        assert np.isfinite(float(total))
        return np.asarray(jax.grad(f)(p)["item_emb"])

    g_tied = grad_emb(cfg)
    g_untied = grad_emb(_cfg("gru", "input", tie_output=False))
    assert np.abs(g_tied[20]).max() > 0.0
    assert np.all(g_untied[20] == 0.0)
    assert np.all(g_tied[0] == 0.0)  # padding id is never scored
