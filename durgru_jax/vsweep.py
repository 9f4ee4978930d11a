"""Vectorised sweeps: K runs that differ only in ``seed`` and ``optim.learning_rate`` train as
one ``jax.vmap``-ed, jitted train step over K stacked parameter sets.

Each of the K models computes exactly what it would compute alone in
`durgru_jax.train.train_and_evaluate`:

* parameters from ``model.init_params(rc.model, seed_k, ...)``, stacked along a leading K axis;
* the step's randomness from ``fold_in(key(seed_k), step_k)`` and the batches of
  ``ds.iterate_train_batches(windows_k, batch_size, seed_k, epoch_k)``, stacked along K;
* its own learning rate: ``train.make_optimizer`` is built inside the vmapped step with the
  model's learning rate as a traced K-array, so the optimiser state keeps the single run's
  structure (and checkpoints stay interchangeable with single runs);
* its own epoch, validation, best checkpoint, patience and early stop. A model that has
  stopped, or whose epoch has no batch left, takes masked steps that leave its state as it is.

Every run keeps its own ``workdir`` with the files of a single run (``config.json``,
``metrics.jsonl``, ``ckpt/latest``, ``ckpt/best``, ``results.json``), so an interrupted group
resumes per run, from a group or from single-run checkpoints alike.

Not vectorised (the run goes alone instead): anything that changes the compiled step or the
data shapes, e.g. ``model.dropout`` or ``loss.aux_weight`` (Python-level switches in
`durgru_jax.model`), or ``data.*``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging

from durgru_jax import evaluate as evaluate_lib
from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax import parallel, run_lib
from durgru_jax import train as train_lib
from durgru_jax.config import OptimConfig, RunConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data.sources import load_prepared

# Overrides that K runs may differ in and still share one compiled step.
VECTORIZABLE_KEYS = ("seed", "optim.learning_rate")


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(vectorisable, other)`` parts of a run's overrides."""
    vec = {k: v for k, v in overrides.items() if k in VECTORIZABLE_KEYS}
    return vec, {k: v for k, v in overrides.items() if k not in VECTORIZABLE_KEYS}


def group_runs(runs: Sequence[Mapping[str, Any]], max_vmap: int) -> list[list[int]]:
    """Indices of ``runs`` grouped by their non-vectorisable overrides, in declaration order
    (a group sits where its first run is declared), each group cut into chunks of at most
    ``max_vmap`` runs."""
    groups: dict[str, list[int]] = {}
    for i, overrides in enumerate(runs):
        _, other = split_overrides(overrides)
        groups.setdefault(json.dumps(other, sort_keys=True, default=str), []).append(i)
    out = []
    for idx in groups.values():
        out += [idx[lo : lo + max(1, max_vmap)] for lo in range(0, len(idx), max(1, max_vmap))]
    return sorted(out, key=lambda g: g[0])


def unsupported(config: ml_collections.ConfigDict) -> str:
    """Why ``config`` cannot train in a vectorised group ("" if it can)."""
    train = config.get("train", {})
    if (train.get("data_parallel", 1), train.get("model_parallel", 1)) != (1, 1):
        return "a device mesh (train.data_parallel / train.model_parallel)"
    if jax.process_count() > 1:
        return "a multi-host run"
    if config.get("task", "") or config.get("bench", False):
        return "not a recommender training run"
    return ""


def _differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = set(a) | set(b)
    out = []
    for k in sorted(keys):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


@dataclasses.dataclass
class _Run:
    """One member of a vectorised group: its config, data and checkpoint managers."""

    config: ml_collections.ConfigDict
    workdir: str
    rc: RunConfig
    prepared: Any
    windows: dict[str, np.ndarray]
    valid_ex: dict[str, np.ndarray]
    test_ex: dict[str, np.ndarray]
    total_steps: int
    log: Any = None
    latest: ocp.CheckpointManager | None = None
    best: ocp.CheckpointManager | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""


def _with_lr(optim: OptimConfig, learning_rate) -> types.SimpleNamespace:
    # A namespace, not dataclasses.replace: OptimConfig's checks would compare a tracer.
    return types.SimpleNamespace(**{**dataclasses.asdict(optim), "learning_rate": learning_rate})


