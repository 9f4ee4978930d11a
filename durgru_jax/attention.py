"""Attention encoders that replace the recurrent cell: SASRec and an ADPR-style baseline.

Both are pure functions of a parameter pytree with the contract of `model.encode`: they map a
batch (``items``, ``mask``, ``reset``) to ``(hs_BxTxH, h_last_BxH)``, where ``hs`` at step t
depends only on the events ``<= t`` of t's segment, so the rest of the model (scores of
eq. (12), full-softmax cross-entropy, auxiliary loss, evaluator) is reused unchanged.

* **SASRec** (Kang & McAuley 2018, `cell="sasrec"`): item embedding plus a learned position
  embedding, ``n_layers`` pre-LayerNorm blocks (LayerNorm -> causal multi-head self-attention
  -> residual, LayerNorm -> point-wise ReLU feed-forward -> residual), dropout, final
  LayerNorm.
* **ADPR-style attention over history** (`cell="adpr"`), our reading of paper 000's
  Ref. [28] (Yin et al. 2019): at step t, a dot-product attention whose query is the current
  event's embedding plus a learned user-independent query weighs the embeddings of the
  events ``<= t`` of the segment; their weighted sum and the current embedding go through a
  two-layer MLP.

Rows follow the data pipeline's layout: right padding (``mask`` false) and several sequences
packed into one row, each starting at a ``reset`` step. Attention is block-causal: a step
sees only valid steps at or before it in its own segment. Positions count the valid events
since the segment's start (0 for its first event), so padding on either side of a sequence
changes nothing and positions are causal. A padded step outputs the last valid output of its
segment (zeros before any), as the recurrent cells carry their state over padding.

Shape legend: B rows, T time steps, E item-embedding size, H model width (``hidden_dim``),
L blocks, A attention size, P positional-table size (``max_len``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from durgru_jax import layers

if TYPE_CHECKING:
    from durgru_jax.config import ModelConfig

Array = jax.Array
Params = dict[str, Any]

ATTENTION_CELLS = ("sasrec", "adpr")
_NEG = -1e9  # masked attention logit: finite, so a row with no key cannot make NaNs


# --------------------------------------------------------------------------------------
# Segments, positions and the block-causal mask
# --------------------------------------------------------------------------------------


def segment_layout(mask_BxT: Array, reset_BxT: Array) -> tuple[Array, Array, Array]:
    """Returns ``(allowed_BxTxT, pos_BxT, src_BxT)`` for right-padded, packed rows.

    ``allowed[b, t, s]``: step t may attend to step s (s <= t, s valid, same segment; the
    diagonal is always allowed so that every softmax has a key). ``pos``: number of valid
    events of the segment before t. ``src``: the last valid step <= t of t's segment, -1 if
    none (a padded step copies that step's output).
    """
    t = mask_BxT.shape[1]
    t_idx = jnp.arange(t)
    seg_BxT = jnp.cumsum(reset_BxT.astype(jnp.int32), axis=1)
    count_BxT = jnp.cumsum(mask_BxT.astype(jnp.int32), axis=1)
    before_BxT = count_BxT - mask_BxT.astype(jnp.int32)
    # `before` never decreases, so the running max picks the latest reset's count.
    base_BxT = jax.lax.cummax(jnp.where(reset_BxT, before_BxT, 0), axis=1)
    pos_BxT = jnp.maximum(before_BxT - base_BxT, 0)
    causal_TxT = t_idx[:, None] >= t_idx[None, :]
    same_BxTxT = seg_BxT[:, :, None] == seg_BxT[:, None, :]
    allowed = (causal_TxT[None] & mask_BxT[:, None, :] & same_BxTxT) | jnp.eye(t, dtype=bool)
    start_BxT = jax.lax.cummax(jnp.where(reset_BxT, t_idx[None, :], 0), axis=1)
    last_BxT = jax.lax.cummax(jnp.where(mask_BxT, t_idx[None, :], -1), axis=1)
    src_BxT = jnp.where(last_BxT >= start_BxT, last_BxT, -1)
    return allowed, pos_BxT, src_BxT


def allowed_steps(batch: dict[str, Array]) -> Array:
    """``[B, T, T]``: step t may use step s (s <= t, s a real event of t's segment)."""
    mask = batch["mask"]
    allowed, _, _ = segment_layout(mask, batch["reset"])
    return allowed & mask[:, None, :]


def allowed_at_last(batch: dict[str, Array]) -> Array:
    """``[B, T]``: the steps that each row's last real step may use (`allowed_steps`); none
    in a row without events."""
    last = layers.last_step(batch["mask"])
    rows = jnp.arange(last.shape[0])
    return allowed_steps(batch)[rows, jnp.maximum(last, 0)] & (last >= 0)[:, None]


def _carry_over_padding(h_BxTxH: Array, mask_BxT: Array, src_BxT: Array) -> Array:
    """Valid steps keep their output; a padded step takes ``h[src]`` (zeros if ``src < 0``)."""
    copied = jnp.take_along_axis(h_BxTxH, jnp.maximum(src_BxT, 0)[..., None], axis=1)
    copied = jnp.where((src_BxT >= 0)[..., None], copied, 0.0)
    return jnp.where(mask_BxT[..., None], h_BxTxH, copied)


def _masked_softmax(logits: Array, allowed: Array) -> Array:
    return jax.nn.softmax(jnp.where(allowed, logits, _NEG), axis=-1)


# --------------------------------------------------------------------------------------
# SASRec
# --------------------------------------------------------------------------------------


def init_sasrec(
    key: Array, embed_dim: int, hidden_dim: int, n_layers: int, max_len: int, dtype=jnp.float32
) -> Params:
    """SASRec parameters, the blocks' arrays stacked on a leading axis L.

    ``pos_PxH``: learned positions; per block ``ln1``, fused ``wqkv [H, 3H]``, output ``wo``,
    ``ln2``, feed-forward ``w1, w2 [H, H]`` (SASRec's inner size is the model width); final
    ``ln``. ``in_proj [E, H]`` only when E != H (SASRec has one width for both). Positions
    start at the item embeddings' scale (std ``1/sqrt(H)``).
    """
    h, nl = hidden_dim, n_layers
    ks = jax.random.split(key, 6)
    glorot = jax.nn.initializers.glorot_uniform(batch_axis=0)
    p = {
        "pos": jax.random.normal(ks[0], (max_len, h), dtype) / jnp.sqrt(h),
        "ln1_g": jnp.ones((nl, h), dtype),
        "ln1_b": jnp.zeros((nl, h), dtype),
        "wqkv": glorot(ks[1], (nl, h, 3 * h), dtype),
        "bqkv": jnp.zeros((nl, 3 * h), dtype),
        "wo": glorot(ks[2], (nl, h, h), dtype),
        "bo": jnp.zeros((nl, h), dtype),
        "ln2_g": jnp.ones((nl, h), dtype),
        "ln2_b": jnp.zeros((nl, h), dtype),
        "w1": glorot(ks[3], (nl, h, h), dtype),
        "b1": jnp.zeros((nl, h), dtype),
        "w2": glorot(ks[4], (nl, h, h), dtype),
        "b2": jnp.zeros((nl, h), dtype),
        "ln_g": jnp.ones((h,), dtype),
        "ln_b": jnp.zeros((h,), dtype),
    }
    if embed_dim != hidden_dim:
        p["in_proj"] = jax.nn.initializers.glorot_uniform()(ks[5], (embed_dim, h), dtype)
    return p


def _self_attention(
    p: Params, l: int, x_BxTxH: Array, allowed_BxTxT: Array, n_heads: int, rate: float, key
) -> Array:
    """Multi-head scaled dot-product attention of block ``l`` under the block-causal mask."""
    b, t, h = x_BxTxH.shape
    dh = h // n_heads
    qkv = x_BxTxH @ p["wqkv"][l] + p["bqkv"][l]
    q, k, v = (a.reshape(b, t, n_heads, dh) for a in jnp.split(qkv, 3, axis=-1))
    logits_BxNxTxT = jnp.einsum("bqnd,bknd->bnqk", q, k) / jnp.sqrt(float(dh))
    w = _masked_softmax(logits_BxNxTxT, allowed_BxTxT[:, None])
    w = layers.dropout(w, rate, key)
    out = jnp.einsum("bnqk,bknd->bqnd", w, v).reshape(b, t, h)
    return out @ p["wo"][l] + p["bo"][l]


def sasrec_encode(
    p: Params,
    item_emb_NxE: Array,
    batch: dict[str, Array],
    *,
    n_heads: int,
    dropout: float,
    key: Array | None = None,
) -> Array:
    """SASRec's per-step outputs ``hs_BxTxH`` (Kang & McAuley 2018, Sections III-B..E).

    ``x = E[item] (+ in_proj) + P[pos]``, dropout; each block
    ``x += Drop(Attn(LN(x)))``, ``x += Drop(W2 Drop(ReLU(W1 LN(x) + b1)) + b2)``; then
    ``LN(x)``. Dropout (training, ``key`` given) on the embeddings, the attention weights and
    both feed-forward layers, as SASRec.
    """
    mask, reset = batch["mask"], batch["reset"]
    allowed, pos, src = segment_layout(mask, reset)
    n_layers = p["wqkv"].shape[0]
    keys = (
        [None] * (1 + 4 * n_layers)
        if key is None
        else list(jax.random.split(key, 1 + 4 * n_layers))
    )
    x = item_emb_NxE[batch["items"]] * mask[..., None]
    if "in_proj" in p:
        x = x @ p["in_proj"]
    x = x + p["pos"][jnp.minimum(pos, p["pos"].shape[0] - 1)]
    x = layers.dropout(x, dropout, keys[0])
    for l in range(n_layers):
        k_att, k_ao, k_f1, k_f2 = keys[1 + 4 * l : 5 + 4 * l]
        y = layers.layer_norm(x, p["ln1_g"][l], p["ln1_b"][l])
        y = _self_attention(p, l, y, allowed, n_heads, dropout, k_att)
        x = x + layers.dropout(y, dropout, k_ao)
        y = layers.layer_norm(x, p["ln2_g"][l], p["ln2_b"][l])
        y = layers.dropout(jax.nn.relu(y @ p["w1"][l] + p["b1"][l]), dropout, k_f1)
        x = x + layers.dropout(y @ p["w2"][l] + p["b2"][l], dropout, k_f2)
    hs = layers.layer_norm(x, p["ln_g"], p["ln_b"])
    return _carry_over_padding(hs, mask, src)


# --------------------------------------------------------------------------------------
# ADPR-style attention over the history
# --------------------------------------------------------------------------------------


def init_adpr(key: Array, embed_dim: int, hidden_dim: int, dtype=jnp.float32) -> Params:
    """ADPR-style parameters: query/key maps ``wq, wk [E, A]`` (A = H), the learned
    user-independent query ``q0 [A]`` (zeros: attention starts from the current event's
    query alone) and the MLP ``w1 [2E, H]``, ``w2 [H, H]``."""
    e, h = embed_dim, hidden_dim
    ks = jax.random.split(key, 4)
    glorot = jax.nn.initializers.glorot_uniform()
    return {
        "wq": glorot(ks[0], (e, h), dtype),
        "wk": glorot(ks[1], (e, h), dtype),
        "q0": jnp.zeros((h,), dtype),
        "w1": glorot(ks[2], (2 * e, h), dtype),
        "b1": jnp.zeros((h,), dtype),
        "w2": glorot(ks[3], (h, h), dtype),
        "b2": jnp.zeros((h,), dtype),
    }


def adpr_encode(
    p: Params,
    item_emb_NxE: Array,
    batch: dict[str, Array],
    *,
    dropout: float,
    key: Array | None = None,
) -> Array:
    """Per-step user vectors ``hs_BxTxH`` of the ADPR-style encoder.

    ``a_ts = softmax_s(<e_t W_q + q_0, e_s W_k> / sqrt(A))`` over the valid steps ``s <= t`` of
    t's segment, ``c_t = sum_s a_ts e_s``, ``h_t = W_2 Drop(ReLU(W_1 [c_t; e_t] + b_1)) + b_2``.
    Dropout (training) on the item embeddings and the MLP's hidden layer.
    """
    mask, reset = batch["mask"], batch["reset"]
    allowed, _, src = segment_layout(mask, reset)
    k_in, k_hid = (None, None) if key is None else tuple(jax.random.split(key))
    e_BxTxE = layers.dropout(item_emb_NxE[batch["items"]] * mask[..., None], dropout, k_in)
    q_BxTxA = e_BxTxE @ p["wq"] + p["q0"]
    k_BxTxA = e_BxTxE @ p["wk"]
    logits = jnp.einsum("bqa,bka->bqk", q_BxTxA, k_BxTxA) / jnp.sqrt(float(q_BxTxA.shape[-1]))
    c_BxTxE = _masked_softmax(logits, allowed) @ e_BxTxE
    z = jnp.concatenate([c_BxTxE, e_BxTxE], axis=-1)
    hid = layers.dropout(jax.nn.relu(z @ p["w1"] + p["b1"]), dropout, k_hid)
    return _carry_over_padding(hid @ p["w2"] + p["b2"], mask, src)


# --------------------------------------------------------------------------------------
# Entry points used by `model.py`
# --------------------------------------------------------------------------------------


def init_encoder(key: Array, cfg: ModelConfig) -> Params:
    """Parameters of ``cfg.cell`` (one of `ATTENTION_CELLS`), a flat dict of arrays."""
    # One compiled function instead of one compilation per eager op and shape.
    if cfg.cell == "sasrec":
        init = jax.jit(init_sasrec, static_argnums=(1, 2, 3, 4))
        return init(key, cfg.embed_dim, cfg.hidden_dim, cfg.n_layers, cfg.max_len)
    if cfg.cell == "adpr":
        return jax.jit(init_adpr, static_argnums=(1, 2))(key, cfg.embed_dim, cfg.hidden_dim)
    raise ValueError(f"not an attention cell: {cfg.cell!r}")


def encode(
    params: Params, cfg: ModelConfig, batch: dict[str, Array], key: Array | None = None
) -> tuple[Array, Array]:
    """`model.encode` for the attention cells: ``(hs_BxTxH, h_last_BxH)``, ``h_last`` the
    output of the last valid step (zeros for an empty row); dropout only when ``key`` is
    given. Durations and contexts are not used (`ModelConfig` rejects duration modes)."""
    if cfg.cell == "sasrec":
        hs = sasrec_encode(
            params["cell"],
            params["item_emb"],
            batch,
            n_heads=cfg.n_heads,
            dropout=cfg.dropout,
            key=key,
        )
    elif cfg.cell == "adpr":
        hs = adpr_encode(params["cell"], params["item_emb"], batch, dropout=cfg.dropout, key=key)
    else:
        raise ValueError(f"not an attention cell: {cfg.cell!r}")
    return hs, layers.last_output(hs, batch["mask"])
