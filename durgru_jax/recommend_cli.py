"""``python launch.py --recommend`` and ``--export``: the commands around `recommend`.

``--recommend --workdir W --k 10 --out recs.csv [--events FILE] [--noexclude_seen]`` writes one
row per recommendation, ``user, rank, item, score`` in original ids (CSV, TSV or Parquet by
the extension of ``--out``; ranks 1..k, scores non-increasing), atomically:

* without ``--events``: every user of the training data, from their full history (the run's
  prepared data, through the data cache; the data file must still exist);
* with ``--events FILE``: the users of FILE, read by the run's reader with its column options
  (``config.data``: source, columns, separator, timestamp unit; a synthetic run reads FILE as a
  CSV/TSV/Parquet table with the canonical column names).

For a CTR run (``config.task == "ctr"``) ``--events`` names a Criteo-format file and the output
has one click probability per row (`durgru_jax.ctr.serve`).
"""

from __future__ import annotations

import json
import os
import time

import pandas as pd
from absl import logging

from durgru_jax.artifacts import Artifacts
from durgru_jax.data import sources


def write_table(frame: pd.DataFrame, out: str) -> None:
    """Writes ``frame`` to ``out`` atomically: Parquet for ``.parquet``/``.pq``, TSV for
    ``.tsv``, else CSV."""
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(out)}.tmp-{os.getpid()}")
    try:
        if out.endswith((".parquet", ".pq")):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if out.endswith(".tsv") else ",")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_events(art: Artifacts, path: str) -> pd.DataFrame:
    """The events of ``path`` read as the run read its training file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--events {path}: no such file")
    data_cfg = dict(art.data_config) | {"path": path}
    if data_cfg["source"] == "synthetic":  # no file format of its own: a canonical table
        data_cfg["source"] = "csv"
    events, _ = sources.load_events(data_cfg)
    return events[[c for c in events.columns if not str(c).startswith("_")]]


def _task(workdir: str) -> str:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir}: no config.json, so no run here")
    with open(path) as f:
        return json.load(f).get("task", "")


def recommend(
    workdir: str, out: str, k: int = 10, events: str | None = None, exclude_seen: bool = True
) -> dict:
    """The ``--recommend`` command; returns (and logs) what it did."""
    if not out:
        raise ValueError("--recommend needs --out FILE (.csv, .tsv or .parquet)")
    if k < 1:
        raise ValueError(f"--k={k} must be >= 1")
    if _task(workdir) == "ctr":
        from durgru_jax.ctr import serve

        if not events:
            raise ValueError("a CTR run scores the rows of a Criteo-format file: give --events")
        return serve.score_file(workdir, events, out)
    from durgru_jax.recommend import Recommender

    rec = Recommender.load(workdir)
    t0 = time.perf_counter()
    if events:
        frame = read_events(rec.artifacts, events)
        t_read = time.perf_counter()
        result = rec.recommend_many(frame, k=k, exclude_seen=exclude_seen)
    else:
        t_read = t0
        result = rec.recommend_training_users(k=k, exclude_seen=exclude_seen)
    t_rec = time.perf_counter()
    write_table(result.table, out)
    u = result.users
    summary = {
        "out": out,
        "users": int(len(u)),
        "rows": int(len(result.table)),
        "popularity_fallback": int((u["fallback"] != "").sum()),
        "unknown_events_dropped": int(u["n_unknown_dropped"].sum()),
        "users_resorted": int(u["resorted"].sum()),
        "read_seconds": t_read - t0,
        "recommend_seconds": t_rec - t_read,
        "users_per_second": len(u) / max(t_rec - t_read, 1e-9),
    }
    logging.info("recommendations: %s", json.dumps(summary))
    return summary


def export(workdir: str, out: str) -> dict:
    """The ``--export`` command (`durgru_jax.model_export.export_run`)."""
    if not out:
        raise ValueError("--export needs --out DIR")
    from durgru_jax import model_export

    return model_export.export_run(workdir, out)
