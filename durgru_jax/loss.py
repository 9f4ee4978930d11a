"""The training objective of paper 000, Section 3.4, and its samplers.

Eq. (14): ``L' = L_target + alpha L_aux`` (`losses`), where ``L_aux`` is the auxiliary loss of
eq. (13) (`aux_loss`): for every step t, the hidden state h_t must tell the real next item
``e[t+1]`` from a sampled negative ``e~[t+1]`` (`sample_negatives`) through the auxiliary
network ``W_a``: ``-log sigma(<h_t W_a, e[t+1]>) - log(1 - sigma(<h_t W_a, e~[t+1]>))``,
averaged over the valid steps.
``L_target`` is the next-item loss over the scores of eq. (12): the full softmax
cross-entropy over the catalogue (`full_softmax_loss`, fused with its gradient in
`full_softmax_loss_sum`; with ``model.repeat_head`` the NLL of the repeat-aware mixture,
`mixture_softmax_loss_sum` and `durgru_jax.repeat`; with ``model.seen_bias`` the seen items'
offset, `seen_softmax_loss_sum` and `durgru_jax.seen`), a sampled softmax with log-Q correction
(`sampled_softmax_loss`) or GRU4Rec's BPR-max (`bpr_max_loss`); the sampled ones draw
negatives uniformly or from the item popularity raised to ``sample_alpha`` (`_draw`).

Shape legend: B rows, T time steps, H hidden size, E item-embedding size, N catalogue size
plus one (item id 0 is padding and is never a candidate), S sampled negatives, K negatives
per step of the auxiliary loss, D size of the user vector that meets the item factors,
M = B x T flattened steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from durgru_jax import repeat, seen
from durgru_jax.config import ConfigError, LossConfig, ModelConfig
from durgru_jax.model import (
    Batch,
    Params,
    encode,
    predict_rating,
    score_factors,
    user_rating_offset,
    user_vector,
)

Array = jax.Array


def sample_negatives(
    key: Array, positives: Array, n_items: int, k: int, log_popularity: Array | None
) -> Array:
    """``k`` negative item ids per positive (ids in ``1..n_items``), never equal to it.

    Uniform: ``neg = 1 + (pos - 1 + u) mod n_items`` with ``u`` uniform in ``1..n_items-1``,
    which is exactly uniform over the other items. Popularity: a draw from the popularity
    distribution; a draw that hits the positive is replaced by a uniform draw.
    """
    shape = positives.shape + (k,)
    k_u, k_p = jax.random.split(key)
    pos = positives[..., None]
    shift = jax.random.randint(k_u, shape, 1, max(n_items, 2))
    uniform = 1 + (pos - 1 + shift) % n_items
    if log_popularity is None:
        return uniform
    draw = 1 + jax.random.categorical(k_p, log_popularity, shape=shape)
    return jnp.where(draw == pos, uniform, draw)


def full_softmax_loss(u_MxD: Array, v_DxN: Array, c_N: Array, target_M: Array) -> Array:
    """Per-row softmax cross-entropy over all items (id 0, padding, excluded)."""
    logits = u_MxD @ v_DxN + c_N
    logits = logits.at[:, 0].set(-jnp.inf)
    tgt = jnp.take_along_axis(logits, target_M[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(logits, axis=1) - tgt


# Logits held at once by `full_softmax_loss_sum`: a chunk of rows x N stays in cache, and the
# B*T x N logits (190M floats on the ML-1M bench shapes) never exist.
_SOFTMAX_CHUNK_ELEMENTS = 1 << 20


def full_softmax_loss_sum(
    u_MxD: Array, v_DxN: Array, c_N: Array, target_M: Array, w_M: Array
) -> Array:
    """``sum_m w_m CE_m`` with ``CE`` of `full_softmax_loss`, in chunks of rows, with its
    gradient computed in the same pass (``w`` gets none).

    Same math as ``jnp.sum(w * full_softmax_loss(...))``; a row with ``w == 0`` adds nothing
    (its target may be padding). Each chunk's logits are computed once and turned at once into
    the gradient ``w (softmax - onehot(target))``, then into the gradients of ``u``, ``v`` and
    ``c``; the backward pass only scales them by the incoming cotangent. A plain softmax over
    all B x T rows writes and re-reads the whole logits array several times and is bound by
    memory bandwidth.
    """
    return _softmax_sum(u_MxD, v_DxN, c_N, target_M, w_M)


def mixture_softmax_loss_sum(
    u_MxD: Array,
    v_DxN: Array,
    c_N: Array,
    target_M: Array,
    w_M: Array,
    log_explore_M: Array,
    log_repeat_M: Array,
) -> Array:
    """``sum_m w_m NLL_m`` of the repeat-aware mixture (`durgru_jax.repeat`):
    ``NLL = -logaddexp(log_explore - CE, log_repeat)``, ``CE`` the full-softmax cross-entropy
    of `full_softmax_loss` (``l_target - logZ = -CE``), ``log_explore = log(1 - w)``,
    ``log_repeat = log w + log p_rep(target)``.

    The same single chunked pass as `full_softmax_loss_sum`: a row's gradient on the logits is
    the plain one scaled by the explore part's posterior ``r = (1 - w) p_exp(target) / p``,
    and ``log_explore`` and ``log_repeat`` get ``-w_m r`` and ``-w_m (1 - r)``.
    """
    return _mixture_sum(u_MxD, v_DxN, c_N, target_M, w_M, log_explore_M, log_repeat_M)


def seen_softmax_loss_sum(
    u_MxD: Array,
    v_DxN: Array,
    c_N: Array,
    target_M: Array,
    w_M: Array,
    ids_MxL: Array,
    b: Array,
) -> Array:
    """``sum_m w_m CE_m`` with the seen-item offset (`durgru_jax.seen`): row m's items
    ``ids_MxL[m]`` (0: none; each at most once) score ``l_i + b``, the others ``l_i``, in the
    logits and in the target's. The same single chunked pass as `full_softmax_loss_sum`;
    ``b`` gets the logits' gradient summed over the seen items."""
    return _seen_sum(u_MxD, v_DxN, c_N, target_M, w_M, ids_MxL, b)


