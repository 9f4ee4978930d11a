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
* its own epoch, validation, best checkpoint, patience and early stop: the lifecycle of a
  single run (`durgru_jax.lifecycle`), applied to each model in turn. A model that has
  stopped, or whose epoch has no batch left, takes masked steps that leave its state as it is.

Every run keeps its own ``workdir`` with the files of a single run (``config.json``,
``metrics.jsonl``, ``ckpt/latest``, ``ckpt/best``, ``results.json``), so an interrupted group
resumes per run, from a group or from single-run checkpoints alike; the group holds the lock of
every one of them (`run_lib.locks_workdir`).

Not vectorised (the run goes alone instead): anything that changes the compiled step or the
data shapes, e.g. ``model.dropout`` or ``loss.aux_weight`` (Python-level switches in
`durgru_jax.model`), or ``data.*``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from durgru_jax import lifecycle, run_lib
from durgru_jax import train as train_lib
from durgru_jax.config import OptimConfig, RunConfig
from durgru_jax.data import dataset as ds
from durgru_jax.lifecycle import Run

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
    if train.get("bptt", 0):
        return "train.bptt (updates per chunk of a window)"
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
        tx = train_lib.make_optimizer(_with_lr(rc.optim, lr), total_steps)
        new_state, parts = train_lib.apply_step(rc, tx, state, batch, key, log_popularity)
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


def stack(trees: Sequence[Any]) -> Any:
    """``trees`` stacked along a new leading K axis."""
    # Committed to one device: fresh and restored (committed) states then share one compiled
    # step; a mix would compile it twice.
    return jax.device_put(_stack_jit(list(trees)), jax.devices()[0])


@jax.jit
def _take(tree: Any, k) -> Any:
    """Model ``k`` of a stacked tree (one compiled gather for the whole tree)."""
    return jax.tree.map(lambda x: x[k], tree)


def signature_rc(rc: RunConfig) -> RunConfig:
    """``rc`` without what the vmapped step takes as arrays (seed and learning rate)."""
    return dataclasses.replace(rc, seed=0, optim=dataclasses.replace(rc.optim, learning_rate=1.0))


def _signature(r: Run):
    """What K runs must share to be stacked: everything compiled into the step (the run
    config without its seed and learning rate, the window shapes and the schedule's length)."""
    rc = signature_rc(r.rc)
    shapes = tuple(sorted((k, v.shape[1:], str(v.dtype)) for k, v in r.windows.items()))
    return rc, shapes, r.total_steps


