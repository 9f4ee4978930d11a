"""Recurrent cells of paper 000 as pure functions, run over time with `jax.lax.scan`.

Shape legend: B batch, T time, E item-embedding size (the paper's k), H hidden size,
CI number of input contexts, CT number of transfer contexts.

Each cell is split in two pure parts, so that everything that does not depend on the
recurrent state is computed once for the whole sequence outside the scan (one large matmul
instead of T small ones):

* ``*_inputs`` maps the per-event inputs (item embedding, duration factor, contexts) to the
  input projections of every step, ``[B, T, ...]``;
* ``*_step`` is the recurrence ``h_{t-1} -> h_t`` for one step, given that step's projections.

``run_cell`` scans a step over time. A padded step (``mask`` false) leaves the carry
unchanged, and a step flagged in ``reset`` starts from a zero state, so several sequences can
be packed into one row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Any]

CELLS = ("gru", "agru")
DURATION_MODES = ("none", "input", "gate")


# --------------------------------------------------------------------------------------
# GRU, eq. (10)-(11)
# --------------------------------------------------------------------------------------


def init_gru(
    key: Array,
    embed_dim: int,
    hidden_dim: int,
    dtype=jnp.float32,
    n_gap: int = 0,
    rating_input: bool = False,
) -> Params:
    """Parameters of eq. (10): W_{z,r,n} fused to ``w_ExH3``, U_{z,r} fused, U, biases.

    ``n_gap > 0`` (``model.gap_input``) adds ``w_gap [n_gap, 3H]``: one row of input
    projections per time-gap bucket, as if the bucket's one-hot vector were part of the input.
    ``rating_input`` (``model.rating_input``) adds ``w_rating [E, 3H]``, the projection of the
    item embedding signed and scaled by the user's rating of it. Both start at zero, so
    training starts from the plain GRU.
    """
    k1, k2, k3 = jax.random.split(key, 3)
    glorot = jax.nn.initializers.glorot_uniform()
    orth = jax.nn.initializers.orthogonal()
    params = {
        "w_x": glorot(k1, (embed_dim, 3 * hidden_dim), dtype),
        "u_zr": jnp.concatenate(
            [orth(k, (hidden_dim, hidden_dim), dtype) for k in jax.random.split(k2, 2)], axis=1
        ),
        "u_n": orth(k3, (hidden_dim, hidden_dim), dtype),
        "b": jnp.zeros((3 * hidden_dim,), dtype),
    }
    if n_gap:
        params["w_gap"] = jnp.zeros((n_gap, 3 * hidden_dim), dtype)
    if rating_input:
        params["w_rating"] = jnp.zeros((embed_dim, 3 * hidden_dim), dtype)
    return params


def gru_inputs(
    params: Params,
    x_BxTxE: Array,
    alpha_BxT: Array,
    duration_mode: str,
    gap_BxT: Array | None = None,
    rating_dev_BxT: Array | None = None,
) -> Array:
    """Input projections ``W_{z,r,n} (alpha_t x_t) + b`` of eq. (10), ``[B, T, 3H]``.

    With ``duration_mode == "input"`` (the paper) the duration factor scales the input; the
    bias is added after the scaling, as in eq. (10) with the bias the paper mentions. With
    ``w_gap`` in ``params`` (``model.gap_input``), the row of event t's time-gap bucket
    ``gap_BxT`` (the gap since the previous event, known at t) is added beside the bias: the
    factor weighs the item, not the time that passed. With ``w_rating`` (``model.rating_input``)
    ``(d_t x_t) W_rating`` is added too, ``d_t`` the user's rating of event t's item minus the
    mean rating (`model.rating_deviation`): the item as liked or disliked, the input of
    asymmetric factor models (NSVD, SVD++) whose sum over a user's ratings is a user factor.
    """
    proj = x_BxTxE @ params["w_x"]
    if duration_mode == "input":
        proj = alpha_BxT[..., None] * proj
    proj = proj + params["b"]
    if "w_gap" in params:
        if gap_BxT is None:
            raise ValueError("gru_inputs: params hold w_gap (model.gap_input) but no gap_BxT")
        # A one-hot matmul, not a gather: its gradient is a matmul, a gather's a scatter-add.
        pick = jax.nn.one_hot(gap_BxT, params["w_gap"].shape[0], dtype=proj.dtype)
        proj = proj + pick @ params["w_gap"]
    if "w_rating" in params:
        if rating_dev_BxT is None:
            raise ValueError("gru_inputs: params hold w_rating (model.rating_input) but no ratings")
        proj = proj + (rating_dev_BxT[..., None] * x_BxTxE) @ params["w_rating"]
    return proj


def gru_step(params: Params, h_BxH: Array, xp_Bx3H: Array, alpha_B: Array, duration_mode: str):
    """One GRU step, eq. (10)-(11): ``h_t = (1 - z_t) h_{t-1} + z_t \\hat h_t``.

    The candidate uses ``U (r_t * h_{t-1})`` exactly as eq. (10) writes it (not the cuDNN
    variant ``r_t * (U h_{t-1})``). With ``duration_mode == "gate"`` the update gate is
    scaled by the duration factor, ``z_t <- alpha_t z_t`` (AUGRU of DIEN).
    """
    return gru_step_gates(params, h_BxH, xp_Bx3H, alpha_B, duration_mode)[0]


def gru_step_gates(
    params: Params, h_BxH: Array, xp_Bx3H: Array, alpha_B: Array, duration_mode: str
) -> tuple[Array, Array]:
    """`gru_step` and its update gate as applied, ``z_t`` of eq. (11) ``[B, H]`` (after the
    duration factor with ``duration_mode == "gate"``): the share of new knowledge."""
    hdim = h_BxH.shape[-1]
    zr = jax.nn.sigmoid(xp_Bx3H[:, : 2 * hdim] + h_BxH @ params["u_zr"])
    z, r = zr[:, :hdim], zr[:, hdim:]
    cand = jnp.tanh(xp_Bx3H[:, 2 * hdim :] + (r * h_BxH) @ params["u_n"])
    if duration_mode == "gate":
        z = alpha_B[:, None] * z
    return (1.0 - z) * h_BxH + z * cand, z


# --------------------------------------------------------------------------------------
# aGRU, eq. (6)-(8)
# --------------------------------------------------------------------------------------


def init_agru(
    key: Array,
    embed_dim: int,
    hidden_dim: int,
    n_input_contexts: int,
    n_transfer_contexts: int,
    dtype=jnp.float32,
    reset_gate: bool = False,
) -> Params:
    """Parameters of eq. (6)-(8).

    ``w_in``: the context-specific input matrices I_c, ``[CI, E, H]``; ``w_tr``: the
    context-specific transition matrices T_c stored side by side as ``[H, CT*H]`` so one
    matmul gives ``h T_c`` for every c; ``w_k, u_k, v_k``: W_k, U_k, V_k of eq. (7);
    ``w_s``: projection of the static interest (item-embedding space) to the hidden space,
    used by the relevance attention.
    """
    ks = jax.random.split(key, 6)
    glorot = jax.nn.initializers.glorot_uniform()
    orth = jax.nn.initializers.orthogonal()
    w_tr = jnp.concatenate(
        [
            orth(k, (hidden_dim, hidden_dim), dtype)
            for k in jax.random.split(ks[1], n_transfer_contexts)
        ],
        axis=1,
    )
    params = {
        "w_in": jnp.stack(
            [
                glorot(k, (embed_dim, hidden_dim), dtype)
                for k in jax.random.split(ks[0], n_input_contexts)
            ]
        ),
        "w_tr": w_tr,
        "b_c": jnp.zeros((hidden_dim,), dtype),
        "w_k": glorot(ks[2], (embed_dim, hidden_dim), dtype),
        "u_k": orth(ks[3], (hidden_dim, hidden_dim), dtype),
        "v_k": glorot(ks[4], (hidden_dim, hidden_dim), dtype),
        "b_k": jnp.zeros((hidden_dim,), dtype),
        "w_s": glorot(ks[5], (embed_dim, hidden_dim), dtype),
    }
    if reset_gate:  # ablation: a learned reset gate instead of the paper's r_t = I
        kr1, kr2 = jax.random.split(jax.random.fold_in(key, 1))
        params["w_r"] = glorot(kr1, (embed_dim, hidden_dim), dtype)
        params["u_r"] = orth(kr2, (hidden_dim, hidden_dim), dtype)
        params["b_r"] = jnp.zeros((hidden_dim,), dtype)
    return params


def static_interest(x_BxTxE: Array, mask_BxT: Array, reset_BxT: Array) -> Array:
    """The static interest context C_S at each step: the mean item embedding of the events
    seen so far in the current sequence, inclusive of step t.

    Interpretation: the paper never defines C_S. A mean over the user's *whole* training
    history would let a training prediction at step t see the items at t+1.. (its targets), so
    we use the causal prefix mean; at evaluation time, where the whole input precedes the
    target, it equals the mean embedding of the user's visible history (the last
    ``max_len`` events). Packed rows restart the mean at each ``reset``.
    """
    m_BxT = mask_BxT.astype(x_BxTxE.dtype)
    xm = x_BxTxE * m_BxT[..., None]
    csum_x = jnp.cumsum(xm, axis=1)
    csum_m = jnp.cumsum(m_BxT, axis=1)
    # Running sums restart at the latest reset: subtract the exclusive prefix sum at that
    # position (index 0 when there is none, where the exclusive sum is 0).
    t_1xT = jnp.arange(reset_BxT.shape[1])[None, :]
    last_reset_BxT = jax.lax.cummax(jnp.where(reset_BxT, t_1xT, 0), axis=1)
    base_x = jnp.take_along_axis(csum_x - xm, last_reset_BxT[..., None], axis=1)
    base_m = jnp.take_along_axis(csum_m - m_BxT, last_reset_BxT, axis=1)
    count = jnp.maximum(csum_m - base_m, 1.0)
    return (csum_x - base_x) / count[..., None]


def agru_inputs(
    params: Params,
    x_BxTxE: Array,
    alpha_BxT: Array,
    in_ctx_BxT: Array,
    mask_BxT: Array,
    reset_BxT: Array,
    duration_mode: str,
    relevance: bool = True,
    items_BxT: Array | None = None,
    item_emb_NxE: Array | None = None,
):
    """Everything of eq. (6)-(7) that does not depend on ``h_{t-1}``.

    Returns ``(xc_BxTxH, xz_BxTxH, s_BxTxH, sv_BxTxH)``: ``p_i I_{C_I}`` (eq. 6), ``p_i W_k
    + b`` (eq. 7), the projected static interest ``C_S W_s`` and ``C_S W_s V_k``. Because
    the relevance context is ``C_A = a_t C_S W_s`` with a scalar ``a_t`` (see ``agru_step``),
    ``C_A V_k = a_t (C_S W_s V_k)`` and the V_k matmul can leave the scan.

    With ``items`` and ``item_emb`` (only valid when ``x = item_emb[items] * mask``, i.e.
    without dropout), ``p_i I_c`` and ``p_i W_k`` are looked up in the catalogue's
    projections, computed once: the same products, far less memory traffic than projecting
    every event into every context (evaluation, where N is small next to B x T).
    """
    n_in = params["w_in"].shape[0]
    if items_BxT is not None and item_emb_NxE is not None:
        n = item_emb_NxE.shape[0]
        m = mask_BxT[..., None]
        table_in = jnp.einsum("ne,ceh->cnh", item_emb_NxE, params["w_in"]).reshape(n_in * n, -1)
        xc = jnp.where(m, table_in[in_ctx_BxT * n + items_BxT], 0.0)
        xz = jnp.where(m, (item_emb_NxE @ params["w_k"])[items_BxT], 0.0)
    elif n_in == 1:
        xc = x_BxTxE @ params["w_in"][0]
    else:
        # The context's projection picked by a select, not a gather: its gradient is then a
        # select too, where a gather's is a scatter-add (slow on CPU).
        xi_BxTxCIxH = jnp.einsum("bte,ceh->btch", x_BxTxE, params["w_in"])
        pick_BxTxCI = in_ctx_BxT[..., None] == jnp.arange(n_in)
        xc = jnp.sum(jnp.where(pick_BxTxCI[..., None], xi_BxTxCIxH, 0.0), axis=2)
    if items_BxT is None or item_emb_NxE is None:
        xz = x_BxTxE @ params["w_k"]
    if duration_mode == "input":
        xc = alpha_BxT[..., None] * xc
        xz = alpha_BxT[..., None] * xz
    xc = xc + params["b_c"]
    xz = xz + params["b_k"]
    if "w_r" in params:  # learned reset gate: its input part joins the update gate's
        xr = x_BxTxE @ params["w_r"]
        xr = (alpha_BxT[..., None] * xr if duration_mode == "input" else xr) + params["b_r"]
        xz = jnp.concatenate([xz, xr], axis=-1)
    if relevance:
        s = static_interest(x_BxTxE, mask_BxT, reset_BxT) @ params["w_s"]
        sv = s @ params["v_k"]
    else:
        s = jnp.zeros_like(xc)
        sv = jnp.zeros_like(xc)
    return xc, xz, s, sv


def agru_step(
    params: Params,
    h_BxH: Array,
    xc_BxH: Array,
    xz_BxH: Array,
    s_BxH: Array,
    sv_BxH: Array,
    tr_ctx_B: Array,
    alpha_B: Array,
    duration_mode: str,
    relevance: bool = True,
):
    """One aGRU step, eq. (6)-(8).

    * candidate knowledge (6): ``\\hat h_t = tanh(p_i I_{C_I} + h_{t-1} T_{C_T} + b)``. The
      paper writes a generic nonlinearity sigma; we use tanh as in eq. (3), which keeps the
      state in (-1, 1) like the GRU it replaces. Reset gate r_t = I, so there is no r
      (the ablation ``reset_gate=True`` learns one: ``r_t = sigmoid(p_i W_r + h U_r + b)``
      and the transition reads ``(r_t * h_{t-1}) T_{C_T}``; its input part rides in the
      second half of ``xz``).
    * relevance context: attention between the candidate knowledge and the static interest
      ``s_t = C_S W_s``: ``a_t = sigmoid(<\\hat h_t, s_t> / sqrt(H))`` and
      ``C_A = a_t s_t``. With a single static-interest vector a softmax over keys would be
      identically 1, so the attention weight is a sigmoid score.
    * update gate (7): ``z_t = sigmoid(p_i W_k + h_{t-1} U_k + C_A V_k + b)``.
    * hidden state (8): ``h_t = (1 - z_t) \\hat h_t + z_t h_{t-1}`` -- note z_t here is the
      share of the *old* state, the opposite convention to eq. (11).
    * ``duration_mode == "gate"`` scales the share of new knowledge by the duration factor:
      ``1 - z_t <- alpha_t (1 - z_t)``.
    """
    return agru_step_gates(
        params, h_BxH, xc_BxH, xz_BxH, s_BxH, sv_BxH, tr_ctx_B, alpha_B, duration_mode, relevance
    )[0]


def agru_step_gates(
    params: Params,
    h_BxH: Array,
    xc_BxH: Array,
    xz_BxH: Array,
    s_BxH: Array,
    sv_BxH: Array,
    tr_ctx_B: Array,
    alpha_B: Array,
    duration_mode: str,
    relevance: bool = True,
) -> tuple[Array, Array, Array]:
    """`agru_step` and its gates: ``(h_t, z_t [B, H], a_t [B])``, the update gate of eq. (7)
    (the share of the *old* state, before the duration factor) and the relevance weight
    ``a_t`` (ones without ``relevance``: no relevance context then)."""
    hdim = h_BxH.shape[-1]
    n_tr = params["w_tr"].shape[1] // hdim
    if "u_r" in params:  # ablation: learned reset gate r_t, candidate from (r_t * h) T_c
        hu2 = h_BxH @ jnp.concatenate([params["u_k"], params["u_r"]], axis=1)
        r = jax.nn.sigmoid(xz_BxH[:, hdim:] + hu2[:, hdim:])
        xz_BxH, hu = xz_BxH[:, :hdim], hu2[:, :hdim]
        ht_all = (r * h_BxH) @ params["w_tr"]
    else:
        hu_all = h_BxH @ jnp.concatenate([params["u_k"], params["w_tr"]], axis=1)
        hu, ht_all = hu_all[:, :hdim], hu_all[:, hdim:]
    if n_tr == 1:
        ht = ht_all
    else:  # a select, not a gather, as for the input contexts (see agru_inputs)
        ht_BxCTxH = ht_all.reshape(h_BxH.shape[0], n_tr, hdim)
        pick_BxCT = tr_ctx_B[:, None] == jnp.arange(n_tr)
        ht = jnp.sum(jnp.where(pick_BxCT[..., None], ht_BxCTxH, 0.0), axis=1)
    cand = jnp.tanh(xc_BxH + ht)
    pre_z = xz_BxH + hu
    a_B = jnp.ones(h_BxH.shape[:1], h_BxH.dtype)
    if relevance:
        a_B = jax.nn.sigmoid(jnp.sum(cand * s_BxH, axis=-1) / jnp.sqrt(float(hdim)))
        pre_z = pre_z + a_B[:, None] * sv_BxH
    z = jax.nn.sigmoid(pre_z)
    new = 1.0 - z
    if duration_mode == "gate":
        new = alpha_B[:, None] * new
    return new * cand + (1.0 - new) * h_BxH, z, a_B


# --------------------------------------------------------------------------------------
# Scan over time
# --------------------------------------------------------------------------------------


def run_cell(
    step: Callable[..., Array],
    h0_BxH: Array,
    xs: tuple[Array, ...],
    mask_BxT: Array,
    reset_BxT: Array,
    unroll: int = 1,
) -> tuple[Array, Array]:
    """Scan ``step(h, *x_t) -> h`` (or ``-> (h, out)``) over time; returns
    ``(h_last_BxH, hs_BxTxH)``, ``hs`` being the outputs.

    ``xs`` are time-major-able arrays shaped ``[B, T, ...]``. A padded step keeps the carry
    (and outputs it, so ``hs`` at a padded step repeats the last valid state); a reset step
    starts from zeros.
    """

    def body(h, inp):
        m_B, r_B, *x = inp
        h = jnp.where(r_B[:, None], jnp.zeros_like(h), h)
        res = step(h, *x)
        # A step may return (next carry, output) when the two differ (duration_delay=1).
        h_new, out = res if isinstance(res, tuple) else (res, res)
        out = jnp.where(m_B[:, None], out, h)
        h = jnp.where(m_B[:, None], h_new, h)
        return h, out

    to_tm = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    inputs = (to_tm(mask_BxT), to_tm(reset_BxT)) + tuple(to_tm(a) for a in xs)
    h_last, hs_TxBxH = jax.lax.scan(body, h0_BxH, inputs, unroll=unroll)
    return h_last, jnp.swapaxes(hs_TxBxH, 0, 1)
