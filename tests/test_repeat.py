"""The repeat-aware output (durgru_jax/repeat.py): the mixture likelihood against a numpy
computation (packed rows, padding), causality, its fused loss and gradient, and the evaluator's
ranking of ``log p(i)`` against a brute-force numpy ranking."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import rank_windows, window_examples

from durgru_jax import repeat
from durgru_jax.config import (
    ConfigError,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
)
from durgru_jax.loss import (
    full_softmax_loss,
    log_partition,
    losses,
    mixture_softmax_loss_sum,
)
from durgru_jax.model import encode, init_params, score_factors, user_vector

N_ITEMS = 12  # few items: windows repeat them often
B, T = 3, 7
CFG = ModelConfig(
    cell="gru",
    duration_mode="none",
    embed_dim=6,
    hidden_dim=5,
    dropout=0.0,
    n_items=N_ITEMS,
    repeat_head=True,
)
LOSS = LossConfig(aux_weight=0.0)
_losses = jax.jit(losses, static_argnums=(1, 2, 6))
_vg_losses = jax.jit(jax.value_and_grad(losses, has_aux=True), static_argnums=(1, 2, 6))
_encode = jax.jit(encode, static_argnums=1)
_train_terms = jax.jit(repeat.train_terms)


@functools.cache
def _params(seed: int = 0, bias: float = 0.5):
    """Parameters with a non-trivial mode weight (``a`` random, ``b = bias``)."""
    p = init_params(CFG, seed)
    rng = np.random.default_rng(seed)
    p["repeat"]["a"] = jnp.asarray(rng.normal(0, 1, CFG.hidden_dim), jnp.float32)
    p["repeat"]["b"] = jnp.asarray(bias, jnp.float32)
    p["out"]["b"] = jnp.asarray(rng.normal(0, 1, N_ITEMS + 1), jnp.float32)
    return p


def _batch() -> dict[str, np.ndarray]:
    """Row 0: one sequence; row 1: two packed sequences (reset at step 3, item 1 only in the
    first) and padding; row 2: a short sequence, then padding whose ids are not 0 (masked)."""
    items = np.array([[5, 4, 3, 2, 2, 1, 1], [1, 1, 5, 4, 5, 3, 0], [5, 4, 4, 9, 9, 9, 9]])
    targets = np.array([[4, 5, 4, 2, 1, 2, 1], [1, 5, 0, 4, 5, 1, 0], [4, 9, 4, 0, 0, 0, 0]])
    mask = np.arange(T)[None, :] < np.array([[7], [6], [3]])
    reset = np.zeros((B, T), bool)
    reset[:, 0] = True
    reset[1, 3] = True  # a sequence's last step has no next item: targets[1, 2] = 0
    return {"items": items.astype(np.int32), "mask": mask, "reset": reset, "targets": targets}


def _np_log_p(p, h_H, items_T, steps, v, c) -> np.ndarray:
    """``log p(i)`` over ids ``0..N`` (float64) after hidden state ``h`` whose repeat
    candidates are the inputs at ``steps``: the mixture written out with loops."""
    h = np.asarray(h_H, np.float64)
    v, c = np.asarray(v, np.float64), np.asarray(c, np.float64)
    logits = h @ v + c
    logits[0] = -np.inf
    p_exp = np.exp(logits - logits.max())
    p_exp /= p_exp.sum()
    r = {k: np.asarray(x, np.float64) for k, x in p["repeat"].items()}
    w = 1.0 / (1.0 + np.exp(-(h @ r["a"] + r["b"])))
    if not steps:
        with np.errstate(divide="ignore"):  # id 0 has probability 0
            return np.log(p_exp)
    emb = np.asarray(p["item_emb"], np.float64)
    att = np.array([(h @ r["w"]) @ emb[items_T[s]] for s in steps])
    att = np.exp(att - att.max())
    att /= att.sum()
    p_rep = np.zeros_like(p_exp)
    for a, s in zip(att, steps, strict=True):
        p_rep[items_T[s]] += a
    with np.errstate(divide="ignore"):
        return np.log(w * p_rep + (1 - w) * p_exp)


def _segment_steps(batch, row: int, t: int) -> list[int]:
    """The real steps ``s <= t`` of step t's sequence (since the latest reset)."""
    start = max(s for s in range(t + 1) if batch["reset"][row, s])
    return [s for s in range(start, t + 1) if batch["mask"][row, s]]


