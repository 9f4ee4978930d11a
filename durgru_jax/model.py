"""The duration-aware recommender of paper 000 (Sections 3.1-3.4).

Flax NNX modules only *hold* the parameters (`DurGRU`); all computation is in pure functions
of a parameter pytree (`encode`, `score_factors` here, the training objective in
`durgru_jax.loss`), which the training loop jits.

Shape legend: B rows, T time steps, E item-embedding size, H hidden size, N catalogue size
plus one (item id 0 is padding and is never scored), D size of the user vector that meets the
item factors.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from durgru_jax import attention, cells, layers, repeat, seen
from durgru_jax.config import ConfigError, ModelConfig
from durgru_jax.duration import duration_factor
from durgru_jax.layers import last_step as last_step  # `model.last_step`, for evaluation

Array = jax.Array
Params = dict[str, Any]
Batch = dict[str, Array]


class _Group(nnx.Module):
    """A named group of parameters (one `nnx.Param` per array)."""

    def __init__(self, arrays: dict[str, Array]):
        for name, value in arrays.items():
            setattr(self, name, nnx.Param(value))


class DurGRU(nnx.Module):
    """Parameter container of the duration-aware (a)GRU recommender.

    ``item_emb``: p_i of eq. (6) / x_t of eq. (10), ``[N, E]``; ``cell``: the GRU or aGRU
    matrices; ``out``: W_0 of eq. (12) (``w [H, N]`` and ``b [N]``, or with tied output a
    projection ``[H, E]`` onto the item embeddings); ``aux``: the auxiliary network of
    eq. (13), ``[H, E]``; ``rating``: the optional rating head; ``repeat``: the optional
    repeat-aware output (`durgru_jax.repeat`); ``seen``: the optional seen-item offset
    (`durgru_jax.seen`).
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        n, e, h = cfg.n_items + 1, cfg.embed_dim, cfg.hidden_dim
        if cfg.rating_input and not cfg.rating_head:
            raise ConfigError(
                "config.model.rating_input=True reads the rating head's mean: it needs data "
                "with ratings and config.loss.rating_weight > 0"
            )
        k_emb, k_cell, k_out, k_aux, k_rat = jax.random.split(rngs.params(), 5)
        glorot = jax.nn.initializers.glorot_uniform()
        self.item_emb = nnx.Param(jax.random.normal(k_emb, (n, e)) * (1.0 / np.sqrt(e)))
        if cfg.cell in attention.ATTENTION_CELLS:
            cell = attention.init_encoder(k_cell, cfg)
        elif cfg.cell == "gru":
            n_gap = cfg.n_transfer_contexts * cfg.gap_input
            cell = cells.init_gru(k_cell, e, h, n_gap=n_gap, rating_input=cfg.rating_input)
        else:
            cell = cells.init_agru(
                k_cell,
                e,
                h,
                cfg.n_input_contexts,
                cfg.n_transfer_contexts,
                reset_gate=cfg.reset_gate,
            )
        self.cell = _Group(cell)
        if cfg.tie_output:
            out = {"proj": glorot(k_out, (h, e)), "b": jnp.zeros((n,))}
        else:
            out = {"w": glorot(k_out, (h, n)), "b": jnp.zeros((n,))}
        self.out = _Group(out)
        self.aux = _Group({"w": glorot(k_aux, (h, e))})
        if cfg.rating_head:
            self.rating = _Group(
                {
                    "w": glorot(k_rat, (h, e)),
                    "b_item": jnp.zeros((n,)),
                    "mu": jnp.zeros(()),
                    "w_user": jnp.ones(()),
                }
            )
        if cfg.repeat_head:  # its own key: the parameters above stay those of the plain model
            self.repeat = _Group(repeat.init_params(rngs.params(), h, e))
        if cfg.seen_bias:
            self.seen = _Group(seen.init_params())


