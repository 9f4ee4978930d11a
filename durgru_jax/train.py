"""Training, model selection and evaluation of one run.

`train_and_evaluate(config, workdir)`:

* holds the workdir's lock (one run per workdir: `run_lib.locks_workdir`), writes
  ``config.json``, appends to ``metrics.jsonl``, checkpoints to ``ckpt/latest`` (for
  resuming) and ``ckpt/best`` (best validation metric), and finally ``results.json`` (the
  lifecycle shared with the vectorised sweep: `durgru_jax.lifecycle`);
* resumes automatically from ``ckpt/latest`` (from the previous checkpoint if the newest is
  damaged: `durgru_jax.checkpoints`). Batches depend only on ``(seed, epoch)`` and the
  step's randomness on ``fold_in(seed, step)``, so a resumed run replays the uninterrupted
  one exactly;
* stops early on the validation metric and reports test metrics of the best checkpoint (the
  test set is never used for any decision);
* stops with `NonFiniteLossError` on a NaN/Inf loss, before any checkpoint of the broken state
  is written, so ``ckpt/latest`` keeps the last good state.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from durgru_jax import bptt, fault_injection, lifecycle, parallel, run_lib
from durgru_jax import loss as loss_lib
from durgru_jax import optim as optim_lib
from durgru_jax.config import RunConfig
from durgru_jax.data import dataset as ds


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
        "adagrad_momentum": lambda: optim_lib.adagrad_momentum(sched, cfg.momentum),
    }[cfg.name]()
    if cfg.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt


def apply_step(rc: RunConfig, tx: optax.GradientTransformation, state, batch, key, log_popularity):
    """One optimiser step on ``batch`` (the body of `make_train_step` and of the vectorised
    sweep's step): ``(state, loss parts)``, ``state["finite"]`` cleared for good by a
    NaN/Inf loss. With ``train.bptt``, one update per chunk of the windows, the hidden state
    carried over (GRU4Rec's session-parallel updates, `durgru_jax.bptt`)."""

    def loss_fn(params, b=batch, k=key, h0=None):
        # The bf16 cast sits inside the differentiated function: gradients come out f32.
        p, b = parallel.cast_for_compute(params, b, rc.model.compute_dtype)
        return loss_lib.carried_losses(p, rc.model, rc.loss, b, k, log_popularity, h0_BxH=h0)

    if rc.train.bptt:
        params, opt_state, parts = bptt.chunked_updates(
            loss_fn,
            tx,
            state["params"],
            state["opt_state"],
            batch,
            rc.train.bptt,
            rc.model.hidden_dim,
            key,
        )
    else:
        (_, (parts, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
    new_state = {
        "params": params,
        "opt_state": opt_state,
        "step": state["step"] + 1,
        "finite": state["finite"] & jnp.isfinite(parts["loss"]),
    }
    return new_state, parts


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
        return apply_step(rc, tx, state, batch, key, log_popularity)

    return jax.jit(step_fn, donate_argnums=0, **jit_kw)


@run_lib.locks_workdir
def train_and_evaluate(config, workdir: str, *, stop_after_epochs: int | None = None) -> dict:
    """Trains, selects on validation, evaluates on test; returns the results dict.

    ``stop_after_epochs`` ends this call after that many epochs *of this call* without
    finishing (used to test kill-and-resume); a later call resumes from ``ckpt/latest``.
    """
    run = lifecycle.setup(config, workdir)
    try:
        return _train(run, stop_after_epochs)
    finally:
        run.close()


def _train(run: lifecycle.Run, stop_after_epochs: int | None) -> dict:
    rc = run.rc
    tx = make_optimizer(rc.optim, run.total_steps)
    mesh = parallel.make_mesh(rc.train.data_parallel, rc.train.model_parallel)
    params = lifecycle.init_params(run)
    if mesh is not None:
        params = parallel.pad_item_tables(params, parallel.padded_rows(run.n_items + 1, mesh))
    state = lifecycle.new_state(params, tx)
    state_sharding, place_batch = None, dict
    if mesh is not None:
        state_sharding = parallel.state_shardings(state, mesh)
        state = jax.device_put(state, state_sharding)
        rows = parallel.round_up(rc.train.batch_size, mesh.shape[parallel.DATA])
        place_batch = parallel.BatchPlacer(mesh, rows)
        logging.info("mesh %s; %d rows per step", dict(mesh.shape), rows)
    log_pop = jnp.asarray(run.prepared.log_popularity)
    train_step = make_train_step(rc, tx, log_pop, mesh=mesh, state_sharding=state_sharding)
    state, run.meta = run.ckpts.restore(state)

    epochs_this_call = 0
    time_start = time.time()
    while not run.meta["done"] and run.meta["epoch"] + 1 < rc.train.epochs:
        epoch = run.meta["epoch"] + 1
        state, parts, events, seconds = _train_epoch(run, state, train_step, place_batch, epoch)
        step = int(state["step"])
        run_lib.check_finite(
            state["finite"], step=step, epoch=epoch, loss=parts and parts["loss"], ckpts=run.ckpts
        )
        lifecycle.end_of_epoch(
            run,
            state,
            step=step,
            epoch=epoch,
            seconds=seconds,
            events=events,
            time_start=time_start,
        )
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return {"interrupted": True, "epoch": epoch}
    return lifecycle.finish(run, state)


def _train_epoch(run: lifecycle.Run, state, train_step, place_batch, epoch: int):
    """One epoch's steps (to ``train.max_steps`` at most), with progress records every
    ``train.log_every`` steps and validation records every ``train.eval_every_steps``;
    returns ``(state, last step's losses, events, training seconds)``."""
    rc = run.rc
    every = rc.train.eval_every_steps
    t0 = time.time()
    events, parts = 0, None
    last_log_t, last_log_events = t0, 0
    step = int(state["step"])  # host copy: reading the device value would sync each step
    for batch in ds.iterate_train_batches(run.windows, rc.train.batch_size, rc.seed, epoch):
        if rc.train.max_steps and step >= rc.train.max_steps:
            break
        if every and step == 0:  # the untrained model starts the curve
            dt = lifecycle.validate_along(state, [(run, state["params"], step, epoch)], t0)
            t0, last_log_t = t0 + dt, last_log_t + dt
        events += int(np.sum(batch["mask"] & (batch["targets"] > 0)))
        state, parts = train_step(state, place_batch(batch))
        step += 1
        fault_injection.point("train_step")  # tests: a kill -9 mid-epoch
        if every and step % every == 0:
            dt = lifecycle.validate_along(state, [(run, state["params"], step, epoch)], t0)
            t0, last_log_t = t0 + dt, last_log_t + dt
        if step % rc.train.log_every == 0:
            run_lib.check_finite(
                state["finite"], step=step, epoch=epoch, loss=parts["loss"], ckpts=run.ckpts
            )
            now = time.time()
            rate = (events - last_log_events) / max(now - last_log_t, 1e-9)
            done_steps = step - epoch * run.steps_per_epoch
            remaining = (now - t0) / max(done_steps, 1) * (run.total_steps - step)
            losses = lifecycle.log_train(run, step, epoch, rate, parts)
            logging.info(
                "step %d/%d epoch %d loss %.4f %s events/s ETA %s",
                step,
                run.total_steps,
                epoch,
                losses["loss"],
                f"{rate:,.0f}",
                run_lib.eta(remaining),
            )
            last_log_t, last_log_events = now, events
    jax.block_until_ready(state["params"])
    return state, parts, events, time.time() - t0
