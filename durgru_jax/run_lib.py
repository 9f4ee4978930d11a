"""What every run shares: its results files, its workdir lock, the rules of selection and stopping.

One copy for the single run (`train`), the vectorised sweep (`vsweep`), the CTR task
(`ctr.train`), the baselines and the benchmark:

* files: `write_json` (whole or not at all: `durgru_jax.files`), `write_config` and
  `write_results` (a run's ``config.json`` and ``results.json``, the latter stamped with
  `durgru_jax.provenance`; shared-data paths relative, `durgru_jax.shared_data`) and `Jsonl`
  (``metrics.jsonl``), raising `errors.RunWriteError` naming the file when a write fails;
  `jsonable` (numpy / JAX scalars and non-finite floats made JSON-safe);
* one run per workdir: `holding_workdir` / `locks_workdir` (`workdir_lock.WorkdirLock` held
  by the run's entry points);
* init-or-restore: `new_meta` (a run's progress record, saved beside its state in the
  checkpoints of `durgru_jax.checkpoints`);
* select-and-stop: `select_and_stop` (best validation metric, patience, held by the training
  floor `floor_reached`), `out_of_time`, `higher_is_better`, `stop_reason` (why a run ended)
  and `train_summary` (the ``train`` block of ``results.json``);
* the one non-finite-loss check: `check_finite` raising `NonFiniteLossError`.

The recommender run built from these (setup, the end of an epoch, the final test) is
`durgru_jax.lifecycle`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from absl import logging

from durgru_jax import files, parallel, provenance, shared_data
from durgru_jax.errors import UserError
from durgru_jax.workdir_lock import WorkdirLock

if TYPE_CHECKING:
    from durgru_jax.checkpoints import Checkpoints

# ------------------------------------------------------------------------------------ files


def jsonable(x: Any, *, exact: bool = False) -> Any:
    """``x`` with mappings, sequences, numpy arrays and numpy / JAX scalars made JSON-safe.

    Non-finite floats become strings (``"nan"``, ``"inf"``), and values JSON cannot hold pass
    through (``json.dump`` then names them). ``exact``, for data that is read back (the data
    cache's ``meta.json``): non-finite floats stay floats (JSON's ``NaN`` / ``Infinity``), and
    any value other than ``None``, bool, int, float or str raises `TypeError` naming it.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, exact=exact) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, exact=exact) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), exact=exact)
    if isinstance(x, (np.generic, jax.Array)):
        return jsonable(np.asarray(x).item(), exact=exact)
    if isinstance(x, float) and not math.isfinite(x) and not exact:
        return str(x)
    if exact and not (x is None or isinstance(x, (bool, int, float, str))):
        raise TypeError(f"a {type(x).__name__} is not JSON data: {x!r}")
    return x


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` to ``path`` atomically (`files.write_atomic`; process 0 only on a
    multi-host run)."""
    if not parallel.is_primary():
        return
    files.write_atomic(path, lambda f: json.dump(jsonable(obj), f, indent=2, sort_keys=True))


def write_config(workdir: str, config: Any) -> None:
    """Writes ``workdir/config.json``: the run's config, files of the shared data folder named
    relative to it (`shared_data.portable`)."""
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    write_json(os.path.join(workdir, "config.json"), shared_data.portable(jsonable(cfg)))


def write_results(workdir: str, results: dict[str, Any]) -> None:
    """Writes ``workdir/results.json``: ``results`` with its ``provenance`` (the commit, the
    machine and the libraries that made it, `durgru_jax.provenance`) added in place unless it
    has one (a run's results rewritten with its comparisons keep theirs); files of the shared
    data folder named relative to it (`shared_data.portable`)."""
    results.setdefault("provenance", provenance.provenance())
    write_json(os.path.join(workdir, "results.json"), shared_data.portable(jsonable(results)))


class Jsonl:
    """An append-only JSON-lines log (``metrics.jsonl``), one whole line per record
    (`files.append_whole`); process 0 writes."""

    def __init__(self, path: str):
        self.path = path

    def write(self, record: Mapping[str, Any]) -> None:
        if not parallel.is_primary():
            return
        files.append_whole(self.path, (json.dumps(jsonable(record)) + "\n").encode())


# --------------------------------------------------------------------- one run per workdir

_HELD: dict[str, list] = {}  # real path -> [WorkdirLock, depth]


@contextlib.contextmanager
def holding_workdir(workdir: str) -> Iterator[None]:
    """Holds the lock of ``workdir`` (`workdir_lock.WorkdirLock`: a second run on it is
    refused with `workdir_lock.WorkdirBusyError`, naming the workdir and the holder's pid).
    Process 0 holds it for a multi-host run. Re-entrant within a process: an entry point that
    calls another on the same workdir (`runner.run` -> `train.train_and_evaluate`) holds it
    once."""
    if not parallel.is_primary():
        yield
        return
    os.makedirs(workdir, exist_ok=True)
    key = os.path.realpath(workdir)
    if key in _HELD:
        _HELD[key][1] += 1
    else:
        _HELD[key] = [WorkdirLock(workdir).acquire(), 1]
    try:
        yield
    finally:
        _HELD[key][1] -= 1
        if not _HELD[key][1]:
            _HELD.pop(key)[0].release()


def locks_workdir(fn: Callable) -> Callable:
    """Decorator of a run's entry points: ``fn``'s ``workdir`` argument (a path), or each of
    its ``workdirs`` (a vectorised group), is held (`holding_workdir`) while ``fn`` runs,
    before it writes anything there."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        workdirs = [bound["workdir"]] if "workdir" in bound else list(bound["workdirs"])
        with contextlib.ExitStack() as stack:
            for w in workdirs:
                stack.enter_context(holding_workdir(w))
            return fn(*args, **kwargs)

    return locked


def eta(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------------ init-or-restore


def new_meta() -> dict[str, Any]:
    """A fresh run's progress record (saved with every ``ckpt/latest`` checkpoint).

    ``best_metric`` is the best selection score so far, negated for error metrics so that
    larger is always better (`higher_is_better`); ``bad_epochs`` counts the evaluations since.
    """
    return {
        "epoch": -1,
        "best_metric": -math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "train_seconds": 0.0,
        "train_events": 0,
        "done": False,
    }


# ------------------------------------------------------------------------ select-and-stop


def higher_is_better(metric: str) -> bool:
    """Error metrics (RMSE, MAE, log loss) are minimised, ranking metrics maximised."""
    return metric.split("/")[-1].split("@")[0] not in ("rmse", "mae", "logloss")


def select_and_stop(
    meta: dict[str, Any],
    valid: Mapping[str, float],
    *,
    select_metric: str,
    patience: int,
    epoch: int,
    on_best: Callable[[], None],
    log: Jsonl,
    record: Mapping[str, Any],
    who: str = "",
    floor_reached: bool = True,
) -> bool:
    """Model selection on one validation: logs ``record | valid``; if ``valid[select_metric]``
    beats ``meta["best_metric"]`` (strictly: a tie keeps the earlier best) records ``epoch`` as
    the best and calls ``on_best`` (save the state), else counts a bad evaluation. Returns
    whether ``patience`` bad evaluations in a row say stop. A missing or NaN metric is a bad
    evaluation.

    Before the training floor (``floor_reached`` false, see `floor_reached`) patience never
    stops the run: ``meta["floor_held"]`` records that it would have, and the bad evaluations
    go on counting, so the first evaluation past the floor without improvement stops."""
    log.write(dict(record) | dict(valid))
    value = valid.get(select_metric, math.nan)
    logging.info("%sepoch %d step %s %s %.4f", who, epoch, record.get("step"), select_metric,
                 value)  # fmt: skip
    score = value if higher_is_better(select_metric) else -value
    if score > meta["best_metric"]:
        meta.update(best_metric=score, best_epoch=epoch, bad_epochs=0)
        on_best()
        return False
    meta["bad_epochs"] += 1
    if meta["bad_epochs"] < patience:
        return False
    if not floor_reached:
        meta["floor_held"] = True
        logging.info("%s%s did not improve for %d evaluations; the training floor keeps the run "
                     "going", who, select_metric, meta["bad_epochs"])  # fmt: skip
        return False
    logging.info("%searly stop: %s did not improve for %d evaluations", who, select_metric,
                 meta["bad_epochs"])  # fmt: skip
    return True


def floor_reached(step: int, epochs_done: int, min_steps: int, min_epochs: int) -> bool:
    """Whether a run has trained its floor: ``min_steps`` steps and ``min_epochs`` epochs
    (``train.min_steps`` / ``train.min_epochs``; 0: no floor)."""
    return step >= min_steps and epochs_done >= min_epochs


# Why a run ended (``results.json``'s ``train.stop_reason``), in the order they are named when
# several hold at once.
STOP_REASONS = ("patience", "max_steps", "epochs", "time_budget")


def stop_reason(reason: str, meta: Mapping[str, Any], floor_reached: bool) -> str:
    """``reason`` (one of `STOP_REASONS`) as recorded: with " after floor" when the training
    floor held the run at least once against patience (``meta["floor_held"]``), with
    " before floor" when the run ended before its floor (only a time budget can)."""
    if reason not in STOP_REASONS:
        raise ValueError(f"unknown stop reason {reason!r}; expected one of {STOP_REASONS}")
    if not floor_reached:
        return f"{reason} before floor"
    return f"{reason} after floor" if meta.get("floor_held") else reason


def out_of_time(time_start: float, budget_s: float, who: str = "") -> bool:
    """Whether ``budget_s`` seconds (0: no limit) have passed since ``time_start``."""
    if budget_s and time.time() - time_start >= budget_s:
        logging.info("%stime budget of %.0f s reached", who, budget_s)
        return True
    return False


def train_summary(
    meta: Mapping[str, Any], *, steps: int, best_step: int | None, selected_on: str
) -> dict[str, Any]:
    """The ``train`` block of ``results.json``; ``stop_reason`` is `stop_reason`'s record
    (``meta["stop_reason"]``, "" if the run never recorded one)."""
    return {
        "seconds": meta["train_seconds"],
        "events": meta["train_events"],
        "events_per_second": meta["train_events"] / max(meta["train_seconds"], 1e-9),
        "steps": steps,
        "epochs": meta["epoch"] + 1,
        "best_epoch": meta["best_epoch"],
        "best_step": best_step,
        "selected_on": selected_on,
        "stop_reason": meta.get("stop_reason", ""),
        # runs trained as one vectorised group (1: alone); ``seconds`` is the group's
        "trained_with": int(meta.get("trained_with", 1)),
    }


# ------------------------------------------------------------------------ non-finite loss


class NonFiniteLossError(FloatingPointError, UserError):
    """Training produced a NaN or Inf loss (its message names the step and what to change:
    ``launch.py`` prints it as one line)."""


DEFAULT_HINT = "Try a lower optim.learning_rate or optim.clip_norm > 0."


def check_finite(
    finite: Any,
    *,
    step: int,
    epoch: int,
    loss: Any,
    ckpts: Checkpoints | None = None,
    who: str = "",
    hint: str = DEFAULT_HINT,
) -> None:
    """Raises `NonFiniteLossError` unless ``finite``: the run stops before any checkpoint of
    the broken state is written; the message names the step, the epoch, the last loss and,
    with ``ckpts``, the last good checkpoint kept in ``ckpt/latest``."""
    if bool(finite):
        return
    loss = float(loss) if loss is not None else math.nan
    message = f"{who}non-finite training loss by step {step} (epoch {epoch}; last loss {loss})"
    if ckpts is not None:
        kept = ckpts.latest.latest_step()
        message += "; stopped without saving the broken state: " + (
            f"the last good checkpoint (step {kept}) is kept in {ckpts.latest.directory}"
            if kept is not None
            else "no checkpoint had been written yet"
        )
    raise NonFiniteLossError(f"{message}. {hint}")