def log_partition(u_MxD: Array, v_DxN: Array, c_N: Array) -> Array:
    """``logZ [M]``: the log-sum-exp of the scores ``u . v + c`` of eq. (12) over items
    ``1..N-1`` (the normaliser of the full softmax), in the row chunks of
    `full_softmax_loss_sum` (no ``M x N`` array)."""
    m, d = u_MxD.shape
    rows, k, pad = _row_chunks(m, v_DxN.shape[1])
    u = jnp.pad(u_MxD, ((0, pad), (0, 0))).reshape(k, rows, d)
    c_N = c_N.at[0].set(-jnp.inf)

    def body(carry, u_c):
        return carry, _chunk_logits(u_c, v_DxN, c_N)[3]

    _, lse = jax.lax.scan(body, None, u)
    return lse.reshape(k * rows)[:m]


def _row_chunks(m: int, n: int) -> tuple[int, int, int]:
    """``(rows, k, pad)``: ``k`` chunks of ``rows`` rows (``pad`` added) of an ``m x n``
    logits array, about `_SOFTMAX_CHUNK_ELEMENTS` each."""
    rows = min(max(8, _SOFTMAX_CHUNK_ELEMENTS // n // 8 * 8), -(-m // 8) * 8)
    k = -(-m // rows)
    return rows, k, k * rows - m


def _chunk_logits(u_c: Array, v_DxN: Array, c_N: Array, seen=None):
    """A chunk's ``(logits, e, s, lse)``: ``e = exp(logits - max)``, ``s = sum(e)``; with
    ``seen = (ids_c, b)`` each row's seen items (`durgru_jax.seen`) get ``+ b``."""
    logits = u_c @ v_DxN + c_N
    if seen is not None:  # id 0 (none) has logit -inf, which stays -inf
        ids_c, b = seen
        logits = logits.at[jnp.arange(len(ids_c))[:, None], ids_c].add(b)
    # One exp per logit, reused by the gradient (logsumexp + softmax would take two).
    mx = jnp.max(logits, axis=1, keepdims=True)
    e = jnp.exp(logits - mx)
    s = jnp.sum(e, axis=1)
    return logits, e, s, mx[:, 0] + jnp.log(s)


def _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, with_grad: bool, mix=(), seen=None):
    """The chunked pass of `full_softmax_loss_sum` (``mix = ()``), of
    `mixture_softmax_loss_sum` (``mix = (log_explore_M, log_repeat_M)``) and of
    `seen_softmax_loss_sum` (``seen = (ids_MxL, b)``)."""
    m, d = u_MxD.shape
    n = v_DxN.shape[1]
    rows, k, pad = _row_chunks(m, n)
    u = jnp.pad(u_MxD, ((0, pad), (0, 0))).reshape(k, rows, d)
    tgt = jnp.pad(target_M, (0, pad)).reshape(k, rows)
    w = jnp.pad(w_M, (0, pad)).reshape(k, rows)
    mix = tuple(jnp.pad(x, (0, pad)).reshape(k, rows) for x in mix)
    ids, b = (None, None) if seen is None else seen
    if ids is not None:
        ids = jnp.pad(ids, ((0, pad), (0, 0))).reshape(k, rows, -1)
    v_NxD = v_DxN.T
    c_N = c_N.at[0].set(-jnp.inf)  # id 0 (padding) is never a candidate
    row = jnp.arange(rows)

    def body(carry, xs):
        u_c, t_c, w_c, mix_c, ids_c = xs
        logits, e, s, lse = _chunk_logits(u_c, v_DxN, c_N, None if b is None else (ids_c, b))
        tl = logits[row, t_c]
        if mix_c:
            per, g_w = _mixture_rows(lse - tl, w_c, *mix_c)
        else:
            per, g_w = lse - tl, w_c
        total = carry[0] + jnp.sum(jnp.where(w_c != 0, w_c * per, 0.0))
        if not with_grad:
            return (total,), None
        _, dv, dc, db = carry
        g = (e * (g_w / s)[:, None]).at[row, t_c].add(-g_w)
        if ids_c is not None:  # d/db: the logits' gradient summed over the seen items
            db = db + jnp.sum(jnp.where(ids_c > 0, g[row[:, None], ids_c], 0.0))
        g_u = g.astype(u_c.dtype)
        dv = dv + (u_c.T @ g_u).astype(dv.dtype)
        dc = dc + jnp.sum(g, axis=0).astype(dc.dtype)
        ys = g_u @ v_NxD
        if mix_c:  # d/d log_explore = -w r, d/d log_repeat = -w (1 - r)
            ys = (ys, -g_w, g_w - w_c)
        return (total, dv, dc, db), ys

    dt = jnp.result_type(u_MxD.dtype, c_N.dtype, jnp.float32)
    init = (jnp.zeros((), dt),)
    if with_grad:
        init += (jnp.zeros((d, n), jnp.float32), jnp.zeros((n,), jnp.float32))
        init += (jnp.zeros((), jnp.float32),)
    carry, ys = jax.lax.scan(body, init, (u, tgt, w, mix, ids))
    if ys is None:
        return carry, None
    if not mix:
        return carry, ys.reshape(k * rows, d)[:m]
    du, d_explore, d_repeat = ys
    flat = (x.reshape(k * rows)[:m] for x in (d_explore, d_repeat))
    return carry, (du.reshape(k * rows, d)[:m], *flat)


def _mixture_rows(ce, w, log_explore, log_repeat):
    """Per row: the mixture's ``NLL`` and the weight ``w r`` of the row's logits gradient
    (``r`` the explore part's posterior; 0 on rows of weight 0, whose terms may be
    infinite)."""
    explore = log_explore - ce  # log((1 - w) p_exp(target))
    nll = -jnp.logaddexp(explore, log_repeat)
    r = jnp.where(w != 0, jnp.exp(jnp.minimum(explore + nll, 0.0)), 0.0)
    return nll, w * r


@jax.custom_vjp
def _softmax_sum(u_MxD, v_DxN, c_N, target_M, w_M):
    return _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, with_grad=False)[0][0]


def _softmax_sum_fwd(u_MxD, v_DxN, c_N, target_M, w_M):
    (total, dv, dc, _), du = _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, with_grad=True)
    return total, (du, dv.astype(v_DxN.dtype), dc.astype(c_N.dtype))