@functools.lru_cache(maxsize=8)
def make_vmapped_train_step(rc: RunConfig, total_steps: int, chunk: int = 0):
    """The jitted step over K models, state donated:
    ``(state_K, batch_KxBxT, key_data_K, lr_K, log_popularity_KxN, active_K) ->
    (state_K, parts_K)``. For model k it is `train.make_train_step`'s step with ``rc.seed =
    seed_k`` and ``optim.learning_rate = lr_k``; where ``active_k`` is false the state is
    returned unchanged (step counter included).

    ``chunk``: 0 vmaps all K models at once; ``c > 0`` loops over groups of ``c`` vmapped
    models inside the step (``lax.map``): on a CPU that one model already keeps busy, K
    models cost about K steps either way, and smaller working sets stay in cache.
    """

    def step_fn(state, batch, key_data, lr, log_popularity, active):
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), state["step"])

        def loss_fn(params):
            p, b = parallel.cast_for_compute(params, batch, rc.model.compute_dtype)
            return loss_lib.losses(p, rc.model, rc.loss, b, key, log_popularity)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        tx = train_lib.make_optimizer(_with_lr(rc.optim, lr), total_steps)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new_state = {
            "params": params,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "finite": state["finite"] & jnp.isfinite(loss),
        }
        new_state = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_state, state)
        return new_state, parts

    if chunk <= 0:
        return jax.jit(jax.vmap(step_fn), donate_argnums=0)

    def mapped(*args):
        return jax.lax.map(lambda xs: step_fn(*xs), args, batch_size=chunk)

    return jax.jit(mapped, donate_argnums=0)


