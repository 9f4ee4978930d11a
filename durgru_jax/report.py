"""Sweep directories as a Markdown report with tables and PNG figures.

``python launch.py --report W [--report_baseline=GROUP]`` reads the sweep in ``W``
(``sweep.json``, ``summary.csv`` and each run's ``config.json``, ``results.json`` and
``metrics.jsonl``), or every sweep one level below ``W`` (one per dataset, e.g. ``W/ml100k``,
``W/criteo``), and writes ``W/report.md`` beside PNG figures in ``W``:

* runs grouped by their overrides minus the seed: mean ± sample standard deviation (ddof 1)
  over seeds of the test metrics and the training seconds;
* each group's difference from a reference group (the first declared, or ``baseline``) with a
  two-sided t-test over seeds (`durgru_jax.stats`, no scipy): paired when both groups ran the
  same seeds, else Welch's;
* the analogues of paper 000's Tables 3 (Criteo) and 4 (MovieLens-1M) with the paper's numbers
  beside ours, when the runs are CTR runs or MovieLens-1M rating runs;
* one bar chart per compared test metric (mean ± std over seeds, * where a group differs
  from the reference with p < 0.05);
* Figure 4 (validation metric vs iterations, every group), Figure 5 (one line per
  learning rate), the hidden-size figure (test metric vs hidden size) and Figure 6 (training
  seconds per group), one panel per dataset. The curves come from the validation records of
  ``metrics.jsonl`` (``train.eval_every_steps`` adds them between epochs). The metric is the
  RMSE for rating and CTR runs, as in the paper, else the runs' ``train.select_metric``.

Figures need matplotlib (``pip install -e '.[figures]'``), imported only when they are drawn.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from durgru_jax.files import write_atomic
from durgru_jax.stats import TTest, mean_std, paired_t_test, welch_t_test
from durgru_jax.sweep import run_name

# Paper 000, Section 4.4: (method, RMSE, MAE).
PAPER_TABLE3_CRITEO = (
    ("Ref. [28]", 0.8167, 0.6349),
    ("Ref. [29]", 0.8138, 0.6274),
    ("Proposed method", 0.7257, 0.5147),
)
PAPER_TABLE4_ML1M = (
    ("Ref. [28]", 0.8630, 0.6741),
    ("Ref. [29]", 0.8454, 0.6680),
    ("Proposed method", 0.7869, 0.5893),
)
_NOTE_CRITEO = (
    "Not comparable. Our RMSE/MAE are of the predicted click probability against the 0/1 label "
    "(temporal 80/10/10 split by file order); predicting 0.5 everywhere already gives RMSE 0.5, "
    "so the paper's 0.7257 cannot be such an error, and the paper states neither its split nor "
    "what its RMSE is taken over. Refs. [28] and [29] are quoted from the paper, not re-run."
)
_NOTE_ML1M = (
    "Indicative only. Ours: rating of each held-out rating predicted from the user's earlier "
    "ratings (rating head), random 81/9/10 split of the ratings, test metrics of the best "
    "validation-RMSE checkpoint. The paper does not state its split or protocol, and its Table "
    "2 lists 739,012 MovieLens-1M samples where the file has 1,000,209 ratings; the shared "
    "sample here holds users 1-2,998 only. Refs. [28] and [29] are quoted from the paper, not "
    "re-run."
)
KEY_METRICS = (
    "test/rmse",
    "test/mae",
    "test/auc",
    "test/logloss",
    "test/hr@10",
    "test/ndcg@10",
    "test/recall@20",
    "test/mrr@20",
)
_LR, _HIDDEN = "optim.learning_rate", "model.hidden_dim"


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass
class Run:
    name: str
    overrides: dict[str, Any]
    seed: int
    values: dict[str, float]  # numeric summary.csv columns (metrics, seconds)
    config: dict[str, Any]  # config.json ({} if missing)
    records: list[dict[str, Any]]  # metrics.jsonl
    results: dict[str, Any] = dataclasses.field(default_factory=dict)  # results.json


@dataclasses.dataclass
class Group:
    overrides: dict[str, Any]  # the runs' overrides without the seed
    runs: list[Run]

    @property
    def label(self) -> str:
        if not self.overrides:
            return "base (no overrides)"
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.overrides.items())

    @property
    def short_label(self) -> str:
        """The label with the last part of each key only (``hidden_dim=50``)."""
        if not self.overrides:
            return "base"
        return ", ".join(f"{k.split('.')[-1]}={_fmt(v)}" for k, v in self.overrides.items())

    def values(self, column: str) -> dict[int, float]:
        """Seed -> value of ``column`` (runs without a finite value are left out)."""
        out = {}
        for r in self.runs:
            v = r.values.get(column)
            if v is not None and math.isfinite(v):
                out[r.seed] = v
        return out


@dataclasses.dataclass
class Sweep:
    path: str
    title: str
    config_path: str
    declared: list[str]  # run names in declaration order
    groups: list[Group]
    reference: Group

    @property
    def runs(self) -> list[Run]:
        return [r for g in self.groups for r in g.runs]

    @property
    def missing(self) -> list[str]:
        done = {r.name for r in self.runs}
        return [n for n in self.declared if n not in done]


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _number(s: str | None) -> float | None:
    try:
        return float(s) if s not in (None, "") else None
    except ValueError:
        return None


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a killed run
                    continue
    return out


def load_sweep(path: str, title: str | None = None, baseline: str | None = None) -> Sweep:
    """The finished runs of the sweep in ``path``, grouped (in declaration order)."""
    summary = os.path.join(path, "summary.csv")
    if not os.path.exists(summary):
        raise FileNotFoundError(f"{summary} not found: run the sweep first (launch.py --sweep)")
    with open(summary, newline="") as f:
        rows = list(csv.DictReader(f))
    spec = _read_json(os.path.join(path, "sweep.json"))
    declared_overrides = spec.get("runs") or [json.loads(r["overrides"]) for r in rows]
    declared = [run_name(o) for o in declared_overrides]
    order = {name: i for i, name in enumerate(declared)}
    runs = []
    for row in rows:
        name = row["run"]
        sub = os.path.join(path, name)
        overrides = json.loads(row.get("overrides") or "{}")
        values = {
            k: v
            for k, v in ((k, _number(s)) for k, s in row.items() if k not in ("run", "overrides"))
            if v is not None
        }
        runs.append(
            Run(
                name=name,
                overrides=overrides,
                seed=int(float(row.get("seed") or overrides.get("seed", 0))),
                values=values,
                config=_read_json(os.path.join(sub, "config.json")),
                records=_read_jsonl(os.path.join(sub, "metrics.jsonl")),
                results=_read_json(os.path.join(sub, "results.json")),
            )
        )
    runs.sort(key=lambda r: order.get(r.name, len(order)))
    groups: dict[str, Group] = {}
    for r in runs:
        key_overrides = {k: v for k, v in r.overrides.items() if k != "seed"}
        key = json.dumps(key_overrides, sort_keys=True, default=str)
        groups.setdefault(key, Group(key_overrides, [])).runs.append(r)
    if not groups:
        raise ValueError(f"{summary} holds no finished run")
    group_list = list(groups.values())
    reference = group_list[0]
    if baseline:
        matches = [g for g in group_list if _matches(baseline, g)]
        if not matches:
            raise ValueError(
                f"--report_baseline={baseline!r} matches no group of {path}: "
                + " | ".join(g.label for g in group_list)
            )
        reference = matches[0]
    config_path = str(spec.get("config", ""))
    if title is None:
        stem = os.path.splitext(os.path.basename(config_path.partition(":")[0]))[0]
        variant = config_path.partition(":")[2]
        title = f"{stem}:{variant}" if variant else (stem or os.path.basename(path))
    return Sweep(path, title, config_path, declared, group_list, reference)


def _matches(spec: str, group: Group) -> bool:
    """``spec`` names ``group``: its label, or ``key=value[,key=value]`` in any order."""
    spec = spec.strip()
    if spec in (group.label, run_name(group.overrides)) or (spec == "base" and not group.overrides):
        return True
    wanted = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = part.partition("=")
        if not sep:
            return False
        try:
            wanted[key.strip()] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            wanted[key.strip()] = raw.strip()
    if set(wanted) != set(group.overrides):
        return False
    return all(_same(wanted[k], group.overrides[k]) for k in wanted)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return str(a).lower() == str(b).lower()


def find_sweeps(path: str, baseline: str | None = None) -> list[Sweep]:
    """The sweep in ``path``, or every sweep one level below it (one per dataset)."""
    if os.path.exists(os.path.join(path, "summary.csv")):
        return [load_sweep(path, baseline=baseline)]
    subs = sorted(
        d
        for d in (os.listdir(path) if os.path.isdir(path) else [])
        if os.path.exists(os.path.join(path, d, "summary.csv"))
    )
    if not subs:
        raise FileNotFoundError(
            f"no sweep in {path!r}: expected {path}/summary.csv or {path}/*/summary.csv "
            "(python launch.py --config CONFIG --sweep --workdir DIR writes them)"
        )
    sweeps = []
    for d in subs:
        try:
            sweeps.append(load_sweep(os.path.join(path, d), title=d, baseline=baseline))
        except ValueError:
            if not baseline:
                raise
            sweeps.append(load_sweep(os.path.join(path, d), title=d))
    if baseline and not any(_matches(baseline, s.reference) for s in sweeps):
        raise ValueError(f"--report_baseline={baseline!r} matches no group in {path}")
    return sweeps


# ----------------------------------------------------------------------------- what to show


def _run_kind(sweep: Sweep) -> str:
    """ "criteo", "ml1m_rating", "rating" or "ranking" (from the first run's config.json)."""
    cfg = sweep.runs[0].config
    if cfg.get("task") == "ctr":
        return "criteo"
    loss, data = cfg.get("loss", {}), cfg.get("data", {})
    if float(loss.get("rating_weight", 0) or 0) > 0:
        path = str(data.get("path", "")).lower()
        names = ("ml-1m", "movielens-1m", "ml1m")
        is_ml1m = data.get("dataset") == "ml1m" or any(n in path for n in names)
        if data.get("source") == "movielens" and is_ml1m:
            return "ml1m_rating"
        return "rating"
    return "ranking"


def curve_metric(sweep: Sweep) -> str:
    """The validation metric of the curves: RMSE for rating / CTR runs, else the selection one."""
    if _run_kind(sweep) != "ranking":
        return "valid/rmse"
    return str(sweep.runs[0].config.get("train", {}).get("select_metric", "valid/ndcg@10"))


def key_metrics(sweep: Sweep) -> list[str]:
    cols = {c for r in sweep.runs for c in r.values}
    sel = "test/" + curve_metric(sweep).split("/", 1)[1]
    out = [sel] if sel in cols else []
    out += [m for m in KEY_METRICS if m in cols and m not in out]
    if not out:
        out = sorted(c for c in cols if c.startswith("test/"))[:6]
    return out


def all_test_metrics(sweep: Sweep) -> list[str]:
    cols: list[str] = []
    for r in sweep.runs:
        cols += [c for c in r.values if c.startswith("test/") and c not in cols]
    return cols


def compare(group: Group, reference: Group, metric: str) -> TTest | None:
    """``group`` vs ``reference`` on ``metric`` over seeds (None: fewer than 2 seeds)."""
    x, y = group.values(metric), reference.values(metric)
    if len(x) < 2 or len(y) < 2:
        return None
    if set(x) == set(y):
        seeds = sorted(x)
        return paired_t_test([x[s] for s in seeds], [y[s] for s in seeds])
    return welch_t_test(list(x.values()), list(y.values()))


def _cell(values: Sequence[float], digits: int = 4) -> str:
    if not len(values):
        return "-"
    m, s = mean_std(values)
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _p(p: float) -> str:
    if math.isnan(p):
        return "nan"
    return "< 1e-4" if p < 1e-4 else f"{p:.4f}"


def _diff_cell(group: Group, reference: Group, metric: str) -> str:
    test = compare(group, reference, metric)
    if test is None:  # the difference without a test
        x, y = group.values(metric), reference.values(metric)
        if not x or not y:
            return "-"
        diff = mean_std(list(x.values()))[0] - mean_std(list(y.values()))[0]
        return f"{diff:+.4f}"
    if test.diff == 0.0 and test.p == 1.0:
        return "0 (identical)"
    star = "*" if test.p < 0.05 else ""
    return f"{test.diff:+.4f} (p {_p(test.p)}{star}, {test.kind})"


def _curve(run: Run, metric: str) -> dict[int, float]:
    """Step -> validation value from ``metrics.jsonl`` (the model's records; last one wins, and
    none after the step of the last final record: an earlier try of a run started over may
    have gone further)."""
    out = {}
    finals = [int(r["step"]) for r in run.records if r.get("final") and "step" in r]
    for r in run.records:
        if r.get("final") or metric not in r or "step" not in r:
            continue
        if r.get("model", "model") != "model":  # CTR logs the logistic regression too
            continue
        v = r[metric]
        if isinstance(v, (int, float)) and (not finals or int(r["step"]) <= finals[-1]):
            out[int(r["step"])] = float(v)
    return out


def group_curve(group: Group, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean over seeds, std over seeds) of the validation curve."""
    curves = [c for c in (_curve(r, metric) for r in group.runs) if c]
    steps = sorted({s for c in curves for s in c})
    means, stds = [], []
    for s in steps:
        m, sd = mean_std([c[s] for c in curves if s in c])
        means.append(m)
        stds.append(sd)
    return np.asarray(steps), np.asarray(means), np.asarray(stds)


def varied(sweep: Sweep, key: str) -> list[Group]:
    """Groups that differ from the reference in ``key`` only (the reference included), sorted
    by ``key``; empty when ``key`` takes a single value."""
    ref = {k: v for k, v in sweep.reference.overrides.items() if k != key}
    out = [
        g
        for g in sweep.groups
        if key in g.overrides and {k: v for k, v in g.overrides.items() if k != key} == ref
    ]
    if len({json.dumps(g.overrides[key], default=str) for g in out}) < 2:
        return []
    return sorted(out, key=lambda g: g.overrides[key])


# ----------------------------------------------------------------------------- Markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def sweep_markdown(sweep: Sweep) -> list[str]:
    ref = sweep.reference
    metrics = key_metrics(sweep)
    n_runs = len(sweep.runs)
    lines = [f"## {sweep.title}", ""]
    src = f"config `{sweep.config_path}`, " if sweep.config_path else ""
    lines.append(
        f"{src}directory `{sweep.path}`: {n_runs} of {len(sweep.declared)} declared runs "
        f"finished, {len(sweep.groups)} groups; reference: **{ref.label}**."
    )
    if sweep.missing:
        lines.append(f"Not finished (left out): {', '.join(f'`{m}`' for m in sweep.missing)}.")
    lines += ["", "### Results (test metrics of the best validation checkpoint)", ""]
    rows = []
    for g in sweep.groups:
        name = g.label + (" (reference)" if g is ref else "")
        cells = [_cell(list(g.values(m).values())) for m in metrics]
        secs = _cell(list(g.values("seconds").values()), digits=1)
        rows.append([name, str(len(g.runs)), *cells, secs])
    lines += _table(["group", "seeds", *metrics, "train s"], rows)
    lines += [
        "",
        "Mean ± sample standard deviation (ddof 1) over seeds; one value when one seed ran.",
    ]
    others = [g for g in sweep.groups if g is not ref]
    if others:
        lines += ["", f"### Difference from the reference ({ref.label})", ""]
        rows = [[g.label, *(_diff_cell(g, ref, m) for m in metrics)] for g in others]
        lines += _table(["group", *(f"Δ {m}" for m in metrics)], rows)
        lines += [
            "",
            "Δ = group mean - reference mean; two-sided t-test over seeds, paired when both "
            "groups ran the same seeds, else Welch's; * p < 0.05, without correction for the "
            "number of comparisons; a difference without p: fewer than 2 seeds, no test.",
        ]
    kind = _run_kind(sweep)
    if kind in ("criteo", "ml1m_rating"):
        lines += ["", *_paper_table(sweep, kind)]
    all_metrics = all_test_metrics(sweep)
    if all_metrics and len(sweep.groups) <= 12:
        lines += ["", "### All test metrics", ""]
        header = ["metric", *(g.label for g in sweep.groups)]
        rows = [
            [m, *(_cell(list(g.values(m).values())) for g in sweep.groups)] for m in all_metrics
        ]
        lines += _table(header, rows)
    return lines


def _paper_table(sweep: Sweep, kind: str) -> list[str]:
    criteo = kind == "criteo"
    paper = PAPER_TABLE3_CRITEO if criteo else PAPER_TABLE4_ML1M
    name = "Table 3 (Criteo)" if criteo else "Table 4 (MovieLens-1M)"
    lines = [f"### Paper 000 {name} beside ours", ""]
    rows = [[f"{m} (paper)", f"{r:.4f}", f"{a:.4f}", "-"] for m, r, a in paper]
    for g in sweep.groups:
        rmse, mae = g.values("test/rmse"), g.values("test/mae")
        rows.append([f"ours: {g.label}", _cell(list(rmse.values())), _cell(list(mae.values())),
                     str(len(rmse))])  # fmt: skip
    lines += _table(["method", "RMSE", "MAE", "seeds"], rows)
    lines += ["", _NOTE_CRITEO if criteo else _NOTE_ML1M]
    return lines


# ----------------------------------------------------------------------------- figures


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # optional dependency
        raise ImportError(
            "the report's figures need matplotlib: pip install -e '.[figures]' "
            "(or pip install matplotlib)"
        ) from e
    return Figure  # drawn with the Agg canvas by savefig, no pyplot or GUI backend


def _panels(n: int, width: float = 5.0, height: float = 3.6):
    fig = _figure_class()(figsize=(width * n, height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, axes


def _plot_curves(ax, groups: Sequence[Group], labels: Sequence[str], metric: str) -> bool:
    drawn = False
    for g, label in zip(groups, labels, strict=True):
        steps, mean, std = group_curve(g, metric)
        if not len(steps):
            continue
        ax.plot(steps, mean, marker="o", markersize=3, label=label)
        if len(g.runs) > 1:
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        drawn = True
    ax.set_xlabel("iterations (optimizer steps)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    return drawn


def _lr_label(g: Group) -> str:
    return f"lr = {_fmt(g.overrides[_LR])}"


def write_figures(sweeps: Sequence[Sweep], out_dir: str) -> list[tuple[str, str]]:
    """Draws the figures that the sweeps support; returns ``(file name, caption)`` pairs."""
    out = []

    def save(fig, name, caption):
        write_atomic(os.path.join(out_dir, name), lambda f: fig.savefig(f, format="png", dpi=110),
                     binary=True)  # fmt: skip
        out.append((name, caption))

    with_curves = [s for s in sweeps if len(group_curve(s.reference, curve_metric(s))[0])]
    if with_curves:
        fig, axes = _panels(len(with_curves), width=6.5, height=4.2)
        for ax, s in zip(axes, with_curves, strict=True):
            _plot_curves(ax, s.groups, [_short(g.short_label) for g in s.groups], curve_metric(s))
            ax.set_title(s.title, fontsize=9)
            ax.legend(fontsize=6)
        save(fig, "fig4_iterations.png",
             "Figure 4 analogue: validation metric vs iterations, every group")  # fmt: skip
    with_lr = [(s, varied(s, _LR)) for s in sweeps]
    with_lr = [(s, gs) for s, gs in with_lr if gs]
    if with_lr:
        fig, axes = _panels(len(with_lr))
        for ax, (s, gs) in zip(axes, with_lr, strict=True):
            _plot_curves(ax, gs[::-1], [_lr_label(g) for g in gs[::-1]], curve_metric(s))
            _maybe_log_y(ax, gs, curve_metric(s))
            ax.set_title(s.title, fontsize=9)
            ax.legend(fontsize=8)
        save(fig, "fig5_learning_rate.png", "Figure 5 analogue: one line per learning rate")
    with_h = [(s, varied(s, _HIDDEN)) for s in sweeps]
    with_h = [(s, gs) for s, gs in with_h if gs]
    if with_h:
        fig, axes = _panels(len(with_h))
        for ax, (s, gs) in zip(axes, with_h, strict=True):
            metric = "test/" + curve_metric(s).split("/", 1)[1]
            xs = [g.overrides[_HIDDEN] for g in gs]
            stats = [mean_std(list(g.values(metric).values())) for g in gs]
            ax.errorbar(xs, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o",
                        capsize=3)  # fmt: skip
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel("hidden size")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
            ax.set_title(s.title, fontsize=9)
        save(fig, "fig_hidden_size.png", "Hidden size: test metric of the selected checkpoint")
    height = 1.2 + 0.35 * max(len(s.groups) for s in sweeps)
    metrics = list(dict.fromkeys(m for s in sweeps for m in key_metrics(s)))
    for metric in metrics:
        with_metric = [s for s in sweeps if metric in key_metrics(s)]
        fig, axes = _panels(len(with_metric), height=height)
        for ax, s in zip(axes, with_metric, strict=True):
            _metric_bars(ax, s, metric)
        name = "fig_" + metric.replace("/", "_").replace("@", "_at_") + ".png"
        save(fig, name, f"{metric} per group, mean ± std over seeds; * p < 0.05 vs the reference")
    fig, axes = _panels(len(sweeps), height=height)
    for ax, s in zip(axes, sweeps, strict=True):
        stats = [mean_std(list(g.values("seconds").values())) for g in s.groups]
        ys = np.arange(len(s.groups))
        ax.barh(ys, [m for m, _ in stats], xerr=[sd for _, sd in stats], capsize=3)
        ax.set_yticks(ys, [_short(g.short_label) for g in s.groups], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("training seconds (mean over seeds)")
        ax.set_title(s.title, fontsize=9)
    save(fig, "fig6_train_seconds.png", "Figure 6 analogue: training time per group")
    return out


def _metric_bars(ax, sweep: Sweep, metric: str) -> None:
    """One bar per group (mean ± std over seeds); the reference in green, a group that differs
    from it significantly (p < 0.05) marked * in its label."""
    groups = sweep.groups
    stats = [mean_std(list(g.values(metric).values()) or [math.nan]) for g in groups]
    ys = np.arange(len(groups))
    colours = ["tab:green" if g is sweep.reference else "tab:blue" for g in groups]
    ax.barh(ys, [m for m, _ in stats], xerr=[sd for _, sd in stats], capsize=3, color=colours)
    labels = []
    for g in groups:
        test = None if g is sweep.reference else compare(g, sweep.reference, metric)
        labels.append(_short(g.short_label) + (" *" if test and test.p < 0.05 else ""))
    ax.set_yticks(ys, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{sweep.title}: green reference, * p < 0.05", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _maybe_log_y(ax, groups: Sequence[Group], metric: str) -> None:
    vals = [v for g in groups for v in group_curve(g, metric)[1] if np.isfinite(v) and v > 0]
    if vals and max(vals) / min(vals) > 5:
        ax.set_yscale("log")


# ----------------------------------------------------------------------------- entry point


def write_report(path: str, baseline: str | None = None, figures: bool = True) -> str:
    """Writes ``path/report.md`` (and the PNG figures beside it); returns the report's path."""
    sweeps = find_sweeps(path, baseline=baseline)
    from durgru_jax import leaderboard  # the leaderboard's own report (it imports this module)

    if all(leaderboard.is_leaderboard(s) for s in sweeps):
        lines = leaderboard.markdown([leaderboard.board(s) for s in sweeps], path, figures)
    else:
        lines = _report_markdown(sweeps, path, baseline, figures)
    out = os.path.join(path, "report.md")
    write_atomic(out, lambda f: f.write("\n".join(lines).rstrip() + "\n"))
    return out


def figure_lines(figures: Sequence[tuple[str, str]]) -> list[str]:
    """The report's "Figures" section: each ``(file name, caption)`` as an image."""
    lines = ["## Figures", ""]
    for name, caption in figures:
        lines += [f"![{caption}]({name})", "", f"*{caption}* (`{name}`)", ""]
    return lines


def _report_markdown(sweeps, path: str, baseline: str | None, figures: bool) -> list[str]:
    lines = [
        f"# Sweep report: `{path}`",
        "",
        f"Written by `python launch.py --report {path}`"
        + (f" --report_baseline={baseline}" if baseline else "")
        + ". Groups are runs with the same overrides apart from the seed.",
        "",
    ]
    for s in sweeps:
        lines += sweep_markdown(s) + [""]
    if figures:
        lines += figure_lines(write_figures(sweeps, path))
        lines.append(
            "Curves: validation records of each run's `metrics.jsonl` (mean over seeds, band ± "
            "one standard deviation); the metric is the RMSE for rating and CTR runs, else the "
            "runs' selection metric."
        )
    return lines