def _softmax_sum_bwd(res, g):
    du, dv, dc = res  # the targets and the weights get no gradient
    return (
        (g * du).astype(du.dtype),
        (g * dv).astype(dv.dtype),
        (g * dc).astype(dc.dtype),
        None,
        None,
    )


_softmax_sum.defvjp(_softmax_sum_fwd, _softmax_sum_bwd)


@jax.custom_vjp
def _mixture_sum(u_MxD, v_DxN, c_N, target_M, w_M, log_explore_M, log_repeat_M):
    mix = (log_explore_M, log_repeat_M)
    return _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, False, mix)[0][0]


def _mixture_sum_fwd(u_MxD, v_DxN, c_N, target_M, w_M, log_explore_M, log_repeat_M):
    mix = (log_explore_M, log_repeat_M)
    (total, dv, dc, _), (du, de, dr) = _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, True, mix)
    res = (du, dv.astype(v_DxN.dtype), dc.astype(c_N.dtype))
    return total, res + (de.astype(log_explore_M.dtype), dr.astype(log_repeat_M.dtype))


def _mixture_sum_bwd(res, g):
    grads = tuple((g * x).astype(x.dtype) for x in res)
    return grads[:3] + (None, None) + grads[3:]  # the targets and the weights get none


_mixture_sum.defvjp(_mixture_sum_fwd, _mixture_sum_bwd)


