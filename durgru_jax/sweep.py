"""Sweeps declared beside a config: ``python launch.py --config configs/x.py --sweep --workdir W``.

A config module may define ``sweep(add)``; each ``add(**overrides)`` call declares one run,
``overrides`` mapping dotted config keys to values, e.g.::

    def sweep(add):
        for lr in (1e-1, 1e-2, 1e-3, 1e-4):
            for seed in range(3):
                add(**{"optim.learning_rate": lr, "seed": seed})

Each run trains in its own sub-directory ``W/<name>`` (resuming there if it was interrupted,
skipped if its ``results.json`` exists) and ``W/summary.csv`` gets one row per finished run:
its overrides, seed, every metric and the training seconds. An interrupted sweep started again
with the same command continues where it stopped.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from durgru_jax import runner


def load_sweep(config_path: str) -> Callable[[Callable[..., None]], None]:
    """The ``sweep`` function of the config file ``path[:variant]``."""
    path, _, variant = config_path.partition(":")
    spec = importlib.util.spec_from_file_location("_durgru_sweep_config", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load config file {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "sweep", None)
    if fn is None:
        raise ValueError(f"{path} declares no sweep(add) function; --sweep needs one")
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
    """A directory name for a run: its overrides, ``key=value`` joined by ``,``."""
    if not overrides:
        return "base"
    parts = [f"{k}={_fmt(v)}" for k, v in sorted(overrides.items())]
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", ",".join(parts))


def _fmt(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "(" + "+".join(_fmt(x) for x in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


def apply(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]):
    """A copy of ``config`` with ``overrides`` set (unknown keys raise, naming the key)."""
    child = ml_collections.ConfigDict(config.to_dict())
    for key, value in overrides.items():
        runner.apply_override(child, f"{key}={_literal(value)}")
    return child


def _literal(v: Any) -> str:
    return repr(tuple(v)) if isinstance(v, (tuple, list)) else str(v)


def run_sweep(
    config: ml_collections.ConfigDict,
    config_path: str,
    workdir: str,
    train_fn: Callable[[ml_collections.ConfigDict, str], dict] | None = None,
) -> list[dict[str, Any]]:
    """Runs every declared run not finished yet, then (re)writes ``workdir/summary.csv``."""
    train_fn = train_fn or runner.run
    runs = expand(load_sweep(config_path))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "sweep.json"), "w") as f:
        json.dump({"config": config_path, "runs": runs}, f, indent=2, default=str)
    rows = []
    for i, overrides in enumerate(runs):
        name = run_name(overrides)
        sub = os.path.join(workdir, name)
        results_path = os.path.join(sub, "results.json")
        if os.path.exists(results_path):
            logging.info("sweep run %d/%d %s: finished before, skipped", i + 1, len(runs), name)
        else:
            logging.info("sweep run %d/%d %s", i + 1, len(runs), name)
            train_fn(apply(config, overrides), sub)
        with open(results_path) as f:
            results = json.load(f)
        rows.append(_row(name, overrides, apply(config, overrides), results))
        write_summary(workdir, rows)
    return rows


def _row(name, overrides, config, results) -> dict[str, Any]:
    row: dict[str, Any] = {"run": name, "overrides": json.dumps(overrides, default=str)}
    row["seed"] = int(config.seed)
    row["seconds"] = results.get("train", {}).get("seconds")
    row["events_per_second"] = results.get("train", {}).get("events_per_second")
    row.update(results.get("metrics", {}))
    return row


def write_summary(workdir: str, rows: list[dict[str, Any]]) -> str:
    """Writes ``summary.csv`` atomically (one row per run; the union of all columns)."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    path = os.path.join(workdir, "summary.csv")
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path