def init_params(
    cfg: ModelConfig,
    seed: int,
    log_popularity: np.ndarray | None = None,
    rating_mean: float | None = None,
    repeat_rate: float | None = None,
) -> Params:
    """A pure parameter pytree (nested dict of arrays) for `cfg`.

    With ``log_popularity`` (training item frequencies) the output bias starts at the centred
    log popularity, so the model starts from the most-popular ranking instead of spending its
    first thousand Adam steps learning it through a bias that moves ~lr per step. For the same
    reason the rating head's ``mu`` starts at ``rating_mean`` (the training ratings' mean) and
    the repeat head's mode weight at ``repeat_rate`` (`repeat.window_repeat_rate`, clipped to
    [0.001, 0.999]): at ``w = 0.5`` window items would outrank the catalogue on data where
    nothing repeats.
    """
    model = DurGRU(cfg, rngs=nnx.Rngs(params=seed))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    if repeat_rate is not None and "repeat" in params:
        rate = float(np.clip(repeat_rate, 1e-3, 1 - 1e-3))
        params["repeat"]["b"] = jnp.asarray(np.log(rate / (1 - rate)), jnp.float32)
    if rating_mean is not None and "rating" in params:
        params["rating"]["mu"] = jnp.asarray(rating_mean, params["rating"]["mu"].dtype)
    if log_popularity is not None:
        lp = np.asarray(log_popularity, np.float32)
        finite = np.isfinite(lp)
        bias = np.where(finite, lp - lp[finite].mean(), 0.0).astype(np.float32)
        params["out"]["b"] = jnp.asarray(bias)
    return params


def duration_alpha(cfg: ModelConfig, batch: Batch, dtype) -> Array:
    """The duration attention factor of every step, eq. (9) (ones with ``duration_mode=none``)."""
    if cfg.duration_mode == "none":
        return jnp.ones(batch["mask"].shape, dtype)
    return duration_factor(
        batch["dur"],
        batch["dur_ok"],
        batch["dur_mean"],
        batch["dur_std"],
        batch["dur_user_ok"],
        scale=cfg.duration_scale,
    )


def encode(
    params: Params,
    cfg: ModelConfig,
    batch: Batch,
    key: Array | None = None,
    h0_BxH: Array | None = None,
) -> tuple[Array, Array]:
    """Runs the cell over ``batch``; returns ``(hs_BxTxH, h_last_BxH)``: the outputs of every
    step and the output of the last real step (zeros for an empty row).

    ``key`` switches dropout on (training): dropout acts on the item embeddings that enter the
    cell (rate ``cfg.embed_rate``) and on the hidden states that leave it (``cfg.hidden_rate``).
    ``hs`` at step t depends only on events ``<= t``. ``h0_BxH`` is the state before the first
    step (zeros if None; a reset step still starts from zeros), for truncated BPTT. The
    attention cells (``sasrec``, ``adpr``) run `attention.encode`, same contract, no ``h0``.
    """
    if cfg.cell in attention.ATTENTION_CELLS:
        if h0_BxH is not None:
            raise ValueError(f"encode: model.cell={cfg.cell!r} has no recurrent state h0")
        return attention.encode(params, cfg, batch, key)
    k_in, k_out = (None, None) if key is None else tuple(jax.random.split(key))
    mask, reset = batch["mask"], batch["reset"]
    x_BxTxE = params["item_emb"][batch["items"]] * mask[..., None]
    x_BxTxE = layers.dropout(x_BxTxE, cfg.embed_rate, k_in)
    alpha_BxT = duration_alpha(cfg, batch, x_BxTxE.dtype)
    p = params["cell"]
    b, h = mask.shape[0], cfg.hidden_dim
    h0 = jnp.zeros((b, h), x_BxTxE.dtype) if h0_BxH is None else h0_BxH.astype(x_BxTxE.dtype)
    mode = cfg.duration_mode
    # duration_delay=1: event t's duration is only known once event t+1 happens (a dwell
    # derived from the next click), so the output of step t, which predicts t+1, comes from
    # a second pass of the cell with a neutral factor; the carried state uses the real one.
    delayed = cfg.duration_delay == 1 and mode != "none"
    neutral = jnp.full_like(alpha_BxT, 0.5 * cfg.duration_scale)
    alphas = (alpha_BxT, neutral) if delayed else (alpha_BxT,)
    if cfg.cell == "gru":
        gap = batch["tr_ctx"] if cfg.gap_input else None  # the transfer context: the time gap
        dev = rating_deviation(params, batch) if cfg.rating_input else None
        xs = tuple(
            a for al in alphas for a in (cells.gru_inputs(p, x_BxTxE, al, mode, gap, dev), al)
        )

        def one(h_prev, xp_t, a_t):
            return cells.gru_step(p, h_prev, xp_t, a_t, mode)

        n_per = 2
    else:
        xs = ()
        # Without dropout (evaluation), the input projections are rows of the catalogue's.
        lookup = {}
        if key is None and params["item_emb"].shape[0] <= mask.size:
            lookup = {"items_BxT": batch["items"], "item_emb_NxE": params["item_emb"]}
        for al in alphas:
            xc, xz, s, sv = cells.agru_inputs(
                p, x_BxTxE, al, batch["in_ctx"], mask, reset, mode, cfg.relevance, **lookup
            )
            xs += (xc, xz, s, sv, batch["tr_ctx"], al)

        def one(h_prev, xc_t, xz_t, s_t, sv_t, tr_t, a_t):
            return cells.agru_step(p, h_prev, xc_t, xz_t, s_t, sv_t, tr_t, a_t, mode, cfg.relevance)

        n_per = 6

    def step(h_prev, *x):
        if not delayed:
            return one(h_prev, *x)
        return one(h_prev, *x[:n_per]), one(h_prev, *x[n_per:])

    _, hs = cells.run_cell(step, h0, xs, mask, reset, unroll=cfg.scan_unroll)
    # The representation after the last real event (what predicts the next one).
    h_last = layers.last_output(hs, mask)
    return layers.dropout(hs, cfg.hidden_rate, k_out), h_last


