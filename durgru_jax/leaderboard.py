"""The leaderboard report (``configs/leaderboard.py``): per dataset, each method's grid point
chosen on validation, its test metrics over seeds, and paired tests against the best other
method; across datasets, one table of dataset by method.

``python launch.py --report W`` writes it (`report.write_report` hands leaderboard sweeps here)
when the runs name their ``method``. Selection uses validation only: for each method, the grid
point (learning rate) with the best mean over seeds of the validation metric the runs selected
their checkpoints on (``train.select_metric``); its test value of the same metric is the
method's score. The best method of a dataset is the one with the best mean score; every other
method is tested against it with a two-sided t-test over seeds, paired by seed (a deterministic
baseline's one value stands for every seed).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from durgru_jax.files import write_atomic
from durgru_jax.provenance import describe
from durgru_jax.report import (
    Group,
    Sweep,
    _figure_class,
    _plot_curves,
    _table,
    figure_lines,
    group_curve,
)
from durgru_jax.run_lib import higher_is_better
from durgru_jax.stats import TTest, mean_std, paired_t_test

ALPHA = 0.05  # significance level of the marks (no correction for the number of tests)
_LR = "optim.learning_rate"


@dataclasses.dataclass
class Entry:
    """One method on one dataset: its selected grid point and the grid it was chosen from."""

    method: str
    group: Group  # the selected grid point's runs (one per seed)
    grid: list[tuple[Group, float]]  # every grid point and its mean validation metric
    stop_reasons: dict[str, int]  # why the selected runs ended (results.json), counted

    def scores(self, metric: str) -> dict[int, float]:
        return self.group.values(metric)


@dataclasses.dataclass
class Board:
    """One dataset's leaderboard."""

    sweep: Sweep
    select: str  # the validation metric of the selection
    metric: str  # its test counterpart, the score
    entries: list[Entry]  # best first
    tests: dict[str, TTest | None]  # method -> its test against the best other method

    @property
    def best(self) -> Entry:
        return self.entries[0]


def is_leaderboard(sweep: Sweep) -> bool:
    return bool(sweep.runs) and all("method" in r.overrides for r in sweep.runs)


def _mean(values: dict[int, float]) -> float:
    return float(np.mean(list(values.values()))) if values else math.nan


def _sign(metric: str) -> float:
    return 1.0 if higher_is_better(metric) else -1.0


def _entry(method: str, groups: list[Group], select: str) -> Entry:
    grid = [(g, _mean(g.values(select))) for g in groups]
    finite = [(g, v) for g, v in grid if math.isfinite(v)]
    chosen = max(finite, key=lambda gv: _sign(select) * gv[1])[0] if finite else groups[0]
    reasons: dict[str, int] = {}
    for r in chosen.runs:
        reason = r.results.get("train", {}).get("stop_reason") or "-"
        reasons[reason] = reasons.get(reason, 0) + 1
    return Entry(method, chosen, grid, reasons)


def paired(x: dict[int, float], y: dict[int, float]) -> TTest | None:
    """``x`` vs ``y`` paired by seed; a one-value side (a deterministic baseline) stands for
    every seed of the other. None when fewer than 2 pairs."""
    if len(x) == 1 and len(y) > 1:
        x = dict.fromkeys(y, next(iter(x.values())))
    if len(y) == 1 and len(x) > 1:
        y = dict.fromkeys(x, next(iter(y.values())))
    seeds = sorted(set(x) & set(y))
    if len(seeds) < 2 or all(x[s] == y[s] for s in seeds):
        return None
    return paired_t_test([x[s] for s in seeds], [y[s] for s in seeds])


def board(sweep: Sweep) -> Board:
    select = str(sweep.runs[0].config.get("train", {}).get("select_metric", "valid/ndcg@10"))
    metric = "test/" + select.split("/", 1)[1]
    by_method: dict[str, list[Group]] = {}
    for g in sweep.groups:
        by_method.setdefault(str(g.overrides["method"]), []).append(g)
    entries = [_entry(m, gs, select) for m, gs in by_method.items()]
    entries.sort(key=lambda e: -_sign(metric) * _nan_low(_mean(e.scores(metric)), metric))
    tests = {}
    for e in entries:
        other = next(o for o in entries if o is not e) if len(entries) > 1 else None
        tests[e.method] = paired(e.scores(metric), other.scores(metric)) if other else None
    return Board(sweep, select, metric, entries, tests)


