"""The evaluator: one loop that ranks the whole catalogue for held-out examples.

Every model is a `Scorer`: per batch of examples, factors ``(u_BxD, v_DxN, c_N)`` whose
product ``u . v + c`` scores items ``0..n_items`` for the shared ranker
(`metrics.rank_and_topk`: exact ranks, ties counted against the model, history excluded per
``config.eval.exclude_history``). The recurrent and attention encoders (`model_scorer`, eq. 12),
popularity (`popularity_scorer`) and the baselines (`fixed_factors`, `score_factors`) all go
through `rank_examples`, which batches, ranks and returns ranks and top-K lists in the
examples' order; `evaluate_scorer` turns them into metrics and `topk` into recommendations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax import parallel, repeat, seen
from durgru_jax.config import EvalConfig, ModelConfig, RunConfig
from durgru_jax.data import dataset as ds
from durgru_jax.metrics import (
    rank_and_topk,
    ranking_metrics,
    rating_metrics,
    user_topn_metrics,
)


class Factors(NamedTuple):
    """One batch as the ranker sees it: scores ``u_BxD . v_DxN + c_N`` of ids ``0..n_items``
    (one row per row of the padded batch), optionally a predicted rating of each row's
    target, and optionally a sparse part (all three or none; `metrics.rank_and_topk`): a
    per-row ``offset_B`` added to every score, except those of the items ``items_BxL`` (0:
    none), which score ``scores_BxL`` instead (the repeat-aware output of
    `durgru_jax.repeat`)."""

    u: jax.Array
    v: jax.Array
    c: jax.Array
    rating: jax.Array | None = None
    offset: jax.Array | None = None
    items: jax.Array | None = None
    scores: jax.Array | None = None


def scores_at(f: Factors, ids_BxK: jax.Array) -> jax.Array:
    """Scores ``[B, K]`` of the item ids ``ids_BxK`` under ``f``, its sparse part included:
    what the ranker compares (`metrics.rank_and_topk`)."""
    s = jnp.einsum("bd,dbk->bk", f.u, f.v[:, ids_BxK]) + f.c[ids_BxK]
    if f.offset is None:
        return s
    hit = (f.items[:, None, :] == ids_BxK[:, :, None]) & (f.items[:, None, :] > 0)
    sparse = jnp.max(jnp.where(hit, f.scores[:, None, :], -jnp.inf), axis=-1)
    return jnp.where(jnp.any(hit, axis=-1), sparse, s + f.offset[:, None])


def dense_scores(f: Factors) -> jax.Array:
    """Scores ``[B, N]`` of every id ``0..N-1`` under ``f`` (its sparse part included)."""
    s = f.u @ f.v + f.c
    if f.offset is None:
        return s
    s = s + f.offset[:, None]
    rows = jnp.arange(s.shape[0])[:, None]
    # padding slots (id 0) write column 0, which the callers never rank
    return s.at[rows, f.items].set(jnp.where(f.items > 0, f.scores, s[:, :1]))


@dataclasses.dataclass(frozen=True)
class Scorer:
    """A model for the evaluation loop.

    ``factors(rows, batch) -> (u_BxD, v_DxN, c_N[, rating_B, ...])`` (the fields of
    `Factors`): ``rows`` are the positions in
    the examples of the batch's real rows (the first ``len(rows)``), ``batch`` the padded
    input arrays of `dataset.iterate_eval_batches_by_length` (``len(batch["target"])`` rows).
    """

    factors: Callable[[np.ndarray, Mapping[str, np.ndarray]], tuple]
    # Batches of examples of similar input length, longest first (what an encoder costs
    # follows its inputs' length) ...
    by_length: bool = False
    # ... each cut after its longest input (exact for the recurrent cells only).
    trim_time: bool = False
    rating: bool = False  # factors' 4th output is a rating prediction: RMSE/MAE reported
    # `jax.default_matmul_precision` of the ranking (None: JAX's default, e.g. TF32 on GPUs).
    matmul_precision: str | None = None


class Ranked(NamedTuple):
    """`rank_examples`' output, in the examples' order: the target's 0-based rank ``[E]``,
    the top-K item ids ``[E, K]`` and scores (``None`` unless asked for), the predicted
    ratings ``[E]`` (``None`` unless the scorer predicts them)."""

    rank: np.ndarray
    top: np.ndarray
    top_score: np.ndarray | None
    rating: np.ndarray | None


def rank_examples(
    scorer: Scorer,
    examples: Mapping[str, np.ndarray],
    n_items: int,
    *,
    kmax: int,
    batch_size: int,
    item_chunk: int,
    exclude_history: bool,
    with_scores: bool = False,
) -> Ranked:
    """Ranks the catalogue for every example of ``examples`` (`dataset.eval_examples`'
    arrays) with ``scorer``, batch by batch.

    Results stay on the device until every batch is queued, so the host prepares the next
    batch while the device ranks this one.
    """
    outs, order = [], []
    batches = ds.iterate_eval_batches_by_length(
        examples, batch_size, trim_time=scorer.trim_time, sort=scorer.by_length
    )
    for batch, hist, idx in batches:
        f = Factors(*scorer.factors(idx, batch))
        precision = (
            jax.default_matmul_precision(scorer.matmul_precision)
            if scorer.matmul_precision
            else contextlib.nullcontext()
        )
        with precision:
            ranked = rank_and_topk(
                f.u,
                f.v,
                f.c,
                jnp.asarray(batch["target"]),
                jnp.asarray(hist),
                n_items=n_items,
                kmax=kmax,
                item_chunk=min(item_chunk, n_items + 1),
                exclude_history=exclude_history,
                with_scores=with_scores,
                offset_B=f.offset,
                items_BxL=f.items,
                scores_BxL=f.scores,
            )
        outs.append((*ranked, f.rating) if with_scores else (*ranked, None, f.rating))
        order.append(idx)
    back = np.argsort(np.concatenate(order)) if order else None

    def gathered(i, empty):  # output i of every batch, in the examples' order
        parts = [np.asarray(o[i])[: len(ix)] for o, ix in zip(outs, order, strict=True)]
        return np.concatenate(parts)[back] if parts else empty

    return Ranked(
        rank=gathered(0, np.zeros(0, np.int64)),
        top=gathered(1, np.zeros((0, kmax), np.int64)),
        top_score=gathered(2, np.zeros((0, kmax), np.float32)) if with_scores else None,
        rating=gathered(3, np.zeros(0)) if scorer.rating else None,
    )


def evaluate_scorer(
    scorer: Scorer,
    examples: Mapping[str, np.ndarray],
    eval_cfg: EvalConfig,
    n_items: int,
    prefix: str,
) -> dict[str, float]:
    """Metrics of ``scorer`` on ``examples``: `ranking_metrics`, `user_topn_metrics` with
    ``eval_cfg.user_topn`` and `rating_metrics` when the scorer predicts ratings."""
    ks = tuple(eval_cfg.ks)
    r = rank_examples(
        scorer,
        examples,
        n_items,
        kmax=max(ks),
        batch_size=eval_cfg.batch_size,
        item_chunk=eval_cfg.item_chunk,
        exclude_history=bool(eval_cfg.exclude_history),
    )
    users, targets = examples["user"], examples["target"]
    out = ranking_metrics(r.rank, r.top, users, ks, n_items, prefix)
    if eval_cfg.user_topn:
        out.update(user_topn_metrics(r.top, users, targets, ks, n_items, prefix))
    if r.rating is not None:
        ok = examples["target_rating_ok"]
        out.update(rating_metrics(r.rating[ok], examples["target_rating"][ok], prefix))
    return out


def topk(
    scorer: Scorer,
    examples: Mapping[str, np.ndarray],
    n_items: int,
    k: int,
    *,
    batch_size: int = 512,
    item_chunk: int = 65536,
    exclude_history: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items ``[E, k]`` of each example and their scores ``[E, k]``, best
    first, items of the example's history left out with ``exclude_history``. ``examples``
    are `dataset.eval_examples`' arrays; a ``target`` is optional. A score of ``-inf`` marks
    a list with fewer than ``k`` rankable items."""
    if "target" not in examples:
        examples = {**examples, "target": np.zeros(len(examples["hist_offsets"]) - 1, np.int32)}
    r = rank_examples(
        scorer,
        examples,
        n_items,
        kmax=k,
        batch_size=batch_size,
        item_chunk=item_chunk,
        exclude_history=exclude_history,
        with_scores=True,
    )
    return r.top, r.top_score