def stacked_inputs(runs: Sequence[Run]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(key_data_K, lr_K, log_popularity_KxN)`` of `make_vmapped_train_step` for ``runs``."""
    return (
        jnp.stack([jax.random.key_data(jax.random.key(r.rc.seed)) for r in runs]),
        jnp.asarray([r.rc.optim.learning_rate for r in runs], jnp.float32),
        jnp.stack([jnp.asarray(r.prepared.log_popularity) for r in runs]),
    )


@run_lib.locks_workdir
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
    runs = [lifecycle.setup(c, w, who=f"{w}: ") for c, w in zip(configs, workdirs, strict=True)]
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
            r.close()
    failed = [r for r in runs if r.error]
    if failed:
        raise run_lib.NonFiniteLossError("; ".join(f"{r.workdir}: {r.error}" for r in failed))
    return results  # type: ignore[return-value]


def default_chunk() -> int:
    """All models vmapped at once (0) on an accelerator; one at a time inside the step (1)
    on a CPU, which one model already keeps busy: there K=8 models cost 5.6x one run's step
    this way against 8.1x all vmapped (synthetic default, 2 shared cores)."""
    return 1 if jax.default_backend() == "cpu" else 0


@dataclasses.dataclass
class _Group:
    """K runs training as one: their stacked state and the vmapped step's inputs."""

    runs: list[Run]
    state: Any
    step_fn: Any
    inputs: tuple[jax.Array, jax.Array, jax.Array]
    time_start: float
    zero_batch: dict[str, np.ndarray] | None = None


def _live(r: Run) -> bool:
    return not r.error and not r.meta["done"] and r.meta["epoch"] + 1 < r.rc.train.epochs


def _train_group(runs: list[Run], chunk: int | None, stop_after_epochs: int | None):
    rc0 = runs[0].rc
    tx = train_lib.make_optimizer(rc0.optim, runs[0].total_steps)
    states = []
    for r in runs:  # each run fresh or resumed, as `train.train_and_evaluate` starts it
        state, r.meta = r.ckpts.restore(lifecycle.new_state(lifecycle.init_params(r), tx), r.who)
        r.meta["trained_with"] = len(runs)  # its seconds are the group's (results.json)
        states.append(state)
    chunk = default_chunk() if chunk is None else chunk
    step_fn = make_vmapped_train_step(signature_rc(rc0), runs[0].total_steps, chunk)
    logging.info(
        "vectorised group of %d runs: %s",
        len(runs),
        ", ".join(os.path.basename(r.workdir) for r in runs),
    )
    g = _Group(runs, stack(states), step_fn, stacked_inputs(runs), time.time())
    del states
    rounds = 0
    while any(_live(r) for r in runs):
        training = [_live(r) for r in runs]
        epochs = [r.meta["epoch"] + 1 for r in runs]
        parts, events, seconds = _train_epoch(g, training, epochs)
        _end_of_epoch(g, training, epochs, parts, events, seconds)
        rounds += 1
        if stop_after_epochs is not None and rounds >= stop_after_epochs:
            return [{"interrupted": True, "epoch": r.meta["epoch"]} for r in runs]
    return [
        lifecycle.finish(r, _take(g.state, k)) if not r.error else {"error": r.error}
        for k, r in enumerate(runs)
    ]


def _train_epoch(g: _Group, training: list[bool], epochs: list[int]):
    """One epoch of every model in ``training`` (each to the end of its own epoch or its
    ``train.max_steps``), with each run's progress and ``eval_every_steps`` records as alone;
    returns ``(last step's losses, events per model, training seconds)``."""
    runs = g.runs
    bs = runs[0].rc.train.batch_size
    iters = [
        ds.iterate_train_batches(r.windows, bs, r.rc.seed, e) if t else iter(())
        for r, e, t in zip(runs, epochs, training, strict=True)
    ]
    steps = [int(s) for s in np.asarray(g.state["step"])]
    events = [0] * len(runs)
    t0 = time.time()
    last = {"t": [t0] * len(runs), "events": [0] * len(runs)}
    every = [r.rc.train.eval_every_steps for r in runs]
    parts = None
    while True:
        batches = [
            next(iters[k], None)
            if training[k]
            and not r.error
            and not (r.rc.train.max_steps and steps[k] >= r.rc.train.max_steps)
            else None
            for k, r in enumerate(runs)
        ]
        if all(b is None for b in batches):
            break
        active = [b is not None for b in batches]
        along = [a and e > 0 and s == 0 for a, e, s in zip(active, every, steps, strict=True)]
        if any(along):  # train.eval_every_steps: the untrained models start the curves
            dt = _validate_along(g, along, steps, epochs, t0)
            t0, last["t"] = t0 + dt, [t + dt for t in last["t"]]
        stacked = _stack_batches(g, batches)
        for k, b in enumerate(batches):
            if b is not None:
                events[k] += int(np.sum(b["mask"] & (b["targets"] > 0)))
                steps[k] += 1
        g.state, parts = g.step_fn(g.state, stacked, *g.inputs, jnp.asarray(active))
        logging_now = [a and s % r.rc.train.log_every == 0
                       for a, s, r in zip(active, steps, runs, strict=True)]  # fmt: skip
        along = [a and e > 0 and s % e == 0 for a, e, s in zip(active, every, steps, strict=True)]
        if any(logging_now):
            _log_progress(g, logging_now, parts, steps, epochs, events, last)
        if any(along):
            dt = _validate_along(g, along, steps, epochs, t0)
            t0, last["t"] = t0 + dt, [t + dt for t in last["t"]]
    jax.block_until_ready(g.state["params"])
    return parts, events, time.time() - t0


def _stack_batches(g: _Group, batches: list[dict | None]) -> dict[str, np.ndarray]:
    """The K models' batches stacked; a model without one gets zeros (its step is masked)."""
    if g.zero_batch is None:
        first = next(b for b in batches if b is not None)
        g.zero_batch = {key: np.zeros_like(v) for key, v in first.items()}
    return {
        key: np.stack([(b if b is not None else g.zero_batch)[key] for b in batches])
        for key in g.zero_batch
    }


def _log_progress(g: _Group, which, parts, steps, epochs, events, last) -> None:
    """Each run's progress record (`lifecycle.log_train`), after the non-finite check."""
    parts_host = {name: np.asarray(v) for name, v in parts.items()}
    finite = np.asarray(g.state["finite"])
    now = time.time()
    for k, r in enumerate(g.runs):
        loss = parts_host["loss"][k]
        if not which[k] or not _still_finite(r, finite[k], steps[k], epochs[k], loss):
            continue
        rate = (events[k] - last["events"][k]) / max(now - last["t"][k], 1e-9)
        lifecycle.log_train(r, steps[k], epochs[k], rate, {n: v[k] for n, v in parts_host.items()})
        last["t"][k], last["events"][k] = now, events[k]
    logging.info(
        "vectorised step %d, losses %s",
        max(steps),
        " ".join(f"{float(v):.4f}" for v in parts_host["loss"]),
    )


def _validate_along(g: _Group, which, steps, epochs, t0: float) -> float:
    """`lifecycle.validate_along` of the models in ``which``."""
    members = [
        (r, _take(g.state["params"], k), steps[k], epochs[k])
        for k, r in enumerate(g.runs)
        if which[k] and not r.error
    ]
    return lifecycle.validate_along(g.state, members, t0)


def _still_finite(r: Run, finite, step: int, epoch: int, loss) -> bool:
    """`run_lib.check_finite` for one model of the group: a failed run is frozen (``r.error``)
    while the others go on."""
    try:
        run_lib.check_finite(finite, step=step, epoch=epoch, loss=loss, ckpts=r.ckpts)
    except run_lib.NonFiniteLossError as e:
        r.error = str(e)
        logging.error("%s%s", r.who, r.error)
        return False
    return True


def _end_of_epoch(g: _Group, training, epochs, parts, events, seconds: float) -> None:
    """`lifecycle.end_of_epoch` of each model that trained this epoch and is still finite."""
    finite = np.asarray(g.state["finite"])
    steps = [int(s) for s in np.asarray(g.state["step"])]
    for k, r in enumerate(g.runs):
        if not training[k] or r.error:
            continue
        loss = None if parts is None else np.asarray(parts["loss"])[k]
        if not _still_finite(r, finite[k], steps[k], epochs[k], loss):
            continue
        lifecycle.end_of_epoch(
            r,
            _take(g.state, k),
            step=steps[k],
            epoch=epochs[k],
            seconds=seconds,
            events=events[k],
            time_start=g.time_start,
        )


@run_lib.locks_workdir
def run_many(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[str],
    chunk: int | None = None,
) -> list[dict]:
    """`runner.run` for a vectorised group: the runs, then each ``config.compare`` variant of
    them (again one group), whose metrics join each run's ``results.json``."""
    from durgru_jax import runner

    def train_many(cs, ws):
        return train_and_evaluate_many(cs, ws, chunk=chunk)

    return runner.run_compared(configs, workdirs, train_many)


if __name__ == "__main__":  # the vectorised-sweep benchmark: `python -m durgru_jax.bench`
    import sys

    from durgru_jax import bench

    bench.main(sys.argv)