@jax.custom_vjp
def _seen_sum(u_MxD, v_DxN, c_N, target_M, w_M, ids_MxL, b):
    return _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, False, seen=(ids_MxL, b))[0][0]


def _seen_sum_fwd(u_MxD, v_DxN, c_N, target_M, w_M, ids_MxL, b):
    seen = (ids_MxL, b)
    (total, dv, dc, db), du = _softmax_chunks(u_MxD, v_DxN, c_N, target_M, w_M, True, seen=seen)
    return total, (du, dv.astype(v_DxN.dtype), dc.astype(c_N.dtype), db.astype(b.dtype))


def _seen_sum_bwd(res, g):
    du, dv, dc, db = (((g * x).astype(x.dtype)) for x in res)
    return du, dv, dc, None, None, None, db  # the targets, weights and ids get none


_seen_sum.defvjp(_seen_sum_fwd, _seen_sum_bwd)


# Above this many S x N Gumbel draws, `_draw` inverts the CDF instead (the Gumbel trick of
# `jax.random.categorical` would take 16 GB for 4,096 draws from 1M items).
_GUMBEL_MAX_ELEMENTS = 1 << 26


def _draw(key: Array, log_q_N: Array, n: int, inverse_cdf: bool | None = None) -> Array:
    """``n`` independent draws of an item id from ``q`` (``log_q`` may hold -inf): by the
    Gumbel trick (``n x N`` random numbers) or by inverting the CDF (``N + n log N`` work; same
    law, another random stream). ``inverse_cdf=None``: the CDF above `_GUMBEL_MAX_ELEMENTS`."""
    if inverse_cdf is None:
        inverse_cdf = n * log_q_N.shape[0] > _GUMBEL_MAX_ELEMENTS
    if not inverse_cdf:
        return jax.random.categorical(key, log_q_N, shape=(n,))
    cdf = jnp.cumsum(jnp.exp(log_q_N - jnp.max(log_q_N)))
    u = jax.random.uniform(key, (n,), cdf.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), log_q_N.shape[0] - 1)


