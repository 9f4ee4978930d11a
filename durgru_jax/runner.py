"""One run plus its declared comparison runs (``config.compare``)."""

from __future__ import annotations

import json
import os
import re

import ml_collections
from absl import logging

from durgru_jax.base_config import apply_override
from durgru_jax.run_lib import write_json
from durgru_jax.train import train_and_evaluate


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
