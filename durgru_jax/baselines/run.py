"""Fits one baseline on the training events and evaluates it like the main model.

`run(config, workdir)` (``launch.py`` calls it when ``config.task == "baseline"``):

1. loads the data with `load_prepared(config.data, config.seed)`, the same split and the same
   evaluation examples (`eval_examples`, ``config.eval.unknown_targets``) as the main model,
   and stops as its run does when too little remains (`lifecycle.check_data`);
2. fits ``config.baseline.name`` on the *training* events only (``p.split == TRAIN``);
3. evaluates it with the main model's evaluation loop (`durgru_jax.evaluate.evaluate_scorer`:
   the whole catalogue ranked by `durgru_jax.metrics.rank_and_topk`, ties counted against the
   model, history excluded per ``config.eval.exclude_history``; `ranking_metrics`), plus
   `rating_metrics` (RMSE/MAE) when the data has ratings (``mf``, ``itemcf``);
4. writes ``workdir/config.json`` and ``workdir/results.json``: ``{"metrics": {"valid/...",
   "test/..."}, "train": {"seconds", "events", "events_per_second", ...}, "eval_seconds",
   "data", "baseline", "baseline_config"}``.

Each baseline is a `durgru_jax.evaluate.Scorer` ``u_BxD . v_DxN + c_N`` (`fixed_factors`,
`score_factors`): ``pop``: ``u = 1``, ``v`` = training counts; ``itemcf``: the batch's scores
``S = H W`` (sparse history times the sparse pruned similarity, summing ``w_ij`` over the
history) as ``u = I_B, v = S`` (exact, memory ``B x n_items`` whatever the catalogue); ``mf``:
``u = p_u``, ``v = q``, ``c = b_i``. Any choice (ItemCF's ``select_k``, MF's best epoch) is
made on validation; test metrics are computed once, at the end.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping

import ml_collections
import numpy as np
from absl import logging

from durgru_jax.baselines import itemcf as itemcf_lib
from durgru_jax.baselines import mf as mf_lib
from durgru_jax.config import EvalConfig
from durgru_jax.data import dataset as ds
from durgru_jax.data.dataset import TRAIN, Prepared
from durgru_jax.data.sources import load_prepared, prep_config
from durgru_jax.evaluate import evaluate_scorer, fixed_factors, score_factors
from durgru_jax.lifecycle import check_data
from durgru_jax.metrics import rating_metrics
from durgru_jax.run_lib import higher_is_better, locks_workdir, write_config, write_results

NAMES = ("pop", "itemcf", "mf")


def _plain(x):
    return x.to_dict() if hasattr(x, "to_dict") else dict(x or {})


def baseline_config(config) -> tuple[str, itemcf_lib.ItemCFConfig | mf_lib.MFConfig | None]:
    """The baseline's name and its typed settings (``config.baseline.<name>``)."""
    group = config.get("baseline")
    if group is None or "name" not in group:
        raise ValueError("config.baseline.name is missing: use one of " + ", ".join(NAMES))
    name = group["name"]
    if name not in NAMES:
        raise ValueError(f"config.baseline.name={name!r} is not one of {list(NAMES)}")
    if name == "pop":
        return name, None
    cls = itemcf_lib.ItemCFConfig if name == "itemcf" else mf_lib.MFConfig
    kwargs = _plain(group.get(name))
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"unknown key(s) in config.baseline.{name}: {', '.join(unknown)}")
    if "select_k" in kwargs:
        kwargs["select_k"] = tuple(int(k) for k in kwargs["select_k"])
    return name, cls(**kwargs)


def history_ratings(
    p: Prepared, split: str, examples: Mapping[str, np.ndarray], drop_unknown: bool
) -> np.ndarray:
    """The rating of each event of the examples' history CSR (``hist_items``), from the
    held-out selection that built them (`dataset.heldout_positions`), checked against it."""
    h = ds.heldout_positions(p, split, drop_unknown)
    if len(h.target_pos) != len(examples["target"]) or not np.array_equal(
        p.item[h.hist_pos], examples["hist_items"]
    ):
        raise ValueError(
            f"history_ratings({split!r}, drop_unknown={drop_unknown}): the examples' histories "
            "are not this data's held-out selection"
        )
    return p.rating[h.hist_pos].astype(np.float64)


def _rating_ok(examples) -> np.ndarray:
    return np.asarray(examples["target_rating_ok"], bool)


def _fit_and_eval_pop(p, ex, eval_cfg: EvalConfig):
    t0 = time.time()
    train = p.split == TRAIN
    counts = np.bincount(p.item[train], minlength=p.n_items + 1).astype(np.float32)
    seconds = time.time() - t0
    metrics = {}
    for split, e in ex.items():
        ones = fixed_factors(
            counts[None, :],
            np.zeros(p.n_items + 1, np.float32),
            lambda rows, batch: np.ones((len(batch["target"]), 1), np.float32),
        )
        metrics.update(evaluate_scorer(ones, e, eval_cfg, p.n_items, split))
    return metrics, {"seconds": seconds}