def sampled_softmax_loss(
    key: Array,
    u_BxTxD: Array,
    v_DxN: Array,
    c_N: Array,
    target_BxT: Array,
    valid_BxT: Array,
    n_sampled: int,
    log_q_N: Array,
    popularity_N: Array,
    inverse_cdf: bool | None = None,
) -> Array:
    """Per-step sampled softmax, ``[B, T]``: the positive against the other rows' targets at
    the same time step (GRU4Rec's mini-batch negatives) and ``n_sampled`` negatives drawn
    from ``q`` and shared by the batch, with log-Q correction.

    Every candidate's logit is reduced by the log of its expected number of occurrences in the
    candidate set, ``log(n_t p_j + S q_j)``, where ``n_t`` is the number of valid rows at step
    t, ``p`` the training target frequency (the law of in-batch targets) and ``q`` the
    sampler. Candidates equal to the row's target (accidental hits) and padding are removed.
    Cost is ``B x T x (B + S)`` instead of ``B x T x N``. ``inverse_cdf``: how `_draw` draws.
    """
    sampled = _draw(key, log_q_N, n_sampled, inverse_cdf)
    inb_BxT = jnp.where(valid_BxT, target_BxT, 0)
    n_t = jnp.sum(valid_BxT, axis=0).astype(u_BxTxD.dtype)  # [T]
    s_q = n_sampled * jnp.exp(log_q_N)

    def log_count(items, n):
        return jnp.log(n * popularity_N[items] + s_q[items] + 1e-30)

    pos = jnp.sum(u_BxTxD * v_DxN[:, target_BxT].transpose(1, 2, 0), -1) + c_N[target_BxT]
    pos = pos - log_count(target_BxT, n_t[None, :])
    inb = jnp.einsum("btd,dct->btc", u_BxTxD, v_DxN[:, inb_BxT]) + c_N[inb_BxT].T[None]
    inb = inb - log_count(inb_BxT, n_t[None, :]).T[None]
    inb = jnp.where(
        (inb_BxT.T[None] == target_BxT[..., None]) | (inb_BxT.T[None] == 0), -jnp.inf, inb
    )
    smp = u_BxTxD @ v_DxN[:, sampled] + c_N[sampled]
    smp = smp - log_count(sampled[None, :], n_t[:, None])[None]
    smp = jnp.where(sampled[None, None, :] == target_BxT[..., None], -jnp.inf, smp)
    all_logits = jnp.concatenate([pos[..., None], inb, smp], axis=-1)
    return jax.nn.logsumexp(all_logits, axis=-1) - pos


def bpr_max_loss(
    key: Array,
    u_BxTxD: Array,
    v_DxN: Array,
    c_N: Array,
    target_BxT: Array,
    valid_BxT: Array,
    n_sampled: int,
    log_q_N: Array,
    bpreg: float,
    elu: float = 0.0,
    inverse_cdf: bool = False,
) -> Array:
    """Per-step BPR-max loss, ``[B, T]`` (Hidasi & Karatzoglou 2018, "Recurrent Neural
    Networks with Top-k Gains for Session-based Recommendations", Section 3.2).

    For the target score ``r_i`` and the scores ``r_j`` of the negatives, with softmax weights
    ``s_j = softmax_j(r_j)`` over the *negatives only* (the target is not among them):
    ``L = -log(sum_j s_j sigmoid(r_i - r_j)) + bpreg * sum_j s_j r_j^2``.

    The candidates are those of `sampled_softmax_loss` (the other rows' targets at the same
    step and ``n_sampled`` draws from ``q`` shared by the batch; accidental hits and padding
    removed), but the scores are the raw logits: like the official GRU4Rec, no log-Q
    correction (the official code applies ``logq`` to cross-entropy only). With ``elu > 0``
    every score, the target's and the negatives', first passes through
    ``ELU(r) = r if r > 0 else elu * (exp(r) - 1)``, the loss and its regulariser then use
    those, as the official ``bpr_max_loss_with_elu`` (``F.elu(O, elu_param)``).
    ``inverse_cdf``: how `_draw` draws the negatives (default: the Gumbel trick).
    """
    sampled = _draw(key, log_q_N, n_sampled, inverse_cdf)
    inb_BxT = jnp.where(valid_BxT, target_BxT, 0)
    pos_BxT = jnp.sum(u_BxTxD * v_DxN[:, target_BxT].transpose(1, 2, 0), -1) + c_N[target_BxT]
    inb_BxTxB = jnp.einsum("btd,dct->btc", u_BxTxD, v_DxN[:, inb_BxT]) + c_N[inb_BxT].T[None]
    inb_ok = (inb_BxT.T[None] != target_BxT[..., None]) & (inb_BxT.T[None] != 0)
    smp_BxTxS = u_BxTxD @ v_DxN[:, sampled] + c_N[sampled]
    smp_ok = jnp.broadcast_to(sampled[None, None, :] != target_BxT[..., None], smp_BxTxS.shape)
    neg = jnp.concatenate([inb_BxTxB, smp_BxTxS], axis=-1)
    if elu > 0:
        pos_BxT, neg = jax.nn.elu(pos_BxT, elu), jax.nn.elu(neg, elu)
    ok = jnp.concatenate([inb_ok, smp_ok], axis=-1)
    has_neg = jnp.any(ok, axis=-1)
    # Log space: log sum_j s_j sigmoid(d_j) = lse_j(r_j + log sigmoid(d_j)) - lse_j(r_j).
    # Removed candidates are -inf inside the logsumexps and 0 elsewhere, so no inf * 0 reaches
    # a gradient.
    neg_fin = jnp.where(ok, neg, 0.0)
    lse_neg = jax.nn.logsumexp(jnp.where(ok, neg, -jnp.inf), axis=-1)
    lse_neg = jnp.where(has_neg, lse_neg, 0.0)
    log_sig = jax.nn.log_sigmoid(pos_BxT[..., None] - neg_fin)
    lse_hit = jax.nn.logsumexp(jnp.where(ok, neg_fin + log_sig, -jnp.inf), axis=-1)
    lse_hit = jnp.where(has_neg, lse_hit, 0.0)
    s_BxTxC = jnp.exp(jnp.where(ok, neg_fin - lse_neg[..., None], -jnp.inf))
    reg = jnp.sum(s_BxTxC * neg_fin**2, axis=-1)
    return jnp.where(has_neg, lse_neg - lse_hit + bpreg * reg, 0.0)