def _nan_low(v: float, metric: str) -> float:
    return v if math.isfinite(v) else -_sign(metric) * math.inf


def within_noise(b: Board, e: Entry) -> bool:
    """``e`` is the best, or not significantly different from it (p >= `ALPHA`); without a
    test (one value on both sides) only an equal score is."""
    if e is b.best:
        return True
    t = b.tests.get(e.method)
    if t is None:
        return _mean(e.scores(b.metric)) == _mean(b.best.scores(b.metric))
    return t.p >= ALPHA


# ----------------------------------------------------------------------------- Markdown


def _cell(values: dict[int, float], digits: int = 4) -> str:
    if not values:
        return "-"
    m, s = mean_std(list(values.values()))
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def _vs_best(b: Board, e: Entry) -> str:
    if e is b.best:
        other = b.entries[1].method if len(b.entries) > 1 else "-"
        t = b.tests[e.method]
        return f"best; vs {other}: " + (f"p = {t.p:.3f}" if t else "no test")
    t = b.tests[e.method]
    if t is None:
        return "no test (one value each)"
    star = " *" if t.p < ALPHA else ""
    return f"{t.diff:+.4f}, p = {t.p:.3f}{star}"


def _lr(e: Entry) -> str:
    lr = e.group.overrides.get(_LR)
    return "-" if lr is None else f"{lr:g}"


def board_markdown(b: Board) -> list[str]:
    s = b.sweep
    lines = [f"## {s.title}", ""]
    lines.append(
        f"config `{s.config_path}`, directory `{s.path}`: {len(s.runs)} of {len(s.declared)} "
        f"declared runs finished. Score: `{b.metric}` of the best validation checkpoint; grid "
        f"point chosen on mean `{b.select}`."
    )
    if s.missing:
        lines.append(f"Not finished (left out): {len(s.missing)} runs.")
    lines += ["", made_by(s), ""]
    metrics = [b.metric] + [
        m for m in ("test/ndcg@10", "test/hr@10", "test/recall@20", "test/mrr@20")
        if m != b.metric and any(m in r.values for r in s.runs)
    ]  # fmt: skip
    rows = []
    for e in b.entries:
        name = f"**{e.method}**" if within_noise(b, e) else e.method
        stops = ", ".join(f"{k} {v}" for k, v in sorted(e.stop_reasons.items()))
        rows.append(
            [name, _lr(e), str(len(e.group.runs)), *(_cell(e.scores(m)) for m in metrics),
             _vs_best(b, e), _cell(e.group.values(b.select)),
             _cell(e.group.values("seconds"), digits=0), stops]
        )  # fmt: skip
    header = ["method", "lr", "seeds", *metrics, "vs best", b.select, "train s", "stopped"]
    lines += _table(header, rows)
    lines += [
        "",
        "Mean ± sample standard deviation over seeds. **Bold**: the best, or within noise of it "
        f"(paired two-sided t-test, p >= {ALPHA}); * p < {ALPHA}. *train s*: training seconds of "
        "the selected runs (a run of a vectorised group reports the group's clock until it "
        "stopped: its `trained_with` runs shared those seconds). *stopped*: why the selected "
        "runs ended.",
    ]
    grid_rows = [
        [e.method, *(f"{g.overrides.get(_LR, 0):g}: {v:.4f}" for g, v in e.grid)]
        for e in b.entries
        if len(e.grid) > 1
    ]
    if grid_rows:
        width = max(len(r) for r in grid_rows)
        lines += ["", f"Grid (learning rate: mean `{b.select}`):", ""]
        lines += _table(["method", *(f"point {i}" for i in range(1, width))],
                        [r + [""] * (width - len(r)) for r in grid_rows])  # fmt: skip
    return lines


def made_by(sweep: Sweep) -> str:
    """Which code and machine made the sweep's runs (each ``results.json``'s provenance), each
    with its number of runs, the most common first."""
    counts: dict[str, int] = {}
    for r in sweep.runs:
        key = describe(r.results.get("provenance"))
        counts[key] = counts.get(key, 0) + 1
    made = sorted(counts.items(), key=lambda kv: -kv[1])
    return "Made by: " + "; ".join(f"{k}: {n} run{'s' * (n > 1)}" for k, n in made) + "."