def score_factors(params: Params, cfg: ModelConfig) -> tuple[Array, Array]:
    """Item factors ``(V_DxN, c_N)`` of eq. (12): scores are ``user_vector(h) @ V + c``.

    Eq. (12) puts a sigmoid on the scores; it is monotone, so rankings use the logits (a
    float32 sigmoid saturates to exactly 1.0 and would create false ties).
    """
    out = params["out"]
    if cfg.tie_output:
        return params["item_emb"].T, out["b"]
    return out["w"], out["b"]


def user_vector(params: Params, cfg: ModelConfig, h: Array) -> Array:
    return h @ params["out"]["proj"] if cfg.tie_output else h


# Prior count of the shrunk user offset: a user with n earlier ratings gets n / (n + 5) of
# their mean deviation (the usual damped baseline of rating predictors).
_RATING_SHRINK = 5.0


def _rated(batch: Batch) -> Array:
    """``[B, T]`` bool: the input event is real and carries a rating (none in a batch without
    input ratings: no evidence)."""
    if "rating_in" not in batch:
        return jnp.zeros(batch["mask"].shape, bool)
    return batch["rating_in_ok"] & batch["mask"]


def rating_deviation(params: Params, batch: Batch) -> Array:
    """``[B, T]``: each input event's rating minus the rating head's ``mu`` (0 where the event
    has no rating, is padding, or the batch carries no ratings). ``mu`` is held fixed here, so
    the inputs that read it do not pull the head's mean."""
    mu = jax.lax.stop_gradient(params["rating"]["mu"])
    return jnp.where(_rated(batch), batch.get("rating_in", 0.0) - mu, 0.0).astype(mu.dtype)


def user_rating_offset(params: Params, batch: Batch) -> Array:
    """``[B, T]``: the user's shrunk mean deviation from ``mu`` over the ratings of the inputs up
    to and including step t (since the row's last reset): ``sum (r - mu) / (n + 5)``.

    The item sequence alone cannot tell a generous rater from a harsh one; this is the
    user-bias term of biased MF, computed causally from ratings the user has already given.
    """
    dev_BxT = rating_deviation(params, batch)
    ok_BxT = _rated(batch).astype(dev_BxT.dtype)
    both = jnp.stack([dev_BxT, ok_BxT], axis=-1)
    # Running sums restarted at the latest reset, as in `cells.static_interest`.
    csum = jnp.cumsum(both, axis=1)
    t_1xT = jnp.arange(both.shape[1])[None, :]
    last_reset_BxT = jax.lax.cummax(jnp.where(batch["reset"], t_1xT, 0), axis=1)
    base = jnp.take_along_axis(csum - both, last_reset_BxT[..., None], axis=1)
    total_dev, count = jnp.moveaxis(csum - base, -1, 0)
    return total_dev / (count + _RATING_SHRINK)


def predict_rating(params: Params, h_xH: Array, item_x: Array, offset_x: Array) -> Array:
    """Rating of ``item`` given the state before it and the user's offset
    (`user_rating_offset`): ``mu + b_i + w_u offset + <h W_r, p_i>``."""
    r = params["rating"]
    return (
        r["mu"]
        + r["b_item"][item_x]
        + r["w_user"] * offset_x
        + jnp.sum((h_xH @ r["w"]) * params["item_emb"][item_x], -1)
    )
