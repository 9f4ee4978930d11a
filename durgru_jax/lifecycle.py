"""The lifecycle of one recommender run, shared by the single run (`durgru_jax.train`) and the
vectorised sweep (`durgru_jax.vsweep`, K stacked runs each living this lifecycle).

* `setup`: the data, the typed config and, with a workdir, the run's files (``config.json``,
  ``metrics.jsonl``, `checkpoints.Checkpoints`); `init_params` / `new_state`: the train state a
  fresh run starts from (`checkpoints.Checkpoints.restore` then resumes a saved one);
* `validate_along`: validation records every ``train.eval_every_steps`` steps;
* `check_data` / `check_floor` (in `setup`): what preparation kept is logged, and a run with
  too little data (``data.min_train_events``, ``data.min_eval_examples``) or a schedule that
  cannot reach its training floor (``train.min_steps``) stops before training, naming why;
* `end_of_epoch`: the epoch's bookkeeping, validation and model selection
  (`run_lib.select_and_stop`, held by the training floor), the ``max_steps`` / time-budget
  stops, why the run ended (``meta["stop_reason"]``), the ``ckpt/latest`` save;
* `finish`: valid and test metrics of the best checkpoint, the popularity baseline,
  ``results.json`` and the final ``metrics.jsonl`` line.

The test set is evaluated once, in `finish`, never for a decision.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from durgru_jax import checkpoints, parallel, repeat, run_lib
from durgru_jax import model as model_lib
from durgru_jax.artifacts import save_artifacts
from durgru_jax.config import ConfigError, RunConfig, TrainConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data import funnel
from durgru_jax.data.sources import load_prepared, prep_config
from durgru_jax.evaluate import evaluate, evaluate_popularity


@dataclasses.dataclass
class Run:
    """One run: its config, data, files and progress (``meta``, see `run_lib.new_meta`)."""

    config: Any
    workdir: str
    rc: RunConfig
    prepared: Any
    windows: dict[str, np.ndarray]
    valid_ex: dict[str, np.ndarray]
    test_ex: dict[str, np.ndarray]
    steps_per_epoch: int
    total_steps: int
    log: run_lib.Jsonl | None = None
    ckpts: checkpoints.Checkpoints | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=run_lib.new_meta)
    error: str = ""  # why a run of a vectorised group stopped alone (non-finite loss)
    who: str = ""  # prefix of its log lines ("" for a run alone)

    @property
    def n_items(self) -> int:
        return self.prepared.n_items

    def close(self) -> None:
        if self.ckpts is not None:
            self.ckpts.close()


def setup(config, workdir: str | None, who: str = "") -> Run:
    """Data and typed config of ``config``'s run; with ``workdir``, also its files (the config
    written, the metrics log and the checkpoint managers opened). Raises before any training
    when too little data remains (`check_data`) or the floor is out of reach (`check_floor`)."""
    log = None
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        run_lib.write_config(workdir, config)
        log = run_lib.Jsonl(os.path.join(workdir, "metrics.jsonl"))
    p = load_prepared(config.data, seed=int(config.seed))
    logging.info("data: %s", json.dumps(run_lib.jsonable(p.info)))
    if not p.has_durations and config.model.duration_mode != "none":
        logging.warning(
            "the data has no durations (source: %s): every duration factor is neutral "
            "(%g), so duration_mode=%s cannot use durations here",
            p.info.get("duration_source"),
            0.5 * float(config.model.duration_scale),
            config.model.duration_mode,
        )
    agru = config.model.cell == "agru"
    rc = from_config(
        config,
        n_items=p.n_items,
        n_input_contexts=p.n_input_contexts if agru else 1,
        # the gap rows of model.gap_input are the transfer contexts (time-gap buckets)
        n_transfer_contexts=p.n_transfer_contexts if agru or config.model.gap_input else 1,
        rating_head=p.has_ratings and float(config.loss.rating_weight) > 0,
        max_len=int(config.data.max_len),
    )
    drop = rc.eval.unknown_targets == "drop"
    valid_ex = ds.eval_examples(p, "valid", drop_unknown=drop)
    test_ex = ds.eval_examples(p, "test", drop_unknown=drop)
    check_data(p, prep_config(config.data, int(config.seed)), valid_ex, test_ex, who)
    windows = ds.train_windows(p, pack=bool(config.data.get("pack", True)))
    steps_per_epoch = ds.n_train_batches(windows, rc.train.batch_size)
    total_steps = steps_per_epoch * rc.train.epochs
    if rc.train.max_steps:
        total_steps = min(total_steps, rc.train.max_steps)
    check_floor(rc.train, p, len(windows["items"]), steps_per_epoch, total_steps)
    return Run(
        config=config,
        workdir=workdir or "",
        rc=rc,
        prepared=p,
        windows=windows,
        valid_ex=valid_ex,
        test_ex=test_ex,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        log=log,
        ckpts=checkpoints.Checkpoints(workdir) if workdir is not None else None,
        who=who,
    )


def check_data(p, prep: ds.PrepConfig, valid_ex, test_ex, who: str = "") -> None:
    """Logs what preparation kept (`funnel.summary`) and stops the run when too little remains
    (`funnel.check_enough`, thresholds ``data.min_train_events`` / ``min_eval_examples``)."""
    examples = {"valid": len(valid_ex["target"]), "test": len(test_ex["target"])}
    logging.info("%sdata kept: %s", who, funnel.summary(p.info, examples))
    funnel.check_enough(
        p.info,
        examples,
        min_train_events=prep.min_train_events,
        min_eval_examples=prep.min_eval_examples,
    )


def check_floor(tc: TrainConfig, p, rows: int, steps_per_epoch: int, total_steps: int) -> None:
    """Stops the run at setup when its schedule cannot reach the training floor
    (``train.min_steps``, ``train.min_epochs``): no results.json comes from a run that the
    epochs or ``max_steps`` ended below its floor."""
    epochs = -(-total_steps // max(steps_per_epoch, 1))  # the last may be cut by max_steps
    if tc.min_steps <= total_steps and tc.min_epochs <= epochs:
        return
    cap = f"train.epochs={tc.epochs}"
    if tc.max_steps and tc.max_steps < steps_per_epoch * tc.epochs:
        cap = f"train.max_steps={tc.max_steps}"
    raise ConfigError(
        f"the training floor (config.train.min_steps={tc.min_steps}, min_epochs="
        f"{tc.min_epochs}) cannot be reached: this run has at most {total_steps} steps in "
        f"{epochs} epochs ({cap}; {steps_per_epoch} step{'s' * (steps_per_epoch != 1)} per "
        f"epoch: {rows:,} rows of training windows from {p.info['n_train']:,} training events, "
        f"train.batch_size={tc.batch_size}){funnel.worst_filter(p.info.get('funnel', ()))}. "
        "Raise train.epochs, lower train.batch_size or the floor, or keep more data (for a "
        "small sample of a dataset, its config's 'sample' variant). Kept: " + funnel.summary(p.info)
    )


def init_params(run: Run):
    """The run's initial parameters (seed ``rc.seed``)."""
    rc, p = run.rc, run.prepared
    return model_lib.init_params(
        rc.model,
        rc.seed,
        p.log_popularity if rc.model.init_bias_from_popularity else None,
        ds.train_rating_mean(p),
        repeat.window_repeat_rate(run.windows) if rc.model.repeat_head else None,
    )