def aux_loss(
    params: Params, hs_BxTxH: Array, target_BxT: Array, neg_BxTxK: Array, valid_BxT: Array
) -> Array:
    """Auxiliary loss, eq. (13), averaged over valid steps.

    For step t: ``-log sigmoid(<h_t W_a, e[t+1]>) - mean_k log(1 - sigmoid(<h_t W_a,
    e~_k[t+1]>))``, with ``e`` the *input* item embeddings (as DIEN's auxiliary network).
    With one negative (the default) this is exactly eq. (13)'s summand.
    """
    a_BxTxE = hs_BxTxH @ params["aux"]["w"]
    emb = params["item_emb"]
    pos = jnp.sum(a_BxTxE * emb[target_BxT], -1)
    neg = jnp.einsum("bte,btke->btk", a_BxTxE, emb[neg_BxTxK])
    per_step = jax.nn.softplus(-pos) + jnp.mean(jax.nn.softplus(neg), axis=-1)
    w = valid_BxT.astype(jnp.float32)  # f32 sums even when the step computes in bf16
    return jnp.sum(per_step.astype(jnp.float32) * w) / jnp.maximum(jnp.sum(w), 1.0)


def losses(
    params: Params,
    cfg: ModelConfig,
    loss_cfg: LossConfig,
    batch: Batch,
    key: Array,
    log_popularity: Array,
    train: bool = True,
) -> tuple[Array, dict[str, Array]]:
    """Eq. (14): ``L' = L_target + alpha L_aux`` (+ the rating MSE on rating data).

    Returns the scalar loss and its parts. Every average is over valid steps only (a step is
    valid when it is a real event and has a next item).
    """
    total, (parts, _) = carried_losses(params, cfg, loss_cfg, batch, key, log_popularity, train)
    return total, parts


