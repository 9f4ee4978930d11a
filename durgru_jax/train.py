"""Training, model selection and evaluation of one run.

`train_and_evaluate(config, workdir)`:

* writes ``config.json``, appends to ``metrics.jsonl``, checkpoints to ``ckpt/latest`` (for
  resuming) and ``ckpt/best`` (best validation metric), and finally ``results.json``;
* resumes automatically from ``ckpt/latest``. Batches depend only on ``(seed, epoch)`` and the
  step's randomness on ``fold_in(seed, step)``, so a resumed run replays the uninterrupted
  one exactly;
* stops early on the validation metric and reports test metrics of the best checkpoint (the
  test set is never used for any decision);
* stops with `NonFiniteLossError` on a NaN/Inf loss, before any checkpoint of the broken state
  is written, so ``ckpt/latest`` keeps the last good state.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax import parallel
from durgru_jax.config import RunConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data.sources import load_prepared
from durgru_jax.evaluate import evaluate, evaluate_popularity
from durgru_jax.run_lib import (
    Jsonl,
    NonFiniteLossError,
    eta,
    higher_is_better,
    jsonable,
    non_finite_message,
    write_json,
)


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
    """optax optimiser with warm-up, schedule and global-norm clipping from ``config.optim``."""
    lr, warm = cfg.learning_rate, cfg.warmup_steps
    decay_steps = max(total_steps - warm, 1)
    if cfg.schedule == "constant":
        sched = optax.constant_schedule(lr)
    elif cfg.schedule == "cosine":
        sched = optax.cosine_decay_schedule(lr, decay_steps)
    else:
        sched = optax.linear_schedule(lr, 0.0, decay_steps)
    if warm:
        sched = optax.join_schedules([optax.linear_schedule(0.0, lr, warm), sched], [warm])
    opt = {
        "adam": lambda: optax.adam(sched),
        "adamw": lambda: optax.adamw(sched, weight_decay=cfg.weight_decay),
        "sgd": lambda: optax.sgd(sched),
        "adagrad": lambda: optax.adagrad(sched),
    }[cfg.name]()
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt


def make_train_step(
    rc: RunConfig,
    tx: optax.GradientTransformation,
    log_popularity: jax.Array,
    *,
    mesh: jax.sharding.Mesh | None = None,
    state_sharding=None,
):
    """The jitted train step ``(state, batch) -> (state, metrics)``, state donated.

    With ``mesh`` (`parallel.make_mesh`), the batch is split over its ``"data"`` axis and the
    state keeps ``state_sharding`` (`parallel.state_shardings`); the metrics are replicated.
    """
    base_key = jax.random.key(rc.seed)
    jit_kw = {}
    if mesh is not None:
        log_popularity = jax.device_put(log_popularity, parallel.replicated(mesh))
        jit_kw = parallel.step_jit_shardings(mesh, state_sharding)

    def step_fn(state, batch):
        key = jax.random.fold_in(base_key, state["step"])

        def loss_fn(params):
            # The bf16 cast sits inside the differentiated function: gradients come out f32.
            p, b = parallel.cast_for_compute(params, batch, rc.model.compute_dtype)
            return loss_lib.losses(p, rc.model, rc.loss, b, key, log_popularity)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new_state = {
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "finite": state["finite"] & jnp.isfinite(loss),
        }
        return new_state, parts

    return jax.jit(step_fn, donate_argnums=0, **jit_kw)


def train_and_evaluate(config, workdir: str, *, stop_after_epochs: int | None = None) -> dict:
    """Trains, selects on validation, evaluates on test; returns the results dict.

    ``stop_after_epochs`` ends this call after that many epochs *of this call* without
    finishing (used to test kill-and-resume); a later call resumes from ``ckpt/latest``.
    """
    os.makedirs(workdir, exist_ok=True)
    cfg_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    write_json(os.path.join(workdir, "config.json"), cfg_dict)
    metrics_log = Jsonl(os.path.join(workdir, "metrics.jsonl"))

    prepared = load_prepared(config.data, seed=int(config.seed))
    p = prepared
    logging.info("data: %s", json.dumps(jsonable(p.info)))
    if not p.has_durations and config.model.duration_mode != "none":
        logging.warning(
            "the data has no durations (source: %s): every duration factor is neutral "
            "(%g), so duration_mode=%s cannot use durations here",
            p.info.get("duration_source"),
            0.5 * float(config.model.duration_scale),
            config.model.duration_mode,
        )
    rating_head = p.has_ratings and float(config.loss.rating_weight) > 0
    rc = from_config(
        config,
        n_items=p.n_items,
        n_input_contexts=p.n_input_contexts if config.model.cell == "agru" else 1,
        n_transfer_contexts=p.n_transfer_contexts
        if config.model.cell == "agru" or config.model.gap_input
        else 1,
        rating_head=rating_head,
        max_len=int(config.data.max_len),
    )
    windows = ds.train_windows(p, pack=bool(config.data.get("pack", True)))
    drop = rc.eval.unknown_targets == "drop"
    valid_ex = ds.eval_examples(p, "valid", drop_unknown=drop)
    test_ex = ds.eval_examples(p, "test", drop_unknown=drop)
    steps_per_epoch = ds.n_train_batches(windows, rc.train.batch_size)
    total_steps = steps_per_epoch * rc.train.epochs
    if rc.train.max_steps:
        total_steps = min(total_steps, rc.train.max_steps)
    tx = make_optimizer(rc.optim, total_steps)
    log_pop = jnp.asarray(p.log_popularity)
    mesh = parallel.make_mesh(rc.train.data_parallel, rc.train.model_parallel)

    params = model_lib.init_params(
        rc.model,
        rc.seed,
        p.log_popularity if rc.model.init_bias_from_popularity else None,
        ds.train_rating_mean(p),
    )
    if mesh is not None:
        params = parallel.pad_item_tables(params, parallel.padded_rows(p.n_items + 1, mesh))
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "finite": jnp.asarray(True),
    }
    state_sharding, place_batch = None, dict
    if mesh is not None:
        state_sharding = parallel.state_shardings(state, mesh)
        state = jax.device_put(state, state_sharding)
        rows = parallel.round_up(rc.train.batch_size, mesh.shape[parallel.DATA])
        place_batch = parallel.BatchPlacer(mesh, rows)
        logging.info("mesh %s; %d rows per step", dict(mesh.shape), rows)
    train_step = make_train_step(rc, tx, log_pop, mesh=mesh, state_sharding=state_sharding)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    ckpt_dir = os.path.abspath(os.path.join(workdir, "ckpt"))
    latest = ocp.CheckpointManager(os.path.join(ckpt_dir, "latest"), options=options)
    best = ocp.CheckpointManager(os.path.join(ckpt_dir, "best"), options=options)
    meta = {
        "epoch": -1,
        "best_metric": -math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "train_events": 0,
        "done": False,
    }
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    if latest.latest_step() is not None:
        restored = latest.restore(
            latest.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        state, meta = restored.state, dict(restored.meta)
        logging.info(
            "resumed from %s at step %d (epoch %d)", ckpt_dir, int(state["step"]), meta["epoch"]
        )

    sel = rc.train.select_metric
    epochs_this_call = 0
    time_start = time.time()
    while not meta["done"] and meta["epoch"] + 1 < rc.train.epochs:
        epoch = meta["epoch"] + 1
        t0 = time.time()
        events = 0
        last_log_t, last_log_events = t0, 0
        step = int(state["step"])  # host copy: reading the device value would sync each step
        for batch in ds.iterate_train_batches(windows, rc.train.batch_size, rc.seed, epoch):
            if rc.train.max_steps and step >= rc.train.max_steps:
                break
            if rc.train.eval_every_steps and step == 0:  # the untrained model starts the curve
                clock = meta["train_seconds"] - t0  # + time.time(): training seconds so far
                dt = _validate_along(
                    state, rc, valid_ex, p.n_items, step, epoch, clock, metrics_log
                )
                t0, last_log_t = t0 + dt, last_log_t + dt
            events += int(np.sum(batch["mask"] & (batch["targets"] > 0)))
            state, parts = train_step(state, place_batch(batch))
            step += 1
            if rc.train.eval_every_steps and step % rc.train.eval_every_steps == 0:
                clock = meta["train_seconds"] - t0  # + time.time(): training seconds so far
                dt = _validate_along(
                    state, rc, valid_ex, p.n_items, step, epoch, clock, metrics_log
                )
                t0, last_log_t = t0 + dt, last_log_t + dt
            if step % rc.train.log_every == 0:
                _check_finite(state, parts, step, epoch, latest)
                now = time.time()
                rate = (events - last_log_events) / max(now - last_log_t, 1e-9)
                done_steps = step - epoch * steps_per_epoch
                remaining = (now - t0) / max(done_steps, 1) * (total_steps - step)
                record = {k: float(v) for k, v in parts.items()}
                logging.info(
                    "step %d/%d epoch %d loss %.4f %s events/s ETA %s",
                    step,
                    total_steps,
                    epoch,
                    record["loss"],
                    f"{rate:,.0f}",
                    eta(remaining),
                )
                metrics_log.write(
                    {"step": step, "epoch": epoch, "events_per_second": rate}
                    | {f"train/{k}": v for k, v in record.items()}
                )
                last_log_t, last_log_events = now, events
        jax.block_until_ready(state["params"])
        _check_finite(state, parts, int(state["step"]), epoch, latest)
        meta["train_seconds"] += time.time() - t0
        meta["train_events"] += events
        meta["epoch"] = epoch
        step = int(state["step"])
        stop = bool(rc.train.max_steps and step >= rc.train.max_steps)
        if (epoch + 1) % rc.train.eval_every_epochs == 0 or stop or epoch + 1 == rc.train.epochs:
            valid = evaluate(state["params"], rc, valid_ex, p.n_items, "valid")
            metrics_log.write({"step": step, "epoch": epoch} | valid)
            if sel not in valid:
                raise KeyError(f"config.train.select_metric={sel!r} is not among {sorted(valid)}")
            logging.info("epoch %d step %d %s %.4f", epoch, step, sel, valid[sel])
            score = valid[sel] if higher_is_better(sel) else -valid[sel]
            if score > meta["best_metric"]:
                meta.update(best_metric=score, best_epoch=epoch, bad_epochs=0)
                # A run killed between the two saves re-evaluates this epoch on resume.
                if best.latest_step() != step:
                    best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
                    best.wait_until_finished()
            else:
                meta["bad_epochs"] += 1
            if meta["bad_epochs"] >= rc.train.patience:
                logging.info(
                    "early stop: %s did not improve for %d evaluations", sel, meta["bad_epochs"]
                )
                stop = True
        if rc.train.time_budget_s and time.time() - time_start >= rc.train.time_budget_s:
            logging.info("time budget of %.0f s reached", rc.train.time_budget_s)
            stop = True
        stop = parallel.agree(stop)  # multi-host: process 0's clock decides for all
        meta["done"] = stop
        latest.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        latest.wait_until_finished()
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            latest.close()
            best.close()
            return {"interrupted": True, "epoch": epoch}

    # Final evaluation of the best checkpoint (the last one if validation never ran).
    best_step = best.latest_step()
    if best_step is not None:
        params = best.restore(
            best_step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)),
        ).state["params"]
    else:
        params = state["params"]
    metrics = {}
    metrics.update(evaluate(params, rc, valid_ex, p.n_items, "valid"))
    metrics.update(evaluate(params, rc, test_ex, p.n_items, "test"))
    pop = {}
    pop.update(evaluate_popularity(p.log_popularity, rc, valid_ex, p.n_items, "valid"))
    pop.update(evaluate_popularity(p.log_popularity, rc, test_ex, p.n_items, "test"))
    results = {
        "metrics": metrics,
        "train": {
            "seconds": meta["train_seconds"],
            "events": meta["train_events"],
            "events_per_second": meta["train_events"] / max(meta["train_seconds"], 1e-9),
            "steps": int(state["step"]),
            "epochs": meta["epoch"] + 1,
            "best_epoch": meta["best_epoch"],
            "best_step": best_step,
            "selected_on": sel,
        },
        "baselines": {"most_popular": pop},
        "data": p.info,
        "model": dataclasses.asdict(rc.model),
    }
    write_json(os.path.join(workdir, "results.json"), results)
    metrics_log.write({"step": int(state["step"]), "final": True} | metrics)
    latest.close()
    best.close()
    return results


def _validate_along(
    state, rc: RunConfig, valid_ex, n_items: int, step, epoch, clock: float, log
) -> float:
    """Validation metrics at ``step`` for metric-vs-iteration curves
    (``train.eval_every_steps``), stamped with the training seconds so far (``train_seconds``,
    evaluation excluded: time-to-accuracy curves); returns the seconds spent, kept out of the
    training time."""
    jax.block_until_ready(state["params"])  # pending training steps are not evaluation time
    t = time.time()
    valid = evaluate(state["params"], rc, valid_ex, n_items, "valid")
    log.write({"step": step, "epoch": epoch, "train_seconds": clock + t} | valid)
    return time.time() - t


def _check_finite(state, parts, step: int, epoch: int, latest: ocp.CheckpointManager) -> None:
    if bool(state["finite"]):
        return
    raise NonFiniteLossError(
        non_finite_message(
            step, epoch, float(parts["loss"]), latest.latest_step(), latest.directory
        )
    )