def new_state(params, tx: optax.GradientTransformation) -> dict[str, Any]:
    """The train state of `train.make_train_step` at step 0: ``finite`` turns False for good
    at the first NaN/Inf loss."""
    return {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "finite": jnp.asarray(True),
    }


def log_train(run: Run, step: int, epoch: int, rate: float, parts: Mapping[str, Any]) -> dict:
    """Writes the ``metrics.jsonl`` record of training progress; returns the losses (floats)."""
    losses = {k: float(v) for k, v in parts.items()}
    run.log.write(
        {"step": step, "epoch": epoch, "events_per_second": rate}
        | {f"train/{k}": v for k, v in losses.items()}
    )
    return losses


def validate_along(state, members: Sequence[tuple[Run, Any, int, int]], t0: float) -> float:
    """Validation records for metric-vs-iteration curves (``train.eval_every_steps``) of each
    ``(run, params, step, epoch)``, stamped with its training seconds so far
    (``train_seconds``: evaluation excluded, for time-to-accuracy curves; ``t0`` is when the
    epoch's training started). Returns the seconds spent, kept out of the training time."""
    jax.block_until_ready(state["params"])  # pending training steps are not evaluation time
    t = time.time()
    for run, params, step, epoch in members:
        valid = evaluate(params, run.rc, run.valid_ex, run.n_items, "valid")
        trained = run.meta["train_seconds"] + t - t0
        run.log.write({"step": step, "epoch": epoch, "train_seconds": trained} | valid)
    return time.time() - t


