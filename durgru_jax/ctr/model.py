"""CTR models on Criteo: the paper's recurrent cells over an impression's fields, and
logistic regression on hashed features.

Recurrent model. An impression is 39 categorical tokens (I1..I13 bucketised, C1..C26, see
`durgru_jax.ctr.criteo`). Each token is embedded (one table per field, stored as one table
with per-field row offsets, shared size ``E``) and the 39 embeddings are read *as a sequence
of length 39* by the GRU (eq. 10-11) or aGRU (eq. 6-8) cell of `durgru_jax.cells`; the
final hidden state goes through dropout and a linear layer to the click logit, trained with
binary cross-entropy. For the aGRU the field index is the input context (so every field has
its own input matrix ``I_c``, 39 contexts) and there is one transfer context; the relevance
context C_A attends to the running mean of the field embeddings read so far.

Durations do not apply: Criteo has no timestamps or dwell times, so the duration factor of
paper 000 is absent (``duration_mode="none"`` in the cells) and this is the plain GRU/aGRU.

Logistic regression: ``logit = b + sum_j w[h(j, token_j)]`` with ``h`` the hashing trick of
(field, token) into ``2^hash_bits`` buckets (``hash_bits=0``: one weight per vocabulary
token, no collisions).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import cells, layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CtrModelConfig:
    """Static (hashable) model settings; ``vocab_sizes`` per field in token-column order."""

    vocab_sizes: tuple[int, ...]
    cell: str = "agru"
    embed_dim: int = 16
    hidden_dim: int = 64
    dropout: float = 0.1
    relevance: bool = True
    field_context: bool = True
    scan_unroll: int = 1

    @property
    def n_fields(self) -> int:
        return len(self.vocab_sizes)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int32)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def init_params(cfg: CtrModelConfig, seed: int, click_rate: float = 0.5) -> dict:
    """Embeddings ~ N(0, 0.05^2), the cell's own init, zero output weights, and the output
    bias at the training click rate's log-odds."""
    if cfg.cell not in cells.CELLS:
        raise ValueError(f"model.cell must be one of {cells.CELLS}, got {cfg.cell!r}")
    k_emb, k_cell, k_out = jax.random.split(jax.random.key(seed), 3)
    e, h = cfg.embed_dim, cfg.hidden_dim
    if cfg.cell == "gru":
        cell = cells.init_gru(k_cell, e, h)
    else:
        cell = cells.init_agru(k_cell, e, h, cfg.n_fields if cfg.field_context else 1, 1)
    return {
        "emb": 0.05 * jax.random.normal(k_emb, (int(sum(cfg.vocab_sizes)), e)),
        "cell": cell,
        "w_out": jax.nn.initializers.glorot_uniform()(k_out, (h, 1))[:, 0],
        "b_out": jnp.asarray(_logit(click_rate), jnp.float32),
    }


def agru_field_inputs(p: dict, x_BxFxE: Array, relevance: bool):
    """`cells.agru_inputs` for input context = field index and no duration factor.

    Same result as ``cells.agru_inputs(p, x, 1, arange(F), mask=1, reset=0, "none")``, but
    each field's input matrix multiplies only that field's embedding (``[B, F, H]``) instead
    of every context's (``[B, F, CI, H]``, 39x the work and memory).
    """
    b, f, _ = x_BxFxE.shape
    n_ctx = p["w_in"].shape[0]
    if n_ctx == 1:
        xc = x_BxFxE @ p["w_in"][0]
    else:
        xc = jnp.einsum("bfe,feh->bfh", x_BxFxE, p["w_in"])
    xc = xc + p["b_c"]
    xz = x_BxFxE @ p["w_k"] + p["b_k"]
    if relevance:
        mask = jnp.ones((b, f), bool)
        reset = jnp.zeros((b, f), bool)
        s = cells.static_interest(x_BxFxE, mask, reset) @ p["w_s"]
        sv = s @ p["v_k"]
    else:
        s = jnp.zeros_like(xc)
        sv = jnp.zeros_like(xc)
    return xc, xz, s, sv


def logits(params: dict, cfg: CtrModelConfig, tokens_BxF: Array, key: Array | None = None):
    """Click logits ``[B]`` of impressions given as tokens ``[B, F]``; ``key`` = training."""
    k_in, k_out = jax.random.split(key) if key is not None else (None, None)
    idx = tokens_BxF + jnp.asarray(cfg.offsets)[None, :]
    x = layers.dropout(params["emb"][idx], cfg.dropout, k_in)
    b, f = tokens_BxF.shape
    mask = jnp.ones((b, f), bool)
    reset = jnp.zeros((b, f), bool)
    alpha = jnp.ones((b, f), x.dtype)  # no durations: the factor is absent (mode "none")
    p = params["cell"]
    if cfg.cell == "gru":
        xp = cells.gru_inputs(p, x, alpha, "none")

        def step(h, xp_t, a_t):
            return cells.gru_step(p, h, xp_t, a_t, "none")

        xs = (xp, alpha)
    else:
        xc, xz, s, sv = agru_field_inputs(p, x, cfg.relevance)
        tr = jnp.zeros((b, f), jnp.int32)

        def step(h, xc_t, xz_t, s_t, sv_t, tr_t, a_t):
            return cells.agru_step(p, h, xc_t, xz_t, s_t, sv_t, tr_t, a_t, "none", cfg.relevance)

        xs = (xc, xz, s, sv, tr, alpha)
    h0 = jnp.zeros((b, cfg.hidden_dim), x.dtype)
    h_last, _ = cells.run_cell(step, h0, xs, mask, reset, unroll=cfg.scan_unroll)
    h_last = layers.dropout(h_last, cfg.dropout, k_out)
    return h_last @ params["w_out"] + params["b_out"]


def bce(logits_B: Array, labels_B: Array) -> Array:
    """Mean binary cross-entropy of logits against 0/1 labels."""
    return jnp.mean(
        jnp.maximum(logits_B, 0) - logits_B * labels_B + jnp.log1p(jnp.exp(-jnp.abs(logits_B)))
    )


# --------------------------------------------------------------------------------------
# Logistic regression on hashed features
# --------------------------------------------------------------------------------------


def lr_feature_index(tokens_BxF: Array, offsets: np.ndarray, hash_bits: int) -> Array:
    """Weight index of each (field, token): its global vocabulary row when ``hash_bits`` is
    0, else a multiplicative (Knuth) hash of that row into ``2^hash_bits`` buckets."""
    idx = tokens_BxF.astype(jnp.uint32) + jnp.asarray(offsets, jnp.uint32)[None, :]
    if hash_bits == 0:
        return idx.astype(jnp.int32)
    h = (idx + jnp.uint32(1)) * jnp.uint32(2654435761)
    return (h >> jnp.uint32(32 - hash_bits)).astype(jnp.int32)


def init_lr(n_weights: int, click_rate: float) -> dict:
    return {"w": jnp.zeros((n_weights,)), "b": jnp.asarray(_logit(click_rate), jnp.float32)}


def lr_logits(params: dict, feat_BxF: Array) -> Array:
    return params["b"] + jnp.sum(params["w"][feat_BxF], axis=1)