def _user_side(params, cfg: ModelConfig, batch):
    """``(u_BxD, rating_B, h_last_BxH)`` after each row's last input."""
    _, h_last = model_lib.encode(params, cfg, batch)
    u = model_lib.user_vector(params, cfg, h_last)
    if cfg.rating_head:
        offset_BxT = model_lib.user_rating_offset(params, batch)
        last = jnp.maximum(model_lib.last_step(batch["mask"]), 0)  # the step of `h_last`
        offset = jnp.take_along_axis(offset_BxT, last[:, None], axis=1)[:, 0]
        rating = model_lib.predict_rating(params, h_last, batch["target"], offset)
    else:
        rating = jnp.zeros(h_last.shape[0])
    return u, rating, h_last


@functools.partial(jax.jit, static_argnames=("cfg",))
def _eval_forward(params, cfg: ModelConfig, batch):
    u, rating, _ = _user_side(params, cfg, batch)
    return u, rating


@functools.partial(jax.jit, static_argnames=("cfg",))
def _sparse_forward(params, cfg: ModelConfig, batch):
    """`_eval_forward` and the ``(offset, items, scores)`` of `Factors` that score the window's
    items: the repeat head's ``log p(i)`` (the logits' log-normaliser first), or the seen-item
    offset's ``l_i + b`` (`durgru_jax.seen`)."""
    u, rating, h_last = _user_side(params, cfg, batch)
    v, c = model_lib.score_factors(params, cfg)
    items = batch["items"]
    l_window = jnp.einsum("bd,dbt->bt", u, v[:, items]) + c[items]
    if cfg.seen_bias:
        return u, rating, *seen.eval_scores(params, batch, l_window)
    log_z = loss_lib.log_partition(u, v, c)
    return u, rating, *repeat.eval_scores(params, batch, h_last, l_window, log_z)


