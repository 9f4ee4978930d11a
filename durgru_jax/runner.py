"""The one dispatch of ``launch.py``: a report, a sweep, or one run by its task
(`dispatch`, `run`); one run of the recurrent model plus its declared comparison runs
(``config.compare``, `run_compared`); config overrides (`apply_override`)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import logging

from durgru_jax.base_config import apply_override
from durgru_jax.run_lib import locks_workdir, write_results
from durgru_jax.train import train_and_evaluate


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec.replace(",", "__"))


def dispatch(
    config: ml_collections.ConfigDict | None,
    workdir: str | None,
    *,
    sweep_path: str | None = None,
    vectorize: bool = True,
    max_vmap: int = 8,
    report: str | None = None,
    report_baseline: str | None = None,
) -> Any:
    """What ``launch.py`` does: ``report`` (a directory) writes the report of the sweeps in
    it, no training; ``sweep_path`` (the config file) runs the sweep it declares, each run
    through `run` (runs of the recurrent model differing only in seed / learning rate
    vectorised, ``max_vmap`` at a time); else `run`."""
    if report is not None:
        from durgru_jax import report as report_lib

        return report_lib.write_report(report, baseline=report_baseline)
    if sweep_path is not None:
        from durgru_jax import sweep

        return sweep.run_sweep(config, sweep_path, workdir, vectorize=vectorize, max_vmap=max_vmap)
    return run(config, workdir)


@locks_workdir
def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """One run of ``config`` in ``workdir`` (holding its lock: one run per workdir), by its
    task, the one place that dispatches on it:

    * ``config.task == "baseline"``: `durgru_jax.baselines.run` (so a sweep can mix the model
      with baselines, as ``configs/paper001.py`` does);
    * ``"ctr"``: the Criteo task, `durgru_jax.ctr.run`, or its preprocessing benchmark
      `durgru_jax.ctr.bench.run` (``config.bench.enabled``);
    * a ``config.bench`` group: the speed benchmark, `durgru_jax.bench.run` (or
      `durgru_jax.bench.run_data` with ``bench.data_config``);
    * else the recurrent model, `train.train_and_evaluate`, and each ``config.compare`` variant
      in ``workdir/compare/<variant>``, whose metrics join ``results.json`` (`run_compared`).
    """
    task = config.get("task", "")
    if task == "baseline":
        from durgru_jax.baselines import run as baselines

        return baselines.run(config, workdir)
    if task == "ctr":
        if config.get("bench") is not None and config.bench.get("enabled", False):
            from durgru_jax.ctr import bench as ctr_bench

            return ctr_bench.run(config, workdir)
        from durgru_jax import ctr

        return ctr.run(config, workdir)
    if config.get("bench", False):
        from durgru_jax import bench

        if "data_config" in config.bench:
            return bench.run_data(config, workdir)
        return bench.run(config, workdir)

    def train_one(configs, workdirs):
        return [train_and_evaluate(configs[0], workdirs[0])]

    return run_compared([config], [workdir], train_one)[0]


def run_compared(
    configs: Sequence[ml_collections.ConfigDict],
    workdirs: Sequence[str],
    train_many: Callable[[list, list], list[dict]],
) -> list[dict]:
    """``train_many(configs, workdirs)`` (one run alone, or a vectorised group: `vsweep`),
    then each ``config.compare`` variant of the runs (``"key=value,..."`` overrides), trained
    the same way in ``<workdir>/compare/<variant>``; the variants' metrics join each run's
    ``results.json`` under ``comparisons``."""
    results = train_many(list(configs), list(workdirs))
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
                apply_override(child, assignment)
            children.append(child)
        logging.info("comparison run: %s", spec)
        subs = train_many(children, [os.path.join(w, "compare", _slug(spec)) for w in workdirs])
        for comp, sub in zip(comparisons, subs, strict=True):
            comp[spec] = {"metrics": sub["metrics"], "train": sub["train"]}
    for res, comp, w in zip(results, comparisons, workdirs, strict=True):
        res["comparisons"] = comp
        write_results(w, res)
        logging.info(
            "comparisons: %s",
            json.dumps({k: v["metrics"].get("test/ndcg@10") for k, v in comp.items()}),
        )
    return results