def _np_step_nll(params, batch) -> np.ndarray:
    """``-log p(target)`` at every valid step (0 elsewhere), from `_np_log_p`."""
    hs, _ = _encode(params, CFG, batch)
    v, c = score_factors(params, CFG)
    nll = np.zeros((B, T))
    for b, t in zip(*np.nonzero(batch["mask"] & (batch["targets"] > 0)), strict=True):
        logp = _np_log_p(params, hs[b, t], batch["items"][b], _segment_steps(batch, b, t), v, c)
        nll[b, t] = -logp[batch["targets"][b, t]]
    return nll


def _jax_step_nll(params, batch) -> np.ndarray:
    """Per step ``-logaddexp(log(1-w) - CE, log w + log p_rep(target))`` from `train_terms`."""
    hs, _ = _encode(params, CFG, batch)
    log_explore, log_repeat = _train_terms(params, batch, hs, batch["targets"])
    v, c = score_factors(params, CFG)
    ce = full_softmax_loss(hs.reshape(B * T, -1), v, c, batch["targets"].reshape(-1))
    nll = -np.logaddexp(np.asarray(log_explore) - np.asarray(ce).reshape(B, T), log_repeat)
    return np.where(batch["mask"] & (batch["targets"] > 0), nll, 0.0)


# ------------------------------------------------------------------------ the likelihood


def test_mixture_likelihood_matches_numpy_with_packing_and_padding():
    params, batch = _params(), _batch()
    want = _np_step_nll(params, batch)
    np.testing.assert_allclose(_jax_step_nll(params, batch), want, rtol=1e-5, atol=1e-6)
    valid = batch["mask"] & (batch["targets"] > 0)
    loss, parts = _losses(params, CFG, LOSS, batch, jax.random.key(0), jnp.zeros(N_ITEMS + 1))
    np.testing.assert_allclose(float(parts["target_loss"]), want[valid].mean(), rtol=1e-5)
    # the example exercises both parts: targets inside and outside the candidates
    in_window = [
        batch["targets"][b, t] in batch["items"][b, _segment_steps(batch, b, t)]
        for b, t in zip(*np.nonzero(valid), strict=True)
    ]
    assert any(in_window) and not all(in_window)


def test_packed_segments_do_not_see_each_other():
    """Changing row 1's first sequence changes nothing in its second (steps 3..5)."""
    params, batch = _params(), _batch()
    nll = _jax_step_nll(params, batch)
    other = dict(batch, items=batch["items"].copy())
    other["items"][1, :3] = [4, 5, 3]  # the second sequence's items
    np.testing.assert_array_equal(_jax_step_nll(params, other)[1, 3:], nll[1, 3:])
    np.testing.assert_allclose(nll, _np_step_nll(params, batch), rtol=1e-5, atol=1e-6)


def test_later_events_do_not_change_earlier_steps():
    params, batch = _params(), _batch()
    base = _jax_step_nll(params, batch)
    for t in range(T - 1):
        later = dict(batch, items=batch["items"].copy(), targets=batch["targets"].copy())
        later["items"][:, t + 1 :] = np.where(batch["mask"][:, t + 1 :], 11, 7)
        later["targets"][:, t + 1 :] = np.where(batch["mask"][:, t + 1 :], 3, 0)
        np.testing.assert_array_equal(_jax_step_nll(params, later)[:, : t + 1], base[:, : t + 1])