def _fit_and_eval_itemcf(p, ex, eval_cfg: EvalConfig, cfg: itemcf_lib.ItemCFConfig, drop_unknown):
    t0 = time.time()
    train = p.split == TRAIN
    model = itemcf_lib.fit(p.user[train], p.item[train], p.n_users, p.n_items, cfg)
    seconds = time.time() - t0
    logging.info("itemcf: neighbours of %d items in %.1f s", p.n_items, seconds)
    m = cfg.time_window_m

    def rank(w, split):
        e = ex[split]

        def make_scores(rows, batch):
            h = itemcf_lib.history_matrix(
                e["hist_offsets"], e["hist_items"], rows, p.n_items, m, batch=len(batch["target"])
            )
            return itemcf_lib.scores(w, h)

        return evaluate_scorer(score_factors(make_scores), e, eval_cfg, p.n_items, split)

    extra = {"n_neighbors": cfg.n_neighbors}
    k = cfg.n_neighbors
    if cfg.select_k:
        sel, higher = cfg.select_metric, higher_is_better(cfg.select_metric)
        scores = {}
        for cand in cfg.select_k:
            scores[int(cand)] = rank(model.matrix(int(cand)), "valid").get(sel, float("nan"))
            logging.info("itemcf: k=%d %s=%.4f", cand, sel, scores[int(cand)])
        key = (lambda kk: scores[kk]) if higher else (lambda kk: -scores[kk])
        k = max(scores, key=key)
        extra.update(n_neighbors=k, selection={"metric": sel, "scores": scores})
    w = model.matrix(k)
    metrics = {}
    for split, e in ex.items():
        metrics.update(rank(w, split))
        ok = _rating_ok(e)
        if p.has_ratings and ok.any():
            hr = history_ratings(p, split, e, drop_unknown)
            rows = np.flatnonzero(ok)
            pred, from_nbrs = itemcf_lib.predict_ratings(
                w,
                e["hist_offsets"],
                e["hist_items"],
                hr,
                rows,
                e["target"][rows],
                m,
                float(p.rating[train & p.rating_ok].mean()),
            )
            metrics.update(rating_metrics(pred, e["target_rating"][rows], split))
            metrics[f"{split}/rating_from_neighbours"] = float(from_nbrs.mean())
    return metrics, {"seconds": seconds, **extra}


def _fit_and_eval_mf(p, ex, eval_cfg: EvalConfig, cfg: mf_lib.MFConfig, seed):
    if not p.has_ratings:
        raise ValueError("config.baseline.name='mf' needs data with ratings; this data has none")
    train = (p.split == TRAIN) & p.rating_ok & (p.item > 0)
    v_ex = ex["valid"]
    ok = _rating_ok(v_ex)
    valid = (v_ex["user"][ok], v_ex["target"][ok], v_ex["target_rating"][ok])
    t0 = time.time()
    model = mf_lib.fit(
        p.user[train], p.item[train], p.rating[train], p.n_users, p.n_items, cfg, seed, valid
    )
    seconds = time.time() - t0
    logging.info("mf: %d epochs in %.1f s, best epoch %d", cfg.epochs, seconds, model.best_epoch)
    metrics = {}
    for split, e in ex.items():

        def make_u(rows, batch, e=e):
            u = np.zeros((len(batch["target"]), cfg.factors), np.float32)
            u[: len(rows)] = model.p[e["user"][rows]]
            return u

        factors = fixed_factors(model.q.T, model.bi, make_u)
        metrics.update(evaluate_scorer(factors, e, eval_cfg, p.n_items, split))
        ok = _rating_ok(e)
        if ok.any():
            pred = model.predict(e["user"][ok], e["target"][ok])
            metrics.update(rating_metrics(pred, e["target_rating"][ok], split))
    info = {
        "seconds": seconds,
        "epochs": cfg.epochs,
        "best_epoch": model.best_epoch,
        "history": model.history,
        "events": int(train.sum()),
    }
    return metrics, info


@locks_workdir
def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Fits and evaluates ``config.baseline``; writes and returns ``results.json``'s dict
    (holding the workdir's lock)."""
    name, cfg = baseline_config(config)
    os.makedirs(workdir, exist_ok=True)
    write_config(workdir, config)
    eval_kw = _plain(config.eval)
    eval_kw["ks"] = tuple(int(k) for k in eval_kw.get("ks", (5, 10, 20)))
    eval_cfg = EvalConfig(**eval_kw)  # checked like the main model's
    drop = eval_cfg.unknown_targets == "drop"
    seed = int(config.get("seed", 0))
    p = load_prepared(config.data, seed)
    ex = {s: ds.eval_examples(p, s, drop_unknown=drop) for s in ("valid", "test")}
    check_data(p, prep_config(config.data, seed), ex["valid"], ex["test"])  # as the model's run
    n_train = int((p.split == TRAIN).sum())
    logging.info(
        "baseline %s: %d users, %d items, %d training events", name, p.n_users, p.n_items, n_train
    )
    t0 = time.time()
    if name == "pop":
        metrics, train_info = _fit_and_eval_pop(p, ex, eval_cfg)
    elif name == "itemcf":
        metrics, train_info = _fit_and_eval_itemcf(p, ex, eval_cfg, cfg, drop)
    else:
        metrics, train_info = _fit_and_eval_mf(p, ex, eval_cfg, cfg, seed)
    eval_seconds = time.time() - t0 - train_info["seconds"]
    events = train_info.pop("events", n_train)
    seconds = train_info.pop("seconds")
    train_info = {
        "seconds": seconds,
        "events": events,
        "events_per_second": events / max(seconds, 1e-9),
        **train_info,
    }
    results = {
        "metrics": metrics,
        "train": train_info,
        "eval_seconds": eval_seconds,
        "data": p.info,
        "baseline": name,
        "baseline_config": dataclasses.asdict(cfg) if cfg is not None else {},
    }
    write_results(workdir, results)
    logging.info(
        "baseline %s: test hr@10 %.4f ndcg@10 %.4f (fit %.1f s, eval %.1f s)",
        name,
        metrics.get("test/hr@10", float("nan")),
        metrics.get("test/ndcg@10", float("nan")),
        train_info["seconds"],
        eval_seconds,
    )
    return results