def merged_order(orders: Sequence[Sequence[str]]) -> list[str]:
    """The names of every list, each list's order kept where the lists agree: a name a later
    list adds goes right after the name it follows there (a sweep of a few methods, or one
    dataset's extra method, keeps the columns in the config's order)."""
    out: list[str] = []
    for order in orders:
        prev = None
        for m in dict.fromkeys(order):
            if m not in out:
                out.insert(0 if prev is None else out.index(prev) + 1, m)
            prev = m
    return out


def summary_table(boards: Sequence[Board]) -> list[str]:
    """Dataset by method: each method's score, the best of each row in bold (and those within
    noise of it), * where significantly below the best."""
    methods = merged_order(
        [[str(g.overrides["method"]) for g in b.sweep.groups] for b in boards]
    )  # in the order the sweeps declare them
    rows = []
    for b in boards:
        cells = []
        for m in methods:
            e = next((e for e in b.entries if e.method == m), None)
            if e is None:
                cells.append("")
                continue
            v = _mean(e.scores(b.metric))
            t = b.tests.get(m)
            text = f"{v:.4f}" + (" *" if e is not b.best and t and t.p < ALPHA else "")
            cells.append(f"**{text}**" if within_noise(b, e) else text)
        rows.append([b.sweep.title, b.metric.split("/", 1)[1], *cells])
    return _table(["dataset", "metric", *methods], rows)


# ----------------------------------------------------------------------------- figures


def write_figures(boards: Sequence[Board], out_dir: str) -> list[tuple[str, str]]:
    """Per dataset: the score of every method with error bars, the best and the significantly
    worse marked; and the validation curves of every method's selected grid point."""
    figure = _figure_class()
    out = []
    for b in boards:
        fig = figure(figsize=(11, 0.9 + 0.32 * len(b.entries)), layout="constrained")
        ax_bar, ax_curve = fig.subplots(1, 2)
        ys = np.arange(len(b.entries))
        stats = [mean_std(list(e.scores(b.metric).values()) or [math.nan]) for e in b.entries]
        colours = ["tab:green" if e is b.best else "tab:blue" for e in b.entries]
        ax_bar.barh(ys, [m for m, _ in stats], xerr=[s for _, s in stats], capsize=3,
                    color=colours)  # fmt: skip
        labels = []
        for e in b.entries:
            t = b.tests.get(e.method)
            labels.append(e.method + (" *" if e is not b.best and t and t.p < ALPHA else ""))
        ax_bar.set_yticks(ys, labels, fontsize=8)
        ax_bar.invert_yaxis()
        ax_bar.set_xlabel(f"{b.metric} (mean ± std over seeds)")
        ax_bar.set_title(f"{b.sweep.title}: green best, * p < {ALPHA} vs best", fontsize=9)
        ax_bar.grid(axis="x", alpha=0.3)
        trained = [e for e in b.entries if len(group_curve(e.group, b.select)[0])]
        _plot_curves(ax_curve, [e.group for e in trained], [e.method for e in trained], b.select)
        ax_curve.set_title(f"{b.sweep.title}: validation, selected grid points", fontsize=9)
        if trained:
            ax_curve.legend(fontsize=7)
        name = f"leaderboard_{_slug(b.sweep.title)}.png"
        save = lambda f, fig=fig: fig.savefig(f, format="png", dpi=110)  # noqa: E731
        write_atomic(os.path.join(out_dir, name), save, binary=True)
        out.append((name, f"{b.sweep.title}: {b.metric} by method, and validation curves"))
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def markdown(boards: Sequence[Board], path: str, figures: bool = True) -> list[str]:
    lines = [
        f"# Leaderboard: `{path}`",
        "",
        f"Written by `python launch.py --report {path}` from the sweeps of "
        "`configs/leaderboard.py` (one per dataset).",
        "",
        "## Summary",
        "",
        *summary_table(boards),
        "",
        "Each cell: the method's score (mean over seeds) at its grid point chosen on "
        f"validation. **Bold**: the best of the row, or within noise of it (p >= {ALPHA}); * "
        f"significantly below the best (p < {ALPHA}).",
        "",
    ]
    for b in boards:
        lines += board_markdown(b) + [""]
    if figures:
        lines += figure_lines(write_figures(boards, path))
    return lines