def carried_losses(
    params: Params,
    cfg: ModelConfig,
    loss_cfg: LossConfig,
    batch: Batch,
    key: Array,
    log_popularity: Array,
    train: bool = True,
    h0_BxH: Array | None = None,
) -> tuple[Array, tuple[dict[str, Array], Array]]:
    """`losses` of a batch whose rows start from the state ``h0_BxH`` (zeros if None), and
    the state after each row's last real step: ``(loss, (parts, h_last_BxH))``, for
    truncated BPTT (`durgru_jax.bptt`).

    With ``h0_BxH`` the sampled negatives are drawn by inverting the CDF (`_draw`): truncated
    BPTT draws once per chunk, up to T times per batch, and S x N Gumbel numbers per draw
    (7.4M for 2,048 draws from ML-1M's items) would cost more than the update itself."""
    for name in ("repeat_head", "seen_bias"):
        if getattr(cfg, name) and loss_cfg.target != "full":
            raise ConfigError(
                f"config.model.{name}=True needs config.loss.target='full' "
                f"(got {loss_cfg.target!r})"
            )
    k_drop, k_aux, k_samp = jax.random.split(key, 3)
    hs, h_last = encode(params, cfg, batch, k_drop if train else None, h0_BxH)
    target = batch["targets"]
    valid = batch["mask"] & (target > 0)
    n_valid = jnp.maximum(jnp.sum(valid), 1)
    b, t, _ = hs.shape
    u = user_vector(params, cfg, hs)
    v, c = score_factors(params, cfg)
    if loss_cfg.target == "full" and cfg.repeat_head:  # the mixture of durgru_jax.repeat
        w = (valid / n_valid).astype(jnp.float32).reshape(-1)
        log_explore, log_repeat = repeat.train_terms(params, batch, hs, target)
        mix = (log_explore.reshape(-1), log_repeat.reshape(-1))
        target_loss = mixture_softmax_loss_sum(
            u.reshape(b * t, -1), v, c, target.reshape(-1), w, *mix
        )
    elif loss_cfg.target == "full" and cfg.seen_bias:  # the offset of durgru_jax.seen
        w = (valid / n_valid).astype(jnp.float32).reshape(-1)
        ids, b_seen = seen.train_ids(batch), params["seen"]["b"]
        target_loss = seen_softmax_loss_sum(
            u.reshape(b * t, -1), v, c, target.reshape(-1), w, ids, b_seen
        )
    elif loss_cfg.target == "full":  # the weighted sum at once: see full_softmax_loss_sum
        w = (valid / n_valid).astype(jnp.float32).reshape(-1)
        target_loss = full_softmax_loss_sum(u.reshape(b * t, -1), v, c, target.reshape(-1), w)
    else:
        log_q = log_popularity if loss_cfg.sampler == "popularity" else _log_uniform(cfg.n_items)
        if loss_cfg.sampler == "popularity" and loss_cfg.sample_alpha != 1.0:
            log_q = jax.nn.log_softmax(loss_cfg.sample_alpha * log_popularity)  # GRU4Rec's
        if loss_cfg.target == "bpr_max":
            per = bpr_max_loss(
                k_samp,
                u,
                v,
                c,
                target,
                valid,
                loss_cfg.n_sampled,
                log_q,
                loss_cfg.bpreg,
                loss_cfg.bpr_elu,
                inverse_cdf=h0_BxH is not None,
            )
        else:
            per = sampled_softmax_loss(
                k_samp,
                u,
                v,
                c,
                target,
                valid,
                loss_cfg.n_sampled,
                log_q,
                jnp.exp(log_popularity),
                inverse_cdf=True if h0_BxH is not None else None,
            )
        per = jnp.where(valid, per, 0.0)
        target_loss = jnp.sum(per) / n_valid
    parts = {"target_loss": target_loss}
    total = target_loss
    if loss_cfg.aux_weight > 0:
        aux_logp = log_popularity[1:] if loss_cfg.aux_sampler == "popularity" else None
        neg = sample_negatives(k_aux, target, cfg.n_items, loss_cfg.aux_negatives, aux_logp)
        aux = aux_loss(params, hs, target, neg, valid)
        parts["aux_loss"] = aux
        total = total + loss_cfg.aux_weight * aux
    if cfg.rating_head and loss_cfg.rating_weight > 0:
        pred = predict_rating(params, hs, target, user_rating_offset(params, batch))
        rok = valid & batch["rating_ok"]
        err = jnp.where(rok, pred - batch["rating_target"], 0.0)
        mse = jnp.sum(err**2) / jnp.maximum(jnp.sum(rok), 1)
        parts["rating_mse"] = mse
        total = total + loss_cfg.rating_weight * mse
    parts["loss"] = total
    return total, (parts, h_last)


def _log_uniform(n_items: int) -> Array:
    lq = jnp.full((n_items + 1,), -jnp.log(float(n_items)))
    return lq.at[0].set(-jnp.inf)
