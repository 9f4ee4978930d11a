"""The evaluator: one loop that ranks the whole catalogue for held-out examples.

Every model is a scorer ``u_BxD . v_DxN + c_N`` for the shared ranker
(`metrics.rank_and_topk`, ties counted against the model, history excluded per
``config.eval.exclude_history``): the recurrent and attention encoders (`evaluate`),
popularity (`evaluate_popularity`) and the baselines (`evaluate_scorer`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import model as model_lib
from durgru_jax import parallel
from durgru_jax.config import ModelConfig, RunConfig
from durgru_jax.data import dataset as ds
from durgru_jax.metrics import (
    rank_and_topk,
    ranking_metrics,
    rating_metrics,
    user_topn_metrics,
)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _eval_forward(params, cfg: ModelConfig, batch):
    _, h_last = model_lib.encode(params, cfg, batch)
    u = model_lib.user_vector(params, cfg, h_last)
    if cfg.rating_head:
        offset_BxT = model_lib.user_rating_offset(params, batch)
        last = jnp.maximum(model_lib.last_step(batch["mask"]), 0)  # the step of `h_last`
        offset = jnp.take_along_axis(offset_BxT, last[:, None], axis=1)[:, 0]
        rating = model_lib.predict_rating(params, h_last, batch["target"], offset)
    else:
        rating = jnp.zeros(h_last.shape[0])
    return u, rating


def evaluate(
    params, rc: RunConfig, examples: Mapping[str, np.ndarray], n_items: int, prefix: str
) -> dict[str, float]:
    """Full-ranking metrics (and RMSE/MAE with a rating head) of ``params`` on ``examples``."""
    params = parallel.local_params(params, rc.model.n_items + 1)  # params of a mesh: gathered
    v, c = model_lib.score_factors(params, rc.model)
    # Users by input length, each batch cut after its longest input (exact for the recurrent
    # cells); results stay on device until all batches are queued, so the host prepares the
    # next batch while the device runs this one.
    outs, order = [], []
    trim = rc.model.cell in ("gru", "agru")
    for batch, hist, idx in ds.iterate_eval_batches_by_length(
        examples, rc.eval.batch_size, trim_time=trim
    ):
        u, rating = _eval_forward(params, rc.model, batch)
        outs.append((*_rank(u, v, c, batch["target"], hist, rc, n_items), rating))
        order.append(idx)
    back = np.argsort(np.concatenate(order)) if order else None

    def gathered(i):  # output i of every batch, in the examples' order
        parts = [np.asarray(o[i])[: len(ix)] for o, ix in zip(outs, order, strict=True)]
        return [np.concatenate(parts)[back]] if parts else []

    ranks, tops, preds = gathered(0), gathered(1), gathered(2)
    return _collect(examples, ranks, tops, preds, rc, n_items, prefix, rc.model.rating_head)


def _rank(u, v, c, target, hist, rc: RunConfig, n_items: int):
    return rank_and_topk(
        u,
        v,
        c,
        jnp.asarray(target),
        jnp.asarray(hist),
        n_items=n_items,
        kmax=max(rc.eval.ks),
        item_chunk=min(rc.eval.item_chunk, n_items + 1),
        exclude_history=rc.eval.exclude_history,
    )


def _collect(examples, ranks, tops, preds, rc, n_items, prefix, with_rating):
    n = len(examples["target"])
    rank = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    top = np.concatenate(tops) if tops else np.zeros((0, max(rc.eval.ks)), np.int64)
    out = ranking_metrics(rank, top, examples["user"][:n], rc.eval.ks, n_items, prefix)
    if rc.eval.user_topn:
        out.update(
            user_topn_metrics(
                top, examples["user"][:n], examples["target"][:n], rc.eval.ks, n_items, prefix
            )
        )
    if with_rating:
        ok = examples["target_rating_ok"]
        pred = np.concatenate(preds) if preds else np.zeros(0)
        out.update(rating_metrics(pred[ok], examples["target_rating"][ok], prefix))
    return out


def evaluate_popularity(
    log_popularity: np.ndarray, rc: RunConfig, examples, n_items: int, prefix: str
) -> dict[str, float]:
    """The most-popular ranking (training frequency), through the same evaluation code."""
    v = jnp.asarray(log_popularity)[None, :]
    v = jnp.where(jnp.isfinite(v), v, -1e30)
    c = jnp.zeros(v.shape[1])
    ranks, tops = [], []
    for batch, hist, n in ds.iterate_eval_batches(examples, rc.eval.batch_size):
        u = jnp.ones((len(batch["target"]), 1))
        rank, top = _rank(u, v, c, batch["target"], hist, rc, n_items)
        ranks.append(np.asarray(rank)[:n])
        tops.append(np.asarray(top)[:n])
    return _collect(examples, ranks, tops, [], rc, n_items, prefix, False)