def test_loss_gradient_is_finite_and_matches_autodiff():
    params, batch = _params(), _batch()
    batch["mask"][2] = False  # an empty row
    batch["items"][2] = 0
    batch["targets"][2] = 0
    (_, _), grads = _vg_losses(
        params, CFG, LOSS, batch, jax.random.key(0), jnp.zeros(N_ITEMS + 1), True
    )
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(np.asarray(g))), path
    assert np.any(np.asarray(grads["repeat"]["w"]) != 0)


def test_fused_mixture_loss_and_gradient_match_a_naive_softmax():
    rng = np.random.default_rng(3)
    m, d, n = 9, 4, 11
    u = jnp.asarray(rng.normal(0, 1, (m, d)), jnp.float32)
    v = jnp.asarray(rng.normal(0, 1, (d, n)), jnp.float32)
    c = jnp.asarray(rng.normal(0, 1, n), jnp.float32)
    tgt = jnp.asarray(rng.integers(1, n, m), jnp.int32).at[-1].set(0)  # a padded row
    w = jnp.asarray(rng.random(m), jnp.float32).at[-1].set(0.0)
    le = jnp.asarray(np.log(rng.uniform(0.1, 0.9, m)), jnp.float32)
    lr = jnp.asarray(np.log(rng.uniform(0.01, 0.5, m)), jnp.float32).at[2].set(-jnp.inf)

    def naive(u, v, c, le, lr):
        logits = (u @ v + c).at[:, 0].set(-jnp.inf)
        lp = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
        ce = -jnp.take_along_axis(lp, tgt[:, None], 1)[:, 0]
        lr_safe = jnp.where(jnp.isfinite(lr), lr, -1e30)  # no inf - inf in this reference
        nll = -jnp.logaddexp(le - jnp.where(w > 0, ce, 0.0), lr_safe)
        return jnp.sum(jnp.where(w > 0, w * nll, 0.0))

    def fused(u, v, c, le, lr):
        return mixture_softmax_loss_sum(u, v, c, tgt, w, le, lr)

    args = (u, v, c, le, lr)
    np.testing.assert_allclose(jax.jit(fused)(*args), naive(*args), rtol=1e-5)
    g_fused = jax.jit(jax.grad(fused, argnums=tuple(range(5))))(*args)
    g_naive = jax.grad(naive, argnums=tuple(range(5)))(*args)
    for gf, gn in zip(g_fused, g_naive, strict=True):
        np.testing.assert_allclose(gf, gn, rtol=1e-4, atol=1e-6)
    z = np.asarray(log_partition(u, v, c))
    logits = np.asarray(u @ v + c)[:, 1:]
    np.testing.assert_allclose(z, np.log(np.exp(logits).sum(1)), rtol=1e-5)


def test_repeat_head_needs_the_full_softmax():
    with pytest.raises(ConfigError, match="repeat_head.*loss.target"):
        _run_config(loss=LossConfig(target="sampled"))
    with pytest.raises(ConfigError, match="repeat_head.*loss.target"):
        losses(
            _params(),
            CFG,
            LossConfig(target="bpr_max"),
            _batch(),
            jax.random.key(0),
            jnp.zeros(N_ITEMS + 1),
        )


def test_window_repeat_rate_by_hand_and_the_initial_mode_weight():
    # row 0: steps 1, 2, 3, 5, 6 of 7 repeat; row 1: steps 0, 3, 4 of 0, 1, 3, 4, 5 (its step
    # 5 target, item 1, is only in the other sequence); row 2: step 2 of 3 (9 is padding)
    rate = repeat.window_repeat_rate(_batch(), rows_per_chunk=2)
    assert rate == pytest.approx(9 / 15)
    params = init_params(CFG, 0, repeat_rate=rate)
    assert float(jax.nn.sigmoid(params["repeat"]["b"])) == pytest.approx(0.6, rel=1e-6)
    plain = init_params(dataclasses.replace(CFG, repeat_head=False), 0)
    jax.tree.map(np.testing.assert_array_equal, _plain(params), plain)


# ------------------------------------------------------------------------ the evaluator


