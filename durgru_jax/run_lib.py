"""What every run shares: its results files and the conventions of selection and stopping.

One copy for the single run (`train`), the vectorised sweep (`vsweep`), the CTR task
(`ctr.train`), the baselines and the benchmark:

* `write_json` (atomic: a temporary name, then a rename), `Jsonl` (``metrics.jsonl``),
  `jsonable` (numpy / JAX scalars and non-finite floats made JSON-safe);
* `higher_is_better`: which way a selection metric goes;
* `NonFiniteLossError` and its one message (`non_finite_message`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from durgru_jax import parallel


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or Inf loss."""


def non_finite_message(step: int, epoch: int, loss: Any, kept_step: int | None, where) -> str:
    """The message of a run stopped by a NaN/Inf loss; ``where`` is the checkpoint folder."""
    kept = (
        f"the last good checkpoint (step {kept_step}) is kept in {where}"
        if kept_step is not None
        else "no checkpoint had been written yet"
    )
    return (
        f"non-finite training loss by step {step} (epoch {epoch}; last loss {loss}); "
        f"stopped without saving the broken state: {kept}. "
        "Try a lower optim.learning_rate or optim.clip_norm > 0."
    )


def jsonable(x: Any) -> Any:
    """``x`` with mappings, sequences, numpy / JAX scalars and non-finite floats made JSON-safe."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.generic, jax.Array)):
        return jsonable(np.asarray(x).item())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def write_json(path: str, obj: Any) -> None:
    """Writes ``obj`` to ``path`` atomically (process 0 only on a multi-host run)."""
    if not parallel.is_primary():
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable(obj), f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class Jsonl:
    """An append-only JSON-lines log (``metrics.jsonl``); process 0 writes."""

    def __init__(self, path: str):
        self.path = path

    def write(self, record: Mapping[str, Any]) -> None:
        if not parallel.is_primary():
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable(record)) + "\n")


def eta(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def higher_is_better(metric: str) -> bool:
    """Error metrics (RMSE, MAE, log loss) are minimised, ranking metrics maximised."""
    return metric.split("/")[-1].split("@")[0] not in ("rmse", "mae", "logloss")
