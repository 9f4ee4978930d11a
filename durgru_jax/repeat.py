"""Repeat-aware output (``model.repeat_head``), after RepeatNet (Ren et al., "RepeatNet: A
Repeat Aware Neural Recommendation Machine for Session-based Recommendation", AAAI 2019).

The next item is drawn from a learned mixture of *re-consuming* an item of the user's own
input window and *exploring* the catalogue. At step t, with hidden state h_t:

* mode weight (repeat probability) ``w_t = sigmoid(h_t . a + b)``;
* repeat distribution over the steps ``s <= t`` of t's sequence segment in the window:
  ``att_ts = softmax_s((h_t W_r) . e_{x_s})``, ``p_rep(i) = sum_s att_ts [x_s == i]``;
* explore distribution ``p_exp(i) = softmax_i(u_t . v_i + c_i)``, the scores of eq. (12);
* ``p(i) = w_t p_rep(i) + (1 - w_t) p_exp(i)``.

The keys ``e_{x_s}`` are the *input item embeddings* (RepeatNet attends over its encoder's
states ``h_s``): an item's own embedding is what identifies it for re-consumption, it is the
same for every encoder, and at evaluation only the last step's query is needed, not every
``h_s``. Attention is causal and segment-local (`attention.segment_layout`): step t never
attends to a later step, to another sequence packed into the same row, or to padding, so
``p`` at t depends only on events ``<= t`` of its own sequence.

`window_repeat_rate` gives the mode weight's starting value (the training share of repeats);
`train_terms` gives the two log-terms of the training likelihood (`loss.mixture_softmax_loss_sum`
adds the explore part's ``l_target - logZ``); `eval_scores` gives the evaluator's sparse
scores of the window items (`evaluate.Factors`). Shape legend: B rows, T time steps, Q query
steps, C candidate items per query, H hidden size, E item-embedding size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import attention, layers

Array = jax.Array
Params = dict[str, Any]


def init_params(key: Array, hidden_dim: int, embed_dim: int) -> Params:
    """``a [H]``, ``b []``: the mode weight (zeros: ``w = 0.5`` at the start, unless
    `model.init_params` sets ``b`` from the training repeat rate); ``w [H, E]``: the repeat
    attention's query map ``W_r``."""
    glorot = jax.nn.initializers.glorot_uniform()
    return {
        "a": jnp.zeros((hidden_dim,)),
        "b": jnp.zeros(()),
        "w": glorot(key, (hidden_dim, embed_dim)),
    }


def window_repeat_rate(windows: Mapping[str, np.ndarray], rows_per_chunk: int = 512) -> float:
    """The share of training steps (a real input with a next item) whose target is among the
    inputs ``s <= t`` of the step's segment: the repeat candidates could have produced it.
    `model.init_params` starts the mode weight ``w`` at this rate."""
    items, mask, tgt = windows["items"], windows["mask"], windows["targets"]
    seg = np.cumsum(windows["reset"], axis=1)
    t = items.shape[1]
    causal_TxT = np.tril(np.ones((t, t), bool))
    hits = total = 0
    for lo in range(0, len(items), rows_per_chunk):
        r = slice(lo, lo + rows_per_chunk)
        cand = (seg[r, :, None] == seg[r, None, :]) & causal_TxT & mask[r, None, :]
        repeat_ = np.any(cand & (items[r, None, :] == tgt[r, :, None]), axis=2)
        valid = mask[r] & (tgt[r] > 0)
        hits += int(np.sum(repeat_ & valid))
        total += int(np.sum(valid))
    return hits / max(total, 1)


def masked_logsumexp(x: Array, m: Array) -> Array:
    """``log sum exp(x)`` over the last axis where ``m``; ``-inf`` where ``m`` is all false.
    Gradients stay finite (zero) for such rows and for the masked entries."""
    has = jnp.any(m, axis=-1)
    fill = jnp.where(has[..., None], -jnp.inf, 0.0)
    lse = jax.nn.logsumexp(jnp.where(m, x, fill), axis=-1)
    return jnp.where(has, lse, -jnp.inf)


