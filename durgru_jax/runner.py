"""One run plus its declared comparison runs (``config.compare``)."""

from __future__ import annotations

import ast
import json
import os
import re

import ml_collections
from absl import logging

from durgru_jax.run_lib import write_json
from durgru_jax.train import train_and_evaluate


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """Sets ``a.b.c=value`` on ``config``, casting ``value`` to the field's current type."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} is not of the form key=value")
    key, raw = (s.strip() for s in assignment.split("=", 1))
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise KeyError(
                f"unknown config key {'.'.join(parents[: i + 1])!r} in override {assignment!r}"
            )
        node = node[part]
    if leaf not in node:
        raise KeyError(f"unknown config key {key!r} in override {assignment!r}")
    current = node[leaf]
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"override {assignment!r}: expected a boolean")
        value = raw.lower() in ("true", "1")
    elif isinstance(current, (int, float)):
        value = ast.literal_eval(raw)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or (isinstance(current, int) and value != int(value)):
            raise ValueError(
                f"override {assignment!r}: expected {type(current).__name__}, got {raw!r}"
            )
        value = type(current)(value)
    elif isinstance(current, (tuple, list)):
        value = tuple(ast.literal_eval(raw))
    else:
        value = raw
    node[leaf] = value


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec.replace(",", "__"))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` and each ``config.compare`` variant in
    ``workdir/compare/<variant>``; the variants' metrics join ``results.json``.

    ``config.task`` "baseline" / "ctr" hand the config to those runners instead (so a sweep
    can mix the model with baselines, as ``configs/paper001.py`` does)."""
    task = config.get("task", "")
    if task == "baseline":
        from durgru_jax.baselines import run as baselines

        return baselines.run(config, workdir)
    if task == "ctr":
        from durgru_jax import ctr

        return ctr.run(config, workdir)
    results = train_and_evaluate(config, workdir)
    specs = tuple(config.get("compare", ()))
    if not specs:
        return results
    comparisons = {}
    for spec in specs:
        child = ml_collections.ConfigDict(config.to_dict())
        child.compare = ()
        for assignment in spec.split(","):
            apply_override(child, assignment)
        logging.info("comparison run: %s", spec)
        sub = train_and_evaluate(child, os.path.join(workdir, "compare", _slug(spec)))
        comparisons[spec] = {"metrics": sub["metrics"], "train": sub["train"]}
    results["comparisons"] = comparisons
    write_json(os.path.join(workdir, "results.json"), results)
    logging.info(
        "comparisons: %s",
        json.dumps({k: v["metrics"].get("test/ndcg@10") for k, v in comparisons.items()}),
    )
    return results