@jax.jit
def _stack_jit(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _stack(trees: Sequence[Any]) -> Any:
    # Committed to one device: fresh and restored (committed) states then share one compiled
    # step; a mix would compile it twice.
    return jax.device_put(_stack_jit(list(trees)), jax.devices()[0])


@jax.jit
def _take(tree: Any, k) -> Any:
    """Model ``k`` of a stacked tree (one compiled gather for the whole tree)."""
    return jax.tree.map(lambda x: x[k], tree)


def _setup(config, workdir: str | None) -> _Run:
    """Data and typed config of a run; its files and checkpoint managers if ``workdir``."""
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        run_lib.write_json(os.path.join(workdir, "config.json"), config.to_dict())
    p = load_prepared(config.data, seed=int(config.seed))
    logging.info("data: %s", json.dumps(run_lib.jsonable(p.info)))
    rating_head = p.has_ratings and float(config.loss.rating_weight) > 0
    agru = config.model.cell == "agru"
    rc = from_config(
        config,
        n_items=p.n_items,
        n_input_contexts=p.n_input_contexts if agru else 1,
        n_transfer_contexts=p.n_transfer_contexts if agru or config.model.gap_input else 1,
        rating_head=rating_head,
        max_len=int(config.data.max_len),
    )
    windows = ds.train_windows(p, pack=bool(config.data.get("pack", True)))
    drop = rc.eval.unknown_targets == "drop"
    total_steps = ds.n_train_batches(windows, rc.train.batch_size) * rc.train.epochs
    if rc.train.max_steps:
        total_steps = min(total_steps, rc.train.max_steps)
    run = _Run(
        config=config,
        workdir=workdir or "",
        rc=rc,
        prepared=p,
        windows=windows,
        valid_ex=ds.eval_examples(p, "valid", drop_unknown=drop),
        test_ex=ds.eval_examples(p, "test", drop_unknown=drop),
        total_steps=total_steps,
    )
    if workdir is not None:
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        ckpt_dir = os.path.abspath(os.path.join(workdir, "ckpt"))
        run.log = run_lib.Jsonl(os.path.join(workdir, "metrics.jsonl"))
        run.latest = ocp.CheckpointManager(os.path.join(ckpt_dir, "latest"), options=options)
        run.best = ocp.CheckpointManager(os.path.join(ckpt_dir, "best"), options=options)
    return run


def _signature_rc(rc: RunConfig) -> RunConfig:
    """``rc`` without what the vmapped step takes as arrays (seed and learning rate)."""
    return dataclasses.replace(rc, seed=0, optim=dataclasses.replace(rc.optim, learning_rate=1.0))


def _signature(r: _Run):
    """What K runs must share to be stacked: everything compiled into the step (the run
    config without its seed and learning rate, the window shapes and the schedule's length)."""
    rc = _signature_rc(r.rc)
    shapes = tuple(sorted((k, v.shape[1:], str(v.dtype)) for k, v in r.windows.items()))
    return rc, shapes, r.total_steps


def train_and_evaluate_many(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[str],
    *,
    chunk: int | None = None,
    stop_after_epochs: int | None = None,
) -> list[dict]:
    """Trains K runs that differ only in `VECTORIZABLE_KEYS` as one vmapped model; returns
    their results dicts (those of `train.train_and_evaluate`, in order).

    ``chunk``: models vmapped at once inside the step (`make_vmapped_train_step`); None picks
    `default_chunk`.

    Runs whose data turn out to differ in shape (a seed-dependent random split with another
    number of windows) are trained in separate groups. A run whose loss turns non-finite is
    frozen (its last good checkpoint kept) while the others go on; `NonFiniteLossError` is
    raised at the end, naming it. ``stop_after_epochs`` ends the call after that many epochs
    of training of this call (to test interruption); a later call resumes.
    """
    if len(configs) != len(workdirs) or not configs:
        raise ValueError("train_and_evaluate_many needs one workdir per config (and a config)")
    base = configs[0].to_dict()
    for c in configs:
        diff = [d for d in _differences(base, c.to_dict()) if d not in VECTORIZABLE_KEYS]
        if diff:
            raise ValueError(f"runs of a vectorised group differ in {diff}: not vectorisable")
        why = unsupported(c)
        if why:
            raise ValueError(f"a vectorised group cannot run this config: {why}")
    runs = [_setup(c, w) for c, w in zip(configs, workdirs, strict=True)]
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(_signature(r), []).append(i)
    results: list[dict | None] = [None] * len(runs)
    try:
        for idx in groups.values():
            out = _train_group([runs[i] for i in idx], chunk, stop_after_epochs)
            for i, res in zip(idx, out, strict=True):
                results[i] = res
    finally:
        for r in runs:
            r.latest.close()
            r.best.close()
    failed = [r for r in runs if r.error]
    if failed:
        raise run_lib.NonFiniteLossError("; ".join(f"{r.workdir}: {r.error}" for r in failed))
    return results  # type: ignore[return-value]


def _init_state(r: _Run, tx: optax.GradientTransformation):
    """The run's state as `train.train_and_evaluate` builds or resumes it, and its meta."""
    rc, p = r.rc, r.prepared
    params = model_lib.init_params(
        rc.model,
        rc.seed,
        p.log_popularity if rc.model.init_bias_from_popularity else None,
        ds.train_rating_mean(p),
    )
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "finite": jnp.asarray(True),
    }
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
    if r.latest is not None and r.latest.latest_step() is not None:
        restored = r.latest.restore(
            r.latest.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        state, meta = restored.state, dict(restored.meta)
        logging.info(
            "%s: resumed at step %d (epoch %d)", r.workdir, int(state["step"]), meta["epoch"]
        )
    return state, meta, abstract


def default_chunk() -> int:
    """All models vmapped at once (0) on an accelerator; one at a time inside the step (1)
    on a CPU, which one model already keeps busy: there K=8 models cost 5.6x one run's step
    this way against 8.1x all vmapped (synthetic default, 2 shared cores)."""
    return 1 if jax.default_backend() == "cpu" else 0


def _train_group(runs: list[_Run], chunk: int | None, stop_after_epochs: int | None):
    k_models = len(runs)
    rc0 = runs[0].rc
    total_steps = runs[0].total_steps
    tx = train_lib.make_optimizer(rc0.optim, total_steps)
    states, abstract = [], None
    for r in runs:
        state, r.meta, abstract = _init_state(r, tx)
        states.append(state)
    state = _stack(states)
    del states
    chunk = default_chunk() if chunk is None else chunk
    step_fn = make_vmapped_train_step(_signature_rc(rc0), total_steps, chunk)
    key_data = jnp.stack([jax.random.key_data(jax.random.key(r.rc.seed)) for r in runs])
    lr = jnp.asarray([r.rc.optim.learning_rate for r in runs], jnp.float32)
    log_pop = jnp.stack([jnp.asarray(r.prepared.log_popularity) for r in runs])
    logging.info(
        "vectorised group of %d runs: %s",
        k_models,
        ", ".join(os.path.basename(r.workdir) for r in runs),
    )

    def live(r: _Run) -> bool:
        return not r.error and not r.meta["done"] and r.meta["epoch"] + 1 < r.rc.train.epochs

    bs = rc0.train.batch_size
    sel = rc0.train.select_metric
    zero_batch = None
    rounds = 0
    time_start = time.time()
    while any(live(r) for r in runs):
        training = [live(r) for r in runs]
        epochs = [r.meta["epoch"] + 1 for r in runs]
        iters = [
            ds.iterate_train_batches(r.windows, bs, r.rc.seed, e) if t else iter(())
            for r, e, t in zip(runs, epochs, training, strict=True)
        ]
        steps = [int(s) for s in np.asarray(state["step"])]
        events = [0] * k_models
        t0 = time.time()
        last_t, last_events = [t0] * k_models, [0] * k_models
        parts = None
        while True:
            batches = []
            for k, r in enumerate(runs):
                b = None
                if training[k] and not r.error:
                    if not (r.rc.train.max_steps and steps[k] >= r.rc.train.max_steps):
                        b = next(iters[k], None)
                batches.append(b)
            if all(b is None for b in batches):
                break
            if zero_batch is None:
                first = next(b for b in batches if b is not None)
                zero_batch = {key: np.zeros_like(v) for key, v in first.items()}
            active = np.asarray([b is not None for b in batches])
            every = [r.rc.train.eval_every_steps for r in runs]
            along = [
                bool(a) and e > 0 and steps[k] == 0
                for k, (a, e) in enumerate(zip(active, every, strict=True))
            ]
            if any(along):  # train.eval_every_steps: the untrained models start the curves
                dt = _validate_along(runs, state, along, steps, epochs, t0)
                t0, last_t = t0 + dt, [t + dt for t in last_t]
            stacked = {
                key: np.stack([(b if b is not None else zero_batch)[key] for b in batches])
                for key in zero_batch
            }
            for k, b in enumerate(batches):
                if b is not None:
                    events[k] += int(np.sum(b["mask"] & (b["targets"] > 0)))
                    steps[k] += 1
            state, parts = step_fn(state, stacked, key_data, lr, log_pop, jnp.asarray(active))
            logging_now = [
                bool(active[k]) and steps[k] % runs[k].rc.train.log_every == 0
                for k in range(k_models)
            ]
            along = [
                bool(a) and e > 0 and steps[k] % e == 0
                for k, (a, e) in enumerate(zip(active, every, strict=True))
            ]
            if any(logging_now):
                parts_host = {name: np.asarray(v) for name, v in parts.items()}
                finite = np.asarray(state["finite"])
                now = time.time()
                for k, r in enumerate(runs):
                    if not logging_now[k]:
                        continue
                    if not finite[k]:
                        _fail(r, steps[k], epochs[k], parts_host["loss"][k])
                        continue
                    rate = (events[k] - last_events[k]) / max(now - last_t[k], 1e-9)
                    record = {name: float(v[k]) for name, v in parts_host.items()}
                    r.log.write(
                        {"step": steps[k], "epoch": epochs[k], "events_per_second": rate}
                        | {f"train/{name}": v for name, v in record.items()}
                    )
                    last_t[k], last_events[k] = now, events[k]
                logging.info(
                    "vectorised step %d, losses %s",
                    max(steps),
                    " ".join(f"{float(v):.4f}" for v in parts_host["loss"]),
                )
            if any(along):
                dt = _validate_along(runs, state, along, steps, epochs, t0)
                t0, last_t = t0 + dt, [t + dt for t in last_t]
        jax.block_until_ready(state["params"])
        seconds = time.time() - t0
        finite = np.asarray(state["finite"])
        steps = [int(s) for s in np.asarray(state["step"])]
        for k, r in enumerate(runs):
            if not training[k] or r.error:
                continue
            if not finite[k]:
                _fail(r, steps[k], epochs[k], np.asarray(parts["loss"])[k])
                continue
            _end_of_epoch(r, _take(state, k), steps[k], epochs[k], events[k], seconds, sel)
            if r.rc.train.time_budget_s and time.time() - time_start >= r.rc.train.time_budget_s:
                logging.info(
                    "%s: time budget of %.0f s reached", r.workdir, r.rc.train.time_budget_s
                )
                r.meta["done"] = True
            r.latest.save(
                steps[k],
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_take(state, k)), meta=ocp.args.JsonSave(r.meta)
                ),
            )
        for r in runs:
            r.latest.wait_until_finished()
        rounds += 1
        if stop_after_epochs is not None and rounds >= stop_after_epochs:
            return [{"interrupted": True, "epoch": r.meta["epoch"]} for r in runs]

    return [
        _finish(r, _take(state, k), abstract) if not r.error else {"error": r.error}
        for k, r in enumerate(runs)
    ]


