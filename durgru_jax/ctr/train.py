"""The Criteo CTR task end to end: prepare (cached), train, select on validation, test.

`run(config, workdir)` (``config.task == "ctr"``, see ``configs/criteo.py``):

1. prepares the data with `durgru_jax.ctr.criteo.prepare` (streamed, cached under
   ``data.cache_dir``; temporal 80/10/10 split by row position; vocabularies on the training
   rows only);
2. trains the recurrent CTR model (`durgru_jax.ctr.model`) with BCE and optax, batches drawn
   from the memory-mapped token matrix, evaluating validation AUC every epoch (or every
   ``train.eval_every_steps``) and stopping early after ``train.patience`` evaluations
   without improvement; the test set is only used once, on the best validation checkpoint;
3. trains logistic regression on hashed features the same way, on the same splits;
4. writes ``config.json``, ``metrics.jsonl`` (progress) and ``results.json``:
   ``{"metrics": {"valid/auc", "valid/logloss", "valid/rmse", "valid/mae", "test/...": ...},
   "train": {"seconds", "events", "events_per_second", ...}, "baselines":
   {"logistic_regression": {same keys}, "click_rate": {same keys}}, "data": {...}}``.
   ``params_best.npz`` holds the selected model's parameters.

RMSE and MAE are of the predicted probability against the 0/1 label (see
`durgru_jax.ctr.metrics`). There are no durations in Criteo, so the duration factor of the
paper does not apply. A CTR run does not resume: a restarted run retrains (the prepared data
comes from the cache).
"""

from __future__ import annotations

import json
import os
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from durgru_jax import files, run_lib
from durgru_jax.ctr import criteo
from durgru_jax.ctr import model as ctr_model
from durgru_jax.ctr.metrics import ctr_metrics
from durgru_jax.run_lib import Jsonl, write_results
from durgru_jax.train import make_optimizer


def prepare_from_config(config) -> criteo.Prepared:
    """`criteo.prepare` with ``config.data``; a missing file raises the dataset registry's
    `DatasetNotFoundError`, which says where to get it and where to put it."""
    d = config.data
    if not os.path.exists(d.path):
        from durgru_jax.data import download

        download.ensure_file("criteo", path=d.path, allow_download=False)
    return criteo.prepare(
        d.path,
        d.cache_dir,
        min_count=int(d.min_count),
        valid_ratio=float(d.valid_ratio),
        test_ratio=float(d.test_ratio),
        int_transform=d.int_transform,
        on_bad_rows=d.on_bad_rows,
        block_bytes=int(d.block_mib * (1 << 20)),
        workers=int(d.workers),
        log=logging.info,
    )


def _batch(prepared: criteo.Prepared, rows: np.ndarray):
    rows = np.sort(rows)
    return np.asarray(prepared.tokens[rows]), np.asarray(prepared.labels[rows], np.float32)


def predict(prob_fn, params, prepared: criteo.Prepared, rows: slice, batch_size: int):
    """Click probabilities of ``rows``, in fixed-size (padded) batches."""
    out = []
    for lo in range(rows.start, rows.stop, batch_size):
        hi = min(lo + batch_size, rows.stop)
        tok = np.asarray(prepared.tokens[lo:hi])
        if hi - lo < batch_size:
            tok = np.concatenate([tok, np.zeros((batch_size - (hi - lo), tok.shape[1]), tok.dtype)])
        out.append(np.asarray(prob_fn(params, tok))[: hi - lo])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _rows(prepared: criteo.Prepared, split: str, cap: int = 0) -> slice:
    s = prepared.split(split)
    return slice(s.start, min(s.stop, s.start + cap)) if cap else s


SELECT_METRIC = "valid/auc"


def _make_step(logits_fn, tx: optax.GradientTransformation, seed: int, l2: float):
    """The jitted step ``(params, opt_state, step, tokens, labels) -> (params, opt_state,
    loss)``: BCE (+ ``l2`` times the squared weights), its randomness from
    ``fold_in(key(seed), step)``."""
    base_key = jax.random.key(seed)

    def loss_fn(p, tokens, labels, key):
        loss = ctr_model.bce(logits_fn(p, tokens, key), labels)
        if l2:
            loss = loss + l2 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p) if x.ndim)
        return loss

    @jax.jit
    def step_fn(p, opt_state, step, tokens, labels):
        key = jax.random.fold_in(base_key, step)
        loss, grads = jax.value_and_grad(loss_fn)(p, tokens, labels, key)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    return step_fn