def _run_config(model=CFG, loss=LOSS) -> RunConfig:
    return RunConfig(
        seed=0, model=model, loss=loss, optim=OptimConfig(), train=TrainConfig(), eval=EvalConfig()
    )


def _np_ranking(params, ex, exclude: bool, k: int = 4):
    """Brute force over all items: ranks (ties against the model), top-k ids and scores."""
    _, h_last = _encode(params, CFG, {kk: ex[kk] for kk in ("items", "mask", "reset")})
    h_last = user_vector(params, CFG, h_last)
    v, c = score_factors(params, CFG)
    ranks, tops, scores = [], [], []
    for e in range(len(ex["target"])):
        n_in = int(ex["mask"][e].sum())
        logp = _np_log_p(params, h_last[e], ex["items"][e], list(range(n_in)), v, c)
        if exclude:
            logp[ex["hist_items"][ex["hist_offsets"][e] : ex["hist_offsets"][e + 1]]] = -np.inf
        tgt = ex["target"][e]
        others = np.delete(logp[1:], tgt - 1)
        rank = np.sum(others >= logp[tgt]) if np.isfinite(logp[tgt]) else N_ITEMS
        ranks.append(rank)
        order = 1 + np.argsort(-logp[1:], kind="stable")[:k]
        tops.append(order)
        scores.append(logp[order])
    return np.array(ranks), np.array(tops), np.array(scores)


@pytest.mark.parametrize("exclude", [False, True])
def test_evaluator_ranks_log_p_like_brute_force(exclude):
    params, ex = _params(), window_examples(N_ITEMS, window_items=6)
    got = rank_windows(params, CFG, ex, N_ITEMS, exclude)
    rank, top, score = _np_ranking(params, ex, exclude)
    np.testing.assert_array_equal(got.rank, rank)
    np.testing.assert_array_equal(got.top, top)
    np.testing.assert_allclose(got.top_score, score, rtol=1e-5)
    if not exclude:  # repeats matter here: some targets rank higher than without the head
        plain = rank_windows(_plain(params), _plain_cfg(), ex, N_ITEMS, exclude)
        assert np.any(got.rank < plain.rank)


def _plain_cfg() -> ModelConfig:
    return dataclasses.replace(CFG, repeat_head=False)


def _plain(params):
    return {k: v for k, v in params.items() if k != "repeat"}


def test_padding_after_the_last_step_changes_no_score():
    params, ex = _params(), window_examples(N_ITEMS, window_items=6)
    other = dict(ex, items=np.where(ex["mask"], ex["items"], 5).astype(np.int32))
    a, b = (
        rank_windows(params, CFG, ex, N_ITEMS, False),
        rank_windows(params, CFG, other, N_ITEMS, False),
    )
    np.testing.assert_array_equal(a.rank, b.rank)
    np.testing.assert_array_equal(a.top_score, b.top_score)


def test_without_repeat_weight_the_ranking_is_the_plain_models():
    ex = window_examples(N_ITEMS, seed=1, window_items=6)
    no_repeat = _params(bias=-1e4)  # w = sigmoid(-1e4 + h . a) = 0
    got = rank_windows(no_repeat, CFG, ex, N_ITEMS, False)
    plain = rank_windows(_plain(no_repeat), _plain_cfg(), ex, N_ITEMS, False)
    np.testing.assert_array_equal(got.rank, plain.rank)
    np.testing.assert_array_equal(got.top, plain.top)


def test_with_excluded_history_the_head_cannot_change_the_ranking():
    """The window is in the excluded history and the other items move by a per-row
    constant: ranks and top-K equal the plain model's exactly, whatever w."""
    params, ex = _params(bias=2.0), window_examples(N_ITEMS, seed=2, window_items=6)
    got = rank_windows(params, CFG, ex, N_ITEMS, True)
    plain = rank_windows(_plain(params), _plain_cfg(), ex, N_ITEMS, True)
    np.testing.assert_array_equal(got.rank, plain.rank)
    np.testing.assert_array_equal(got.top, plain.top)