def _validate_along(runs, state, which, steps, epochs, t0: float) -> float:
    """Validation records of the models in ``which`` for ``train.eval_every_steps`` (as
    `train._validate_along`, stamped with the group's training seconds so far, ``t0`` being
    this epoch's start); returns the seconds spent, kept out of the training time."""
    jax.block_until_ready(state["params"])
    t = time.time()
    for k, r in enumerate(runs):
        if which[k] and not r.error:
            params = _take(state["params"], k)
            valid = evaluate_lib.evaluate(params, r.rc, r.valid_ex, r.prepared.n_items, "valid")
            trained = r.meta["train_seconds"] + t - t0
            r.log.write({"step": steps[k], "epoch": epochs[k], "train_seconds": trained} | valid)
    return time.time() - t


def _fail(r: _Run, step: int, epoch: int, loss) -> None:
    kept = r.latest.latest_step()
    where = (
        f"the last good checkpoint (step {kept}) is kept in {r.latest.directory}"
        if kept is not None
        else "no checkpoint had been written yet"
    )
    r.error = (
        f"non-finite training loss by step {step} (epoch {epoch}; last loss {float(loss)}); "
        f"stopped without saving the broken state: {where}. Try a lower "
        "optim.learning_rate or optim.clip_norm > 0."
    )
    logging.error("%s: %s", r.workdir, r.error)


