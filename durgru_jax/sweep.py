"""Sweeps declared beside a config: ``python launch.py --config configs/x.py --sweep --workdir W``.

A config module may define ``sweep(add)``; each ``add(**overrides)`` call declares one run,
``overrides`` mapping dotted config keys to values, e.g.::

    def sweep(add):
        for lr in (1e-1, 1e-2, 1e-3, 1e-4):
            for seed in range(3):
                add(**{"optim.learning_rate": lr, "seed": seed})

Each run trains in its own sub-directory ``W/<name>`` (resuming there if it was interrupted,
skipped if its ``results.json`` exists; the sweep holds the lock of ``W`` and each run that of
its sub-directory) and ``W/summary.csv`` gets one row per finished run:
its overrides, seed, every metric and the training seconds. An interrupted sweep started again
with the same command continues where it stopped; its summary holds every finished run before
the next one trains.

Runs that differ only in ``seed`` and ``optim.learning_rate`` (`vsweep.VECTORIZABLE_KEYS`)
train together, up to ``--sweep_max_vmap`` at a time, in one jitted step over the stacked
models (`durgru_jax.vsweep`), each with the files and results it would have alone; their
``seconds`` are then the group's. ``--nosweep_vectorize`` trains every run alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from durgru_jax import base_config, files, run_lib, runner, vsweep

MAX_NAME = 200  # characters of a run's directory name


def load_sweep(config_path: str) -> Callable[[Callable[..., None]], None]:
    """The ``sweep`` function of the config file ``path[:variant]``."""
    module, variant = base_config.config_module(config_path)
    fn = getattr(module, "sweep", None)
    if fn is None:
        raise ValueError(f"{config_path} declares no sweep(add) function; --sweep needs one")
    if variant:
        return lambda add: fn(add, variant) if fn.__code__.co_argcount > 1 else fn(add)
    return fn


def expand(sweep_fn: Callable[[Callable[..., None]], None]) -> list[dict[str, Any]]:
    """The runs a sweep declares, as a list of override dicts (in declaration order)."""
    runs: list[dict[str, Any]] = []

    def add(**overrides: Any) -> None:
        runs.append(dict(overrides))

    sweep_fn(add)
    if not runs:
        raise ValueError("the sweep declares no runs")
    names = [run_name(r) for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"the sweep declares the same run twice: {dup}")
    return runs


def run_name(overrides: Mapping[str, Any]) -> str:
    """A directory name for a run: its overrides, ``key=value`` joined by ``,``; past
    `MAX_NAME` characters, its first part and a hash of the whole (file systems take 255)."""
    if not overrides:
        return "base"
    parts = [f"{k}={_fmt(v)}" for k, v in sorted(overrides.items())]
    name = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", ",".join(parts))
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]
        name = f"{name[: MAX_NAME - 17]}-{digest}"
    return name


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + "+".join(_fmt(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def apply(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]):
    """A copy of ``config`` with ``overrides`` set (unknown keys raise, naming the key)."""
    return base_config.set_overrides(ml_collections.ConfigDict(config.to_dict()), overrides)


@run_lib.locks_workdir
def run_sweep(
    config: ml_collections.ConfigDict,
    config_path: str,
    workdir: str,
    train_fn: Callable[[ml_collections.ConfigDict, str], dict] | None = None,
    *,
    vectorize: bool = True,
    max_vmap: int = 8,
    vmap_chunk: int | None = None,
) -> list[dict[str, Any]]:
    """Runs every declared run not finished yet, then (re)writes ``workdir/summary.csv``.

    With ``vectorize`` (and the default ``train_fn``), unfinished runs that differ only in
    `vsweep.VECTORIZABLE_KEYS` train together, up to ``max_vmap`` at a time, as one vmapped
    model (`vsweep.run_many`, ``vmap_chunk`` models vmapped at once, None: the device's
    default); each still gets its own sub-directory and summary row.
    """
    runs = expand(load_sweep(config_path))
    vectorize = vectorize and train_fn is None
    groups = _vector_groups(config, workdir, runs, max_vmap) if vectorize else {}
    train_fn = train_fn or runner.run
    os.makedirs(workdir, exist_ok=True)
    files.write_atomic(
        os.path.join(workdir, "sweep.json"),
        lambda f: json.dump({"config": config_path, "runs": runs}, f, indent=2, default=str),
    )
    done = _finished_rows(config, workdir, runs)  # in the summary before anything trains
    if done:
        write_summary(workdir, list(done.values()))
    for i, overrides in enumerate(runs):
        name = run_name(overrides)
        sub = os.path.join(workdir, name)
        results_path = os.path.join(sub, "results.json")
        if os.path.exists(results_path):
            logging.info("sweep run %d/%d %s: finished before, skipped", i + 1, len(runs), name)
        elif i in groups:
            idx = groups[i]
            logging.info(
                "sweep runs %s of %d: one vectorised group of %d",
                ",".join(str(j + 1) for j in idx),
                len(runs),
                len(idx),
            )
            vsweep.run_many(
                [apply(config, runs[j]) for j in idx],
                [os.path.join(workdir, run_name(runs[j])) for j in idx],
                chunk=vmap_chunk,
            )
        else:
            logging.info("sweep run %d/%d %s", i + 1, len(runs), name)
            train_fn(apply(config, overrides), sub)
        with open(results_path) as f:
            results = json.load(f)
        done[name] = _row(name, overrides, apply(config, overrides), results)
        write_summary(workdir, [done[n] for n in map(run_name, runs) if n in done])
    return [done[run_name(o)] for o in runs]


def _finished_rows(config, workdir, runs) -> dict[str, dict[str, Any]]:
    """The summary rows of the declared runs already finished, by name, in declared order."""
    out = {}
    for overrides in runs:
        name = run_name(overrides)
        path = os.path.join(workdir, name, "results.json")
        if os.path.exists(path):
            with open(path) as f:
                out[name] = _row(name, overrides, apply(config, overrides), json.load(f))
    return out


def _vector_groups(config, workdir, runs, max_vmap) -> dict[int, list[int]]:
    """Unfinished runs that can train as one vmapped group: run index -> the group's runs."""
    pending = [
        i
        for i, o in enumerate(runs)
        if not os.path.exists(os.path.join(workdir, run_name(o), "results.json"))
    ]
    out: dict[int, list[int]] = {}
    for g in vsweep.group_runs([runs[i] for i in pending], max_vmap):
        idx = [pending[j] for j in g]
        if len(idx) > 1 and not vsweep.unsupported(apply(config, runs[idx[0]])):
            out.update({i: idx for i in idx})
    return out


def _row(name, overrides, config, results) -> dict[str, Any]:
    row: dict[str, Any] = {"run": name, "overrides": json.dumps(overrides, default=str)}
    row["seed"] = int(config.seed)
    row["seconds"] = results.get("train", {}).get("seconds")
    row["events_per_second"] = results.get("train", {}).get("events_per_second")
    row["trained_with"] = results.get("train", {}).get("trained_with")
    row["stop_reason"] = results.get("train", {}).get("stop_reason")
    row.update(results.get("metrics", {}))
    return row


def write_summary(workdir: str, rows: list[dict[str, Any]]) -> str:
    """Writes ``summary.csv`` atomically (one row per run; the union of all columns)."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    path = os.path.join(workdir, "summary.csv")

    def write(f):
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    files.write_atomic(path, write)
    return path