def end_of_epoch(
    run: Run, state, *, step: int, epoch: int, seconds: float, events: int, time_start: float
) -> bool:
    """Books a finished (finite) epoch in ``run.meta``; validates when due
    (``train.eval_every_epochs``, the last epoch, a ``max_steps`` stop), keeping the best
    state in ``ckpt/best`` and stopping after ``train.patience`` evaluations without
    improvement, though never before the training floor (``train.min_steps`` and
    ``train.min_epochs``); stops at ``train.max_steps`` or after ``train.time_budget_s``;
    records why the run ends (``meta["stop_reason"]``, `run_lib.stop_reason`; "" while it
    goes on); saves ``ckpt/latest``. Returns whether the run is done."""
    tc, meta = run.rc.train, run.meta
    meta["train_seconds"] += seconds
    meta["train_events"] += events
    meta["epoch"] = epoch
    at_max = bool(tc.max_steps and step >= tc.max_steps)
    floor = run_lib.floor_reached(step, epoch + 1, tc.min_steps, tc.min_epochs)
    patience = False
    if (epoch + 1) % tc.eval_every_epochs == 0 or at_max or epoch + 1 == tc.epochs:
        valid = evaluate(state["params"], run.rc, run.valid_ex, run.n_items, "valid")
        sel = tc.select_metric
        if sel not in valid:
            raise KeyError(f"config.train.select_metric={sel!r} is not among {sorted(valid)}")
        patience = run_lib.select_and_stop(
            meta,
            valid,
            select_metric=sel,
            patience=tc.patience,
            epoch=epoch,
            on_best=lambda: run.ckpts.save_best(step, state, epoch),
            log=run.log,
            record={"step": step, "epoch": epoch},
            who=run.who,
            floor_reached=floor,
        )
    late = run_lib.out_of_time(time_start, tc.time_budget_s, run.who)
    stop = parallel.agree(patience or at_max or late)  # multi-host: process 0's clock decides
    # The first that holds names the end; "time_budget" is what is left of a stop.
    ends = {"patience": patience, "max_steps": at_max, "epochs": epoch + 1 >= tc.epochs}
    reason = next((r for r, hit in ends.items() if hit), "time_budget" if stop else "")
    meta["stop_reason"] = run_lib.stop_reason(reason, meta, floor) if reason else ""
    meta["done"] = stop
    run.ckpts.save_latest(step, state, meta)
    return stop


def finish(run: Run, state) -> dict:
    """Final evaluation of the best checkpoint (the last state if validation never ran) on
    valid and test, with the popularity baseline; writes ``results.json`` and the final
    ``metrics.jsonl`` line; returns the results."""
    rc, p = run.rc, run.prepared
    params, best_step = run.ckpts.best_params(state, run.meta["best_epoch"])
    metrics = {}
    metrics.update(evaluate(params, rc, run.valid_ex, p.n_items, "valid"))
    metrics.update(evaluate(params, rc, run.test_ex, p.n_items, "test"))
    pop = {}
    pop.update(evaluate_popularity(p.log_popularity, rc, run.valid_ex, p.n_items, "valid"))
    pop.update(evaluate_popularity(p.log_popularity, rc, run.test_ex, p.n_items, "test"))
    steps = int(state["step"])
    results = {
        "metrics": metrics,
        "train": run_lib.train_summary(
            run.meta, steps=steps, best_step=best_step, selected_on=rc.train.select_metric
        ),
        "baselines": {"most_popular": pop},
        "data": p.info,
        "model": dataclasses.asdict(rc.model),
    }
    # Before results.json: a finished run can recommend (`durgru_jax.recommend`).
    save_artifacts(run.workdir, run.config, p, rc)
    run_lib.write_results(run.workdir, results)
    run.log.write({"step": steps, "final": True} | metrics)
    return results