def _end_of_epoch(r: _Run, state_k, step: int, epoch: int, events: int, seconds: float, sel):
    """Model selection and early stopping of one run, as in `train.train_and_evaluate`."""
    rc, meta = r.rc, r.meta
    meta["train_seconds"] += seconds
    meta["train_events"] += events
    meta["epoch"] = epoch
    stop = bool(rc.train.max_steps and step >= rc.train.max_steps)
    if (epoch + 1) % rc.train.eval_every_epochs == 0 or stop or epoch + 1 == rc.train.epochs:
        valid = evaluate_lib.evaluate(
            state_k["params"], rc, r.valid_ex, r.prepared.n_items, "valid"
        )
        r.log.write({"step": step, "epoch": epoch} | valid)
        if sel not in valid:
            raise KeyError(f"config.train.select_metric={sel!r} is not among {sorted(valid)}")
        logging.info("%s: epoch %d step %d %s %.4f", r.workdir, epoch, step, sel, valid[sel])
        score = valid[sel] if run_lib.higher_is_better(sel) else -valid[sel]
        if score > meta["best_metric"]:
            meta.update(best_metric=score, best_epoch=epoch, bad_epochs=0)
            if r.best.latest_step() != step:
                r.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_k)))
                r.best.wait_until_finished()
        else:
            meta["bad_epochs"] += 1
        if meta["bad_epochs"] >= rc.train.patience:
            logging.info("%s: early stop after %d evaluations", r.workdir, meta["bad_epochs"])
            stop = True
    meta["done"] = stop


def _finish(r: _Run, state_k, abstract) -> dict:
    """Test of the best checkpoint and ``results.json``, as `train.train_and_evaluate`."""
    rc, p, meta = r.rc, r.prepared, r.meta
    best_step = r.best.latest_step()
    if best_step is not None:
        params = r.best.restore(
            best_step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        ).state["params"]
    else:
        params = state_k["params"]
    metrics = {}
    metrics.update(evaluate_lib.evaluate(params, rc, r.valid_ex, p.n_items, "valid"))
    metrics.update(evaluate_lib.evaluate(params, rc, r.test_ex, p.n_items, "test"))
    pop = {}
    pop.update(
        evaluate_lib.evaluate_popularity(p.log_popularity, rc, r.valid_ex, p.n_items, "valid")
    )
    pop.update(evaluate_lib.evaluate_popularity(p.log_popularity, rc, r.test_ex, p.n_items, "test"))
    results = {
        "metrics": metrics,
        "train": {
            "seconds": meta["train_seconds"],
            "events": meta["train_events"],
            "events_per_second": meta["train_events"] / max(meta["train_seconds"], 1e-9),
            "steps": int(state_k["step"]),
            "epochs": meta["epoch"] + 1,
            "best_epoch": meta["best_epoch"],
            "best_step": best_step,
            "selected_on": rc.train.select_metric,
        },
        "baselines": {"most_popular": pop},
        "data": p.info,
        "model": dataclasses.asdict(rc.model),
    }
    run_lib.write_json(os.path.join(r.workdir, "results.json"), results)
    r.log.write({"step": int(state_k["step"]), "final": True} | metrics)
    return results