def model_scorer(params, rc: RunConfig) -> Scorer:
    """The recurrent or attention model of ``params``: ``u`` its user vector after the last
    input, ``v, c`` the item factors of eq. (12) (`model.score_factors`); with
    ``model.repeat_head``, the scores are the mixture's ``log p(i)`` (`repeat.eval_scores`);
    with ``model.seen_bias`` the window's items score ``l_i + b`` (`seen.eval_scores`).

    With ``eval.exclude_history`` neither can change a ranking: the window's items are in the
    excluded history, and the other items' score is their logit plus a per-row constant. They
    matter where seen items stay rankable (``exclude_history=false``).
    """
    params = parallel.local_params(params, rc.model.n_items + 1)  # params of a mesh: gathered
    v, c = model_lib.score_factors(params, rc.model)

    sparse = rc.model.repeat_head or rc.model.seen_bias
    forward = _sparse_forward if sparse else _eval_forward

    def factors(rows, batch):
        u, rating, *sparse = forward(params, rc.model, batch)
        return u, v, c, rating, *sparse

    return Scorer(
        factors,
        by_length=True,
        trim_time=rc.model.cell in ("gru", "agru"),
        rating=rc.model.rating_head,
    )


def popularity_scorer(log_popularity: np.ndarray) -> Scorer:
    """Every user gets the items ranked by training frequency (``u = 1``, ``v`` = log
    popularity; an item never seen scores -1e30)."""
    v = jnp.asarray(log_popularity)[None, :]
    v = jnp.where(jnp.isfinite(v), v, -1e30)
    c = jnp.zeros(v.shape[1])
    return Scorer(lambda rows, batch: (jnp.ones((len(batch["target"]), 1)), v, c))


def fixed_factors(v_DxN: np.ndarray, c_N: np.ndarray, make_u) -> Scorer:
    """A scorer whose item side ``v, c`` is the same for every batch; ``make_u(rows, batch)``
    gives the user side ``[len(batch["target"]), D]``. Ranked with full float32 products."""
    v, c = jnp.asarray(v_DxN, jnp.float32), jnp.asarray(c_N, jnp.float32)

    def factors(rows, batch):
        return jnp.asarray(make_u(rows, batch), jnp.float32), v, c

    return Scorer(factors, matmul_precision="float32")


def score_factors(make_scores) -> Scorer:
    """A scorer given as explicit scores ``make_scores(rows, batch) -> S [B, n_items + 1]``:
    the ranker's ``u . v + c`` with ``u = I_B``, ``v = S``, ``c = 0`` reproduces ``S``
    exactly, as the products are computed in full float32 (TF32 on GPUs would round them)."""

    def factors(rows, batch):
        s = jnp.asarray(make_scores(rows, batch), jnp.float32)
        b = len(batch["target"])
        return jnp.eye(b, dtype=jnp.float32), s, jnp.zeros(s.shape[1], jnp.float32)

    return Scorer(factors, matmul_precision="float32")


def evaluate(
    params, rc: RunConfig, examples: Mapping[str, np.ndarray], n_items: int, prefix: str
) -> dict[str, float]:
    """Full-ranking metrics (and RMSE/MAE with a rating head) of ``params`` on ``examples``."""
    return evaluate_scorer(model_scorer(params, rc), examples, rc.eval, n_items, prefix)


def evaluate_popularity(
    log_popularity: np.ndarray, rc: RunConfig, examples, n_items: int, prefix: str
) -> dict[str, float]:
    """The most-popular ranking (training frequency), through the same evaluation code."""
    return evaluate_scorer(popularity_scorer(log_popularity), examples, rc.eval, n_items, prefix)