def fit(
    name: str,
    params,
    logits_fn,
    tx: optax.GradientTransformation,
    prepared: criteo.Prepared,
    *,
    seed: int,
    batch_size: int,
    epochs: int,
    max_steps: int,
    patience: int,
    eval_every_steps: int,
    eval_batch_size: int,
    valid_cap: int,
    log_every: int,
    time_budget_s: float,
    metrics_log: Jsonl,
    l2: float = 0.0,
) -> dict:
    """Minibatch training with early stopping on validation AUC (`run_lib.select_and_stop`).

    ``logits_fn(params, tokens, key_or_None) -> logits``. Returns ``{"params": best,
    "train": stats}``; the best parameters are those of the best validation AUC (the last
    ones if validation never ran).
    """
    prob_fn = jax.jit(lambda p, tok: jax.nn.sigmoid(logits_fn(p, tok, None)))
    train_rows = prepared.split("train")
    n_train = train_rows.stop - train_rows.start
    steps_per_epoch = max(n_train // batch_size, 1)
    total = steps_per_epoch * epochs if not max_steps else min(max_steps, steps_per_epoch * epochs)
    opt_state = tx.init(params)
    # Compile before the clock starts, so events/s measures training, not XLA.
    first = np.arange(train_rows.start, min(train_rows.stop, train_rows.start + batch_size))
    example = _batch(prepared, np.resize(first, batch_size))
    t_compile = time.time()
    step_fn = _make_step(logits_fn, tx, seed, l2).lower(params, opt_state, jnp.int32(0), *example)
    step_fn = step_fn.compile()
    compile_seconds = time.time() - t_compile
    meta = run_lib.new_meta()
    best = {"params": jax.device_get(params), "step": None, "epoch": None}
    step, t_start, stop, who = 0, time.time(), False, f"{name}: "
    valid = _rows(prepared, "valid", valid_cap)

    def evaluate(epoch):
        nonlocal stop
        probs = predict(prob_fn, params, prepared, valid, eval_batch_size)
        m = ctr_metrics(np.asarray(prepared.labels[valid]), probs, "valid")

        def keep():
            best.update(params=jax.device_get(params), step=step, epoch=epoch)

        record = {"model": name, "step": step, "epoch": epoch}
        if run_lib.select_and_stop(meta, m, select_metric=SELECT_METRIC, patience=patience,
                                   epoch=epoch, on_best=keep, log=metrics_log, record=record,
                                   who=who):  # fmt: skip
            end("patience")

    def end(reason):  # the first reason to stop is the one recorded
        nonlocal stop
        stop = True
        meta.setdefault("stop_reason", run_lib.stop_reason(reason, meta, floor_reached=True))

    def check(loss, epoch):
        run_lib.check_finite(np.isfinite(loss), step=step, epoch=epoch, loss=loss, who=who,
                             hint="Try a lower learning rate.")  # fmt: skip

    for epoch in range(epochs):
        meta["epoch"] = epoch
        perm = np.random.default_rng([seed, epoch]).permutation(n_train) + train_rows.start
        t0 = time.time()
        last_t, last_events = t0, meta["train_events"]
        for i in range(steps_per_epoch):
            if max_steps and step >= max_steps:
                end("max_steps")
                break
            rows = perm[i * batch_size : (i + 1) * batch_size]
            if len(rows) < batch_size:  # fewer training rows than one batch
                rows = np.resize(rows, batch_size)
            tokens, labels = _batch(prepared, rows)
            params, opt_state, loss = step_fn(params, opt_state, jnp.int32(step), tokens, labels)
            step += 1
            meta["train_events"] += batch_size
            if step % log_every == 0 or step == total:
                loss = float(loss)
                check(loss, epoch)
                now = time.time()
                rate = (meta["train_events"] - last_events) / max(now - last_t, 1e-9)
                logging.info("%s: step %d/%d epoch %d loss %.4f %s events/s ETA %s", name, step,
                             total, epoch, loss, f"{rate:,.0f}",
                             run_lib.eta((now - t_start) / step * (total - step)))  # fmt: skip
                metrics_log.write(
                    {"model": name, "step": step, "epoch": epoch, "train/loss": loss,
                     "events_per_second": rate}
                )  # fmt: skip
                last_t, last_events = now, meta["train_events"]
            if eval_every_steps and step % eval_every_steps == 0:
                jax.block_until_ready(params)
                meta["train_seconds"] += time.time() - t0
                evaluate(epoch)
                t0 = time.time()
                if stop:
                    break
            if run_lib.out_of_time(t_start, time_budget_s, who):
                end("time_budget")
                break
        jax.block_until_ready(params)
        meta["train_seconds"] += time.time() - t0
        if step > 0:
            check(float(loss), epoch)
        if not (eval_every_steps and step % eval_every_steps == 0) and step > 0:
            evaluate(epoch)
        if stop:
            break
    meta.setdefault("stop_reason", "epochs")
    summary = run_lib.train_summary(
        meta, steps=step, best_step=best["step"], selected_on=SELECT_METRIC
    )
    return {
        "params": best["params"] if best["step"] is not None else jax.device_get(params),
        "prob_fn": prob_fn,
        # best_epoch: None (not -1) when no validation improved on the start.
        "train": summary | {"best_epoch": best["epoch"], "compile_seconds": compile_seconds},
    }


def _final_metrics(prob_fn, params, prepared, eval_batch_size) -> dict:
    out = {}
    for split in ("valid", "test"):
        rows = prepared.split(split)
        probs = predict(prob_fn, params, prepared, rows, eval_batch_size)
        out.update(ctr_metrics(np.asarray(prepared.labels[rows]), probs, split))
    return out


@run_lib.locks_workdir
def run(config, workdir: str) -> dict:
    """Prepare, train, evaluate (holding the workdir's lock); see the module docstring. (The
    ``bench`` variant, the preprocessing benchmark `durgru_jax.ctr.bench.run`, is dispatched
    by `durgru_jax.runner`.)"""
    os.makedirs(workdir, exist_ok=True)
    run_lib.write_config(workdir, config)
    metrics_log = Jsonl(os.path.join(workdir, "metrics.jsonl"))
    t0 = time.time()
    prepared = prepare_from_config(config)
    prep_seconds = time.time() - t0
    meta = prepared.meta
    logging.info(
        "criteo data: %d rows, splits %s, %d bad rows skipped, vocab %d tokens (%s)",
        meta["rows"], meta["splits"], meta["n_bad_rows_skipped"], sum(meta["vocab_sizes"]),
        "cache" if prepared.from_cache else "prepared",
    )  # fmt: skip
    click_rate = float(meta["click_rate"]["train"])
    m, t = config.model, config.train
    mcfg = ctr_model.CtrModelConfig(
        vocab_sizes=tuple(meta["vocab_sizes"]),
        cell=m.cell,
        embed_dim=int(m.embed_dim),
        hidden_dim=int(m.hidden_dim),
        dropout=float(m.dropout),
        relevance=bool(m.relevance),
        field_context=bool(m.field_context),
        scan_unroll=int(m.scan_unroll),
    )
    common = dict(
        seed=int(config.seed),
        max_steps=int(t.max_steps),
        patience=int(t.patience),
        eval_every_steps=int(t.eval_every_steps),
        eval_batch_size=int(config.eval.batch_size),
        valid_cap=int(config.eval.max_valid_rows),
        log_every=int(t.log_every),
        time_budget_s=float(t.time_budget_s),
        metrics_log=metrics_log,
    )
    n_train = meta["splits"]["train"][1]
    steps = max(n_train // int(t.batch_size), 1) * int(t.epochs)
    tx = make_optimizer(config.optim, steps)
    fitted = fit(
        "model",
        ctr_model.init_params(mcfg, int(config.seed), click_rate),
        lambda p, tok, key: ctr_model.logits(p, mcfg, tok, key),
        tx,
        prepared,
        batch_size=int(t.batch_size),
        epochs=int(t.epochs),
        **common,
    )
    metrics = _final_metrics(fitted["prob_fn"], fitted["params"], prepared, config.eval.batch_size)
    arrays = {jax.tree_util.keystr(k): np.asarray(v)
              for k, v in jax.tree_util.tree_leaves_with_path(fitted["params"])}  # fmt: skip
    files.write_atomic(
        os.path.join(workdir, "params_best.npz"), lambda f: np.savez(f, **arrays), binary=True
    )
    logging.info("model test: %s", json.dumps({k: round(v, 4) for k, v in metrics.items()}))

    baselines = {}
    b = config.baseline
    if b.enabled:
        offsets = mcfg.offsets
        hb = int(b.hash_bits)
        n_w = (1 << hb) if hb else int(sum(mcfg.vocab_sizes))
        lr_steps = max(n_train // int(b.batch_size), 1) * int(b.epochs)
        lr_opt = types.SimpleNamespace(
            name=b.optimizer, learning_rate=float(b.learning_rate), schedule="constant",
            warmup_steps=0, weight_decay=0.0, clip_norm=0.0,
        )  # fmt: skip
        lr_fit = fit(
            "logistic_regression",
            ctr_model.init_lr(n_w, click_rate),
            lambda p, tok, key: ctr_model.lr_logits(
                p, ctr_model.lr_feature_index(tok, offsets, hb)
            ),
            make_optimizer(lr_opt, lr_steps),
            prepared,
            batch_size=int(b.batch_size),
            epochs=int(b.epochs),
            l2=float(b.l2),
            **common,
        )
        lr_metrics = _final_metrics(
            lr_fit["prob_fn"], lr_fit["params"], prepared, config.eval.batch_size
        )
        baselines["logistic_regression"] = lr_metrics | {
            "train": lr_fit["train"],
            "hash_bits": hb,
            "n_weights": n_w,
        }
        logging.info("LR test: %s", json.dumps({k: round(v, 4) for k, v in lr_metrics.items()}))
    const = {}
    for split in ("valid", "test"):
        y = np.asarray(prepared.labels[prepared.split(split)])
        const.update(ctr_metrics(y, np.full(len(y), click_rate), split))
    baselines["click_rate"] = const

    results = {
        "metrics": metrics,
        "train": fitted["train"] | {"prepare_seconds": prep_seconds},
        "baselines": baselines,
        "data": {k: v for k, v in meta.items() if k != "seconds"}
        | {"from_cache": prepared.from_cache, "cache_dir": prepared.dir},
        "model": {k: v for k, v in vars(mcfg).items() if k != "vocab_sizes"}
        | {"duration_factor": "not applicable: Criteo has no durations"},
    }
    write_results(workdir, results)
    metrics_log.write({"model": "model", "step": fitted["train"]["steps"], "final": True} | metrics)
    return results