def run_many(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[str],
    chunk: int | None = None,
) -> list[dict]:
    """`runner.run` for a vectorised group: the runs, then each ``config.compare`` variant of
    them (again one group), whose metrics join each run's ``results.json``."""
    from durgru_jax import runner

    results = train_and_evaluate_many(configs, workdirs, chunk=chunk)
    specs = tuple(configs[0].get("compare", ()))
    if not specs:
        return results
    comparisons: list[dict] = [{} for _ in configs]
    for spec in specs:
        children = []
        for c in configs:
            child = ml_collections.ConfigDict(c.to_dict())
            child.compare = ()
            for assignment in spec.split(","):
                runner.apply_override(child, assignment)
            children.append(child)
        logging.info("comparison runs (vectorised): %s", spec)
        subs = train_and_evaluate_many(
            children,
            [os.path.join(w, "compare", runner._slug(spec)) for w in workdirs],
            chunk=chunk,
        )
        for comp, sub in zip(comparisons, subs, strict=True):
            comp[spec] = {"metrics": sub["metrics"], "train": sub["train"]}
    for res, comp, w in zip(results, comparisons, workdirs, strict=True):
        res["comparisons"] = comp
        run_lib.write_json(os.path.join(w, "results.json"), res)
    return results


# --------------------------------------------------------------------------------------
# Benchmark: ``python -m durgru_jax.vsweep --config configs/default.py --k 8``
# --------------------------------------------------------------------------------------