def mode_log_weights(p: Params, h_xH: Array) -> tuple[Array, Array]:
    """``(log w, log(1 - w))`` of the mode weight ``w = sigmoid(h . a + b)``."""
    z = h_xH.astype(jnp.float32) @ p["a"] + p["b"]
    return jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)


def log_attention(
    p: Params, item_emb: Array, items_BxT: Array, h_BxQxH: Array, allowed_BxQxT: Array
) -> Array:
    """``log att [B, Q, T]``: each query's log softmax of ``(h W_r) . e_{x_s}`` over its
    allowed steps s; ``-inf`` at the others (every entry of a query with none)."""
    q_BxQxE = h_BxQxH.astype(jnp.float32) @ p["w"]
    k_BxTxE = item_emb[items_BxT].astype(jnp.float32)
    logit = jnp.einsum("bqe,bte->bqt", q_BxQxE, k_BxTxE)
    lse = masked_logsumexp(logit, allowed_BxQxT)
    return jnp.where(allowed_BxQxT, logit - lse[..., None], -jnp.inf)


def log_repeat_prob(
    log_att_BxQxT: Array, items_BxT: Array, cand_BxQxC: Array, allowed_BxQxT: Array
) -> Array:
    """``log p_rep(cand) [B, Q, C]``: the log of the attention mass on the allowed steps whose
    item is the candidate (``-inf`` for a candidate not among them)."""
    hit = (items_BxT[:, None, None, :] == cand_BxQxC[..., None]) & allowed_BxQxT[:, :, None, :]
    return masked_logsumexp(log_att_BxQxT[:, :, None, :], hit)


def train_terms(
    params: Params, batch: dict[str, Array], hs_BxTxH: Array, target_BxT: Array
) -> tuple[Array, Array]:
    """The training likelihood's two mode terms at every step, ``[B, T]`` each:
    ``log(1 - w_t)`` and ``log w_t + log p_rep(target_t)``, so that
    ``log p(target) = logaddexp(log(1 - w) + l_target - logZ, log w + log p_rep(target))``.
    """
    p, items = params["repeat"], batch["items"]
    allowed = attention.allowed_steps(batch)
    log_att = log_attention(p, params["item_emb"], items, hs_BxTxH, allowed)
    log_rep = log_repeat_prob(log_att, items, target_BxT[..., None], allowed)[..., 0]
    log_w, log_1mw = mode_log_weights(p, hs_BxTxH)
    return log_1mw, log_w + log_rep


def eval_scores(
    params: Params,
    batch: dict[str, Array],
    h_last_BxH: Array,
    l_window_BxT: Array,
    log_z_B: Array,
) -> tuple[Array, Array, Array]:
    """The evaluator's scores ``log p(i)`` after each row's last real step, as a per-row
    offset and a sparse part (`evaluate.Factors`): ``(offset_B, items_BxT, scores_BxT)``.

    An item outside the window scores ``log(1 - w) + l_i - logZ`` (``l_i`` its eq. (12)
    logit, ``logZ`` their log-sum-exp over the catalogue): the logit plus ``offset``. A window
    item (``items``, 0 where the step is padding or of another segment) scores
    ``logaddexp(log(1 - w) + l_i - logZ, log w + log p_rep(i))`` (``scores``, equal for
    repeats of one item); ``l_window`` holds the logits of ``batch["items"]``. A row with no
    event has no repeat candidate: ``p = p_exp`` there.
    """
    last = layers.last_step(batch["mask"])
    allowed_BxT = attention.allowed_at_last(batch)
    items = batch["items"]
    p = params["repeat"]
    log_att = log_attention(p, params["item_emb"], items, h_last_BxH[:, None], allowed_BxT[:, None])
    log_rep = log_repeat_prob(log_att, items, items[:, None], allowed_BxT[:, None])[:, 0]
    log_w, log_1mw = mode_log_weights(p, h_last_BxH)
    log_1mw = jnp.where(last >= 0, log_1mw, 0.0)
    explore = log_1mw[:, None] + l_window_BxT - log_z_B[:, None]
    scores = jnp.logaddexp(explore, log_w[:, None] + log_rep)
    window = jnp.where(allowed_BxT, items, 0)
    return log_1mw - log_z_B, window, jnp.where(allowed_BxT, scores, -jnp.inf)
