"""``python launch.py --explain --workdir W --users U1,U2 --k 3 --out DIR``.

For each user of the training data (their full history, read from the run's data as training
read it) the top-``k`` recommendations (`Recommender.recommend`) and their explanation
(`durgru_jax.explain`): ``DIR/explanations.json`` and ``DIR/explanations.md`` with one PNG
timeline per user (``DIR/timeline_<n>.png``: bars the attribution of the top item per event,
a line the duration factor, noise clicks marked where the data know them). Files are written
atomically.

``explanations.json``::

    {"workdir": W, "k": 3, "users": [
      {"user": U, "events": [{"item", "timestamp", "duration", "duration_factor",
                              "update_gate", "relevance", ["is_noise"]}, ...],
       "recommendations": [{"item", "score", "rank", "attribution": [per event],
                            "rank_change": [per event]}, ...]}, ...]}

``null`` stands for a missing value (no duration; no relevance weight outside the aGRU).
"""

from __future__ import annotations

import json
import os

import numpy as np

from durgru_jax import recommend_inputs as inputs
from durgru_jax import shared_data
from durgru_jax.data import sources
from durgru_jax.explain import Explanation
from durgru_jax.recommend import Recommender

SCHEMA_EVENT = ("item", "timestamp", "duration", "duration_factor", "update_gate", "relevance")
SCHEMA_REC = ("item", "score", "rank", "attribution", "rank_change")


def _atomic_write(path: str, write) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    _atomic_write(path, write)


def training_events(rec: Recommender):
    """The run's event table as training read it (the ground-truth columns kept)."""
    data_cfg = dict(rec.artifacts.data_config)
    path = shared_data.expand(data_cfg.get("path"))
    if data_cfg["source"] != "synthetic" and path and not os.path.exists(path):
        raise FileNotFoundError(f"the run's data file {path!r} is gone: --explain needs it")
    events, _ = sources.load_events(data_cfg)
    return events


def explain_users(rec: Recommender, users: list[str], k: int) -> list[Explanation]:
    """Explanations of the top-``k`` of each of ``users`` (ids as text, or the run's ids)."""
    events = training_events(rec)
    ids = inputs.coerce_ids(np.asarray(users, dtype=object), rec.artifacts.user_ids)
    unknown = [
        u
        for u, i in zip(users, ids, strict=True)
        if rec.artifacts.user_index.get_indexer([i])[0] < 0
    ]
    if unknown:
        raise ValueError(f"--users: not users of the run's training data: {unknown}")
    out = []
    for who in ids:
        ev = events[events["user"] == who]
        top = rec.recommend(ev, k=k, user=who)
        out.append(rec.explain(ev, top.items, user=who))
    return out


def _timeline(ex: Explanation, path: str) -> None:
    from durgru_jax.report import _figure_class

    ev = ex.events
    x = np.arange(len(ev))
    fig = _figure_class()(figsize=(9, 3.6), layout="constrained")
    ax = fig.subplots()
    att = ex.attribution[:, 0]
    noise = ev["is_noise"].to_numpy(bool) if "is_noise" in ev else np.zeros(len(ev), bool)
    ax.bar(x[~noise], att[~noise], color="tab:blue", label="attribution (genuine)")
    if noise.any():
        ax.bar(x[noise], att[noise], color="tab:red", label="attribution (noise)")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("event index in the visible history (oldest first)")
    ax.set_ylabel(f"score change without the event\n(top item {ex.items[0]})")
    ax2 = ax.twinx()
    ax2.plot(x, ev["duration_factor"], color="tab:green", marker=".", label="duration factor")
    if noise.any():
        f = ev["duration_factor"].to_numpy()
        ax2.scatter(x[noise], f[noise], marker="x", color="tab:red", zorder=3, label="noise click")
    ax2.set_ylabel("duration factor (eq. 9)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.set_title(f"user {ex.user}")
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _markdown(exps: list[Explanation], figures: list[str], workdir: str, k: int) -> str:
    lines = [f"# Explanations of the top-{k} of {workdir}", ""]
    for ex, fig in zip(exps, figures, strict=True):
        lines += [f"## User {ex.user}", "", "| rank | item | score |", "|---|---|---|"]
        lines += [
            f"| {int(r)} | {it} | {s:.4f} |"
            for it, s, r in zip(ex.items, ex.scores, ex.ranks, strict=True)
        ]
        att = ex.attribution[:, 0]
        top = np.argsort(att, kind="stable")[:3]
        lines += ["", f"Events supporting item {ex.items[0]} most (score change when removed):", ""]
        lines += [
            f"* event {int(e)}: item {ex.events['item'].iloc[e]}, "
            f"duration factor {ex.events['duration_factor'].iloc[e]:.3f}, {att[e]:+.4f}"
            for e in top
        ]
        lines += ["", f"![timeline of user {ex.user}]({fig})", ""]
    return "\n".join(lines)


def explain(workdir: str, users: str, k: int, out: str) -> None:
    """The ``--explain`` command."""
    if not out:
        raise ValueError("--explain needs --out DIR")
    names = [u.strip() for u in (users or "").split(",") if u.strip()]
    if not names:
        raise ValueError("--explain needs --users U1,U2,...")
    rec = Recommender.load(workdir)
    exps = explain_users(rec, names, k)
    os.makedirs(out, exist_ok=True)
    doc = {"workdir": workdir, "k": k, "users": [e.to_dict() for e in exps]}
    text = json.dumps(doc, indent=1, allow_nan=False)
    _write_text(os.path.join(out, "explanations.json"), text)
    figures = []
    for n, ex in enumerate(exps):
        figures.append(f"timeline_{n}.png")
        _timeline(ex, os.path.join(out, figures[-1]))
    md = _markdown(exps, figures, workdir, k)
    _write_text(os.path.join(out, "explanations.md"), md)
