"""How well the explanations find the synthetic data's noise clicks, and how fast they are.

``python benchmarks/explain_noise_auc.py --workdir W [--users 500] [--out W/explain_auc.json]``

``W`` is a finished run on the synthetic source (`durgru_jax.data.synthetic`: a noise click is
an item off the user's topic walk with a short dwell; the generator's ``_is_noise`` column is
the truth). For each of the first ``--users`` test users (leave-one-out: the history is every
event but the held-out last one), `Recommender.explain` over the visible history (the last
``max_len`` events) gives per event the duration factor (eq. 9), the mean update gate, and
occlusion attributions for the model's top recommendation and for the item the user really
clicked next. ROC AUC with noise = positive, over all those events:

* ``duration_factor``: score ``-factor`` (a noise click is short for its user, so its factor
  is low);
* ``update_gate``: score ``-gate`` (GRU: the share of new knowledge taken from the event; for
  the aGRU's eq. (7) gate, the share of the *old* state, the meaningful sign is the other one:
  read ``1 - AUC``);
* ``attribution_top`` / ``attribution_next``: score = the attribution itself, the score change
  when the event is removed (a genuine click supports the recommendation, so removing it lowers
  the score: negative; a noise click supports nothing: about 0 or positive);
* ``abs_attribution_top`` / ``abs_attribution_next``: score ``-|attribution|`` (a noise click
  the model learned to ignore moves no score either way);
* the same over each history's last ``--recent`` events only (``..._last5``): a recurrent
  state forgets, so the older events' attributions are all about 0, noise or not.

Speed: one user of ``--speed_events`` events (the synthetic users' events in a row) explained
with the window widened to all of them (``max_len`` = ``--speed_events``: that many occluded
histories in the one batch), median of 5 after a warm-up call that compiles; the CPU model is
reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import time

import numpy as np
import pandas as pd

from durgru_jax import explain_cli
from durgru_jax.explain import NOISE, roc_auc
from durgru_jax.recommend import Recommender


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def collect(rec: Recommender, events: pd.DataFrame, n_users: int) -> pd.DataFrame:
    """Per visible event of each test user's history: truth and the explanation's numbers."""
    events = events.sort_values(["user", "timestamp"], kind="stable")
    parts = []
    for who in events["user"].unique()[:n_users]:
        ev = events[events["user"] == who]
        hist, target = ev.iloc[:-1], ev["item"].iloc[-1]
        top = rec.recommend(hist, k=1, user=who).items[0]
        items = [top] if target == top else [top, target]
        ex = rec.explain(hist, items, user=who)
        t = ex.events[["is_noise", "duration_factor", "update_gate"]].copy()
        t["attribution_top"] = ex.attribution[:, 0]
        t["attribution_next"] = ex.attribution[:, -1]
        parts.append(t.assign(user=who, from_end=np.arange(len(t))[::-1]))
    return pd.concat(parts, ignore_index=True)


def aucs(t: pd.DataFrame, recent: int) -> dict[str, float]:
    noise = t["is_noise"].to_numpy(bool)
    last = t[t["from_end"] < recent]
    return {
        f"attribution_top_last{recent}": roc_auc(last["is_noise"], last["attribution_top"]),
        f"abs_attribution_top_last{recent}": roc_auc(
            last["is_noise"], -last["attribution_top"].abs()
        ),
        "duration_factor": roc_auc(noise, -t["duration_factor"]),
        "update_gate": roc_auc(noise, -t["update_gate"]),
        "attribution_top": roc_auc(noise, t["attribution_top"]),
        "attribution_next": roc_auc(noise, t["attribution_next"]),
        "abs_attribution_top": roc_auc(noise, -t["attribution_top"].abs()),
        "abs_attribution_next": roc_auc(noise, -t["attribution_next"].abs()),
    }


def speed(rec: Recommender, events: pd.DataFrame, n_events: int) -> dict[str, float]:
    """Seconds to explain one user of ``n_events`` events, all of them visible."""
    ev = events.sort_values(["user", "timestamp"], kind="stable").head(n_events).copy()
    ev["timestamp"] = np.arange(len(ev), dtype=np.float64) * 60.0  # one user's, in a row
    ev["user"] = "speed"
    art = rec.artifacts
    wide = dataclasses.replace(art, data_config={**art.data_config, "max_len": n_events})
    r = Recommender(rec.params, wide)
    items = r.recommend(ev, k=3).items
    r.explain(ev, items)  # compiles
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ex = r.explain(ev, items)
        times.append(time.perf_counter() - t0)
    assert len(ex.events) == n_events, len(ex.events)
    return {"n_events": n_events, "median_s": float(np.median(times)), "min_s": min(times)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--users", type=int, default=500, help="test users explained")
    ap.add_argument("--speed_events", type=int, default=200)
    ap.add_argument("--recent", type=int, default=5, help="also AUCs over each last N events")
    ap.add_argument("--out", default=None, help="JSON (default: WORKDIR/explain_auc.json)")
    args = ap.parse_args()
    rec = Recommender.load(args.workdir)
    events = explain_cli.training_events(rec)
    if NOISE not in events.columns:
        raise SystemExit(f"{args.workdir}: the run's data has no {NOISE} column")
    t0 = time.perf_counter()
    table = collect(rec, events, args.users)
    res = {
        "workdir": args.workdir,
        "cell": rec.rc.model.cell,
        "duration_mode": rec.rc.model.duration_mode,
        "users": int(table["user"].nunique()),
        "events": len(table),
        "noise_share": float(table["is_noise"].mean()),
        "auc": aucs(table, args.recent),
        "collect_s": time.perf_counter() - t0,
        "speed": speed(rec, events, args.speed_events),
        "cpu": cpu_model(),
    }
    print(json.dumps(res, indent=1))
    out = args.out or os.path.join(args.workdir, "explain_auc.json")
    tmp = f"{out}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