def benchmark(
    config: ml_collections.ConfigDict, k: int = 8, rounds: int = 6, chunks=(0, 1)
) -> dict:
    """Cost of K runs in one step against one run of ``config``, per train step and per
    epoch, for each ``chunk`` of `make_vmapped_train_step` (0: all K vmapped at once).

    The variants are timed interleaved (``rounds`` rounds of one step of each, medians), so a
    shared machine's changing load hits them alike; CPU seconds (all threads) are recorded
    beside wall seconds. An epoch's cost is ``steps_per_epoch`` steps plus the validation of
    every model (timed after a warm-up). A config with a ``bench`` group (``configs/bench.py``)
    is timed on random batches of its shapes, as `durgru_jax.bench`, without validation; any
    other on its own data. The K runs differ in seed and learning rate; the single run is
    `train.make_train_step` itself.
    """
    configs = []
    for i in range(k):
        c = ml_collections.ConfigDict(config.to_dict())
        c.seed = int(config.seed) + i
        c.optim.learning_rate = float(config.optim.learning_rate) * (1.0 + 0.25 * i)
        configs.append(c)
    shapes_only = "bench" in config
    if shapes_only:
        from durgru_jax import bench as bench_lib

        b = config.bench
        n_items, t, bs = int(b.n_items), int(b.max_len), int(config.train.batch_size)
        agru = config.model.cell == "agru"
        n_in, n_tr = (int(b.n_input_contexts), int(b.n_transfer_contexts)) if agru else (1, 1)
        rng = np.random.default_rng(0)
        per = [
            [bench_lib._random_batch(rng, bs, t, n_items, n_in, n_tr, np.full(bs, t))]
            for _ in range(k)
        ]
        log_pop = np.log(np.full(n_items + 1, 1.0 / n_items)).astype(np.float32)
        runs = []
        for c in configs:
            rc = from_config(c, n_items=n_items, n_input_contexts=n_in, n_transfer_contexts=n_tr)
            prepared = types.SimpleNamespace(log_popularity=log_pop, n_items=n_items)
            runs.append(_Run(c, "", rc, prepared, {}, {}, {}, 1000))
        steps_per_epoch = None
    else:
        runs = [_setup(c, None) for c in configs]
        bs = runs[0].rc.train.batch_size
        per = [list(ds.iterate_train_batches(r.windows, bs, r.rc.seed, 0)) for r in runs]
        steps_per_epoch = len(per[0])
    r0 = runs[0]
    tx = train_lib.make_optimizer(r0.rc.optim, r0.total_steps)
    n_batches = len(per[0])
    variants = {
        "single": (
            train_lib.make_train_step(r0.rc, tx, jnp.asarray(r0.prepared.log_popularity)),
            _init_state(r0, tx)[0],
            per[0],
            (),
        )
    }
    args = (
        jnp.stack([jax.random.key_data(jax.random.key(r.rc.seed)) for r in runs]),
        jnp.asarray([r.rc.optim.learning_rate for r in runs], jnp.float32),
        jnp.stack([jnp.asarray(r.prepared.log_popularity) for r in runs]),
        jnp.ones((k,), bool),
    )
    stacked = [{f: np.stack([p[i][f] for p in per]) for f in per[0][0]} for i in range(n_batches)]
    for chunk in chunks:
        step = make_vmapped_train_step(_signature_rc(r0.rc), r0.total_steps, int(chunk))
        state = _stack([_init_state(r, tx)[0] for r in runs])
        variants[f"chunk{int(chunk)}"] = (step, state, stacked, args)
    out: dict[str, Any] = {
        "k": k,
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "rounds": rounds,
        "batch_size": int(config.train.batch_size),
        "events_per_step": float(np.mean([np.sum(b["mask"] & (b["targets"] > 0)) for b in per[0]])),
        "steps_per_epoch": steps_per_epoch,
    }
    states = {}
    for name, (step, state, batches, a) in variants.items():
        t = time.perf_counter()
        states[name], _ = step(state, batches[0], *a)
        jax.block_until_ready(states[name])
        out[name] = {"first_call_seconds": time.perf_counter() - t}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        names = list(variants)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            step, _, batches, a = variants[name]
            t, c = time.perf_counter(), time.process_time()
            states[name], _ = step(states[name], batches[(i + 1) % len(batches)], *a)
            jax.block_until_ready(states[name])
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    valid_s = None
    if not shapes_only:
        params = states["single"]["params"]
        ev = [r0.rc, r0.valid_ex, r0.prepared.n_items, "valid"]
        evaluate_lib.evaluate(params, *ev)  # compiles
        times = []
        for _ in range(3):
            t = time.perf_counter()
            evaluate_lib.evaluate(params, *ev)
            times.append(time.perf_counter() - t)
        valid_s = float(np.median(times))
        out["valid_seconds_per_model"] = valid_s
    one = float(np.median(wall["single"]))
    for name in variants:
        n_models = 1 if name == "single" else k
        res = out[name]
        res["step_seconds"] = float(np.median(wall[name]))
        res["step_cpu_seconds"] = float(np.median(cpu[name]))
        res["steps_per_second"] = 1.0 / res["step_seconds"]
        res["train_events_per_second"] = n_models * out["events_per_step"] / res["step_seconds"]
        res["step_cost_vs_one_run"] = res["step_seconds"] / one
        if valid_s is not None:
            res["epoch_seconds"] = steps_per_epoch * res["step_seconds"] + n_models * valid_s
    if valid_s is not None:
        for name in variants:
            out[name]["epoch_cost_vs_one_run"] = (
                out[name]["epoch_seconds"] / out["single"]["epoch_seconds"]
            )
    return out


def main(argv) -> None:
    from absl import flags
    from ml_collections import config_flags

    del argv
    config = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
    k = flags.DEFINE_integer("k", 8, "Models in the vmapped step.")
    rounds = flags.DEFINE_integer("rounds", 6, "Timed steps of each variant, interleaved.")
    chunks = flags.DEFINE_list("chunks", ["0", "1"], "Step variants (0: all K vmapped).")
    out = flags.DEFINE_string("out", "", "Also write the JSON here.")
    flags.FLAGS(sys.argv)
    result = benchmark(config.value, k.value, rounds.value, [int(c) for c in chunks.value])
    text = json.dumps(run_lib.jsonable(result), indent=2)
    print(text)
    if out.value:
        with open(out.value, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main(sys.argv)
