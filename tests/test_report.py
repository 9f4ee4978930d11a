"""The sweep report (durgru_jax/report.py) on fake sweep directories with known numbers,
``launch.py --report``, ``train.eval_every_steps`` and ``configs/section43.py``."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from durgru_jax import report
from durgru_jax import train as train_lib
from durgru_jax.base_config import (
    RECOMMENDED_MODEL,
    RECOMMENDED_RATINGS,
    RECOMMENDED_SEEN,
    config_module,
    load_config,
)
from durgru_jax.sweep import expand, run_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR, H = "optim.learning_rate", "model.hidden_dim"


# ----------------------------------------------------------------------------- fake sweeps


def _write_sweep(path, config_path, config, runs, declared_extra=()):
    """runs: [(overrides incl. seed, metrics, seconds, [(step, valid value)])]."""
    os.makedirs(path)
    declared = [o for o, *_ in runs] + list(declared_extra)
    with open(os.path.join(path, "sweep.json"), "w") as f:
        json.dump({"config": config_path, "runs": declared}, f)
    rows = []
    for overrides, metrics, seconds, curve in runs:
        name = run_name(overrides)
        sub = os.path.join(path, name)
        os.makedirs(sub)
        with open(os.path.join(sub, "config.json"), "w") as f:
            json.dump(config, f)
        with open(os.path.join(sub, "results.json"), "w") as f:
            json.dump({"metrics": metrics, "train": {"seconds": seconds}}, f)
        metric = "valid/rmse" if "valid/rmse" in metrics else "valid/ndcg@10"
        with open(os.path.join(sub, "metrics.jsonl"), "w") as f:
            for step, v in curve:
                f.write(json.dumps({"step": step, "epoch": 0, "train/loss": 9.0}) + "\n")
                f.write(json.dumps({"step": step, "epoch": 0, metric: v}) + "\n")
            f.write(json.dumps({"step": 99, "final": True, metric: -1.0, **metrics}) + "\n")
        rows.append(
            {"run": name, "overrides": json.dumps(overrides), "seed": overrides["seed"]}
            | {"seconds": seconds, "events_per_second": 1.0}
            | metrics
        )
    with open(os.path.join(path, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


ML1M_RATING = {
    "seed": 0,
    "data": {"source": "movielens", "dataset": "ml1m", "path": "x/ratings.dat"},
    "loss": {"rating_weight": 1.0},
    "train": {"select_metric": "valid/rmse"},
}
REF_RMSE = (0.90, 0.92, 0.94)  # lr 0.01, hidden 100, seeds 0-2
HIGH_LR_RMSE = (0.95, 0.96, 1.00)  # lr 0.1: differences 0.05, 0.04, 0.06
H50_RMSE = (1.00, 1.02)  # hidden 50, seeds 0-1 only: Welch


def _rating_runs():
    runs = []
    for lr, h, rmses in ((0.01, 100, REF_RMSE), (0.1, 100, HIGH_LR_RMSE), (0.01, 50, H50_RMSE)):
        for seed, rmse in enumerate(rmses):
            metrics = {"test/rmse": rmse, "test/mae": rmse - 0.2, "valid/rmse": rmse + 0.01}
            curve = [(0, 3.0 + seed), (20, 1.0 + seed / 10), (40, rmse)]
            runs.append(({LR: lr, H: h, "seed": seed}, metrics, 10.0 * (seed + 1), curve))
    return runs


@pytest.fixture(scope="module")
def fake_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    missing = {LR: 0.0001, H: 100, "seed": 0}
    _write_sweep(
        str(root / "ml1m"), "configs/section43.py:ml1m", ML1M_RATING, _rating_runs(), [missing]
    )
    ctr = {"seed": 0, "task": "ctr", "train": {}}
    runs = []  # an ablation-like sweep: variants x seeds, no learning-rate axis
    for overrides, auc in (({}, (0.70, 0.71)), ({"model.cell": "gru"}, (0.69, 0.70))):
        for seed in (0, 1):
            m = {"test/auc": auc[seed], "test/rmse": 0.4 + seed / 100, "test/mae": 0.3}
            m["valid/rmse"] = 0.41
            runs.append(({**overrides, "seed": seed}, m, 5.0, [(20, 0.45), (40, 0.41)]))
    _write_sweep(str(root / "criteo"), "configs/section43.py:criteo", ctr, runs)
    return root


def test_groups_means_and_differences(fake_dirs):
    sweep = report.load_sweep(str(fake_dirs / "ml1m"))
    assert sweep.title == "section43:ml1m"
    assert [g.overrides for g in sweep.groups] == [
        {LR: 0.01, H: 100},
        {LR: 0.1, H: 100},
        {LR: 0.01, H: 50},
    ]
    assert sweep.reference is sweep.groups[0]
    assert sweep.missing == [run_name({LR: 0.0001, H: 100, "seed": 0})]
    ref, high, h50 = sweep.groups
    assert report.mean_std(ref.values("test/rmse").values()) == pytest.approx((0.92, 0.02))
    assert report.mean_std(ref.values("seconds").values()) == pytest.approx((20.0, 10.0))
    paired = report.compare(high, ref, "test/rmse")
    assert paired.kind == "paired" and paired.p == pytest.approx(
        1 - paired.t / math.sqrt(2 + paired.t**2)
    )
    assert paired.t == pytest.approx(0.05 / (0.01 / math.sqrt(3)))
    welch = report.compare(h50, ref, "test/rmse")
    assert welch.kind == "welch" and welch.diff == pytest.approx(0.09)
    assert report.curve_metric(sweep) == "valid/rmse"
    steps, mean, std = report.group_curve(ref, "valid/rmse")
    assert list(steps) == [0, 20, 40]  # the final record is not part of the curve
    assert mean == pytest.approx([4.0, 1.1, 0.92]) and std[0] == pytest.approx(1.0)
    assert [g.overrides[LR] for g in report.varied(sweep, LR)] == [0.01, 0.1]
    assert [g.overrides[H] for g in report.varied(sweep, H)] == [50, 100]


def test_report_tables_figures_and_baseline(fake_dirs):
    out = report.write_report(str(fake_dirs / "ml1m"))
    text = open(out).read()
    ref_row = next(line for line in text.splitlines() if "(reference)" in line)
    assert "| 3 | 0.9200 ± 0.0200 | 0.7200 ± 0.0200 |" in ref_row and "20.0 ± 10.0" in ref_row
    p = 1 - 8.660254 / math.sqrt(2 + 75.0)
    assert f"+0.0500 (p {p:.4f}*, paired)" in text
    assert "+0.0900 (p 0.0109*, welch)" in text
    assert "Table 4 (MovieLens-1M)" in text
    assert "| Proposed method (paper) | 0.7869 | 0.5893 |" in text
    assert "Not finished" in text
    names = ("fig4_iterations", "fig5_learning_rate", "fig_hidden_size", "fig6_train_seconds")
    for name in (*names, "fig_test_rmse", "fig_test_mae"):
        path = fake_dirs / "ml1m" / f"{name}.png"
        assert f"({name}.png)" in text
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 2000
    other = report.load_sweep(
        str(fake_dirs / "ml1m"), baseline="optim.learning_rate=1e-1,model.hidden_dim=100"
    )
    assert other.reference.overrides == {LR: 0.1, H: 100}
    with pytest.raises(ValueError, match="matches no group"):
        report.load_sweep(str(fake_dirs / "ml1m"), baseline="optim.learning_rate=0.5")


def test_metric_bars_mark_the_significant_differences(fake_dirs):
    pytest.importorskip("matplotlib")
    sweep = report.load_sweep(str(fake_dirs / "ml1m"))
    _, (ax,) = report._panels(1)
    report._metric_bars(ax, sweep, "test/rmse")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # lr 0.1 (paired p 0.013) and hidden 50 (Welch p 0.011) differ; the reference is unmarked
    assert labels == ["learning_rate=0.01, hidden_dim=100", "learning_rate=0.1, hidden_dim=100 *",
                      "learning_rate=0.01, hidden_dim=50 *"]  # fmt: skip
    assert [round(p.get_width(), 4) for p in ax.patches] == [0.92, 0.97, 1.01]


def test_report_of_several_sweeps_and_an_ablation_like_one(fake_dirs):
    text = open(report.write_report(str(fake_dirs))).read()
    assert "## criteo" in text and "## ml1m" in text
    assert "Table 3 (Criteo)" in text and "| Proposed method (paper) | 0.7257 | 0.5147 |" in text
    assert "base (no overrides) (reference)" in text
    # Same seeds 0-1: paired; AUC differences -0.01, -0.01 have no spread.
    assert (
        "| model.cell=gru | 0 (identical) | 0 (identical) | -0.0100 (p < 1e-4*, paired) |" in text
    )
    assert os.path.getsize(fake_dirs / "fig6_train_seconds.png") > 2000
    with pytest.raises(FileNotFoundError, match="no sweep"):
        report.find_sweeps(str(fake_dirs / "criteo" / run_name({"seed": 0})))


def test_launch_report_end_to_end(fake_dirs, tmp_path):
    target = tmp_path / "w"
    _write_sweep(str(target), "configs/ablations.py", ML1M_RATING, _rating_runs()[:4])
    res = subprocess.run(
        [sys.executable, "launch.py", "--report", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    text = (target / "report.md").read_text()
    assert "0.9200 ± 0.0200" in text and (target / "fig4_iterations.png").stat().st_size > 2000
    assert "| +0.0300 | +0.0300 |" in text  # lr 0.1 ran seed 0 only: 0.95 - 0.92
    res = subprocess.run(
        [sys.executable, "launch.py", "--workdir", str(tmp_path / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "--config and --workdir are required" in res.stderr


# ----------------------------------------------------------------------------- eval_every_steps


def test_eval_every_steps_writes_validation_records_at_those_steps(tmp_path, tiny_config):
    c = tiny_config
    c.train.epochs = 2
    c.train.eval_every_steps = 3
    c.model.scan_unroll = 1  # compiles faster
    workdir = str(tmp_path / "run")
    results = train_lib.train_and_evaluate(c, workdir)
    total, epochs = results["train"]["steps"], results["train"]["epochs"]
    per_epoch = total // epochs
    assert epochs == 2 and total == 2 * per_epoch and per_epoch > 3
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    valid = [r for r in records if "valid/ndcg@10" in r and not r.get("final")]
    along = list(range(0, total + 1, 3))
    epoch_ends = [per_epoch, 2 * per_epoch]
    assert [r["step"] for r in valid] == sorted(along + epoch_ends)
    for r in valid:
        assert r["epoch"] == max(r["step"] - 1, 0) // per_epoch
        assert set(r) - {"train_seconds"} == {"step", "epoch"} | {
            k for k in r if k.startswith("valid/")
        }
    # The records along the way carry the training time so far (time-to-accuracy curves).
    timed = [r for r in valid if "train_seconds" in r]
    assert [r["step"] for r in timed] == along
    seconds = [r["train_seconds"] for r in timed]
    assert seconds[0] < 1.0 and seconds == sorted(seconds) and seconds[-1] > seconds[1] > 0
    assert seconds[-1] <= results["train"]["seconds"] + 1e-6
    # Model selection still happens at epoch ends only.
    assert results["train"]["best_step"] in epoch_ends


# ----------------------------------------------------------------------------- section43 config


def _config_module(name):
    return config_module(os.path.join(ROOT, "configs", f"{name}.py"))[0]


def test_section43_sweep_declares_learning_rates_then_hidden_sizes():
    s43 = _config_module("section43")
    runs = expand(lambda add: s43.sweep(add, "ml100k"))
    assert runs[0] == {LR: 1e-2, H: 100, "seed": 0}  # the defaults first: the reference
    assert sorted(r[LR] for r in runs if r[H] == 100) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert sorted(r[H] for r in runs if r[LR] == 1e-2) == [25, 50, 100, 200]
    assert len(runs) == 7
    assert len(expand(lambda add: s43.sweep(add, "synthetic,seeds=3"))) == 21
    assert expand(lambda add: s43.sweep(add, "criteo_tiny"))[0][LR] == 1e-3
    c = s43.get_config("ml1m")
    assert c.loss.rating_weight > 0 and c.data.split == "random"
    assert c.train.select_metric == "valid/rmse" and c.data.dataset == "ml1m"
    for variant in ("ml1m", "ml100k", "synthetic", "criteo", "criteo_tiny"):
        c = s43.get_config(variant)
        assert (c.train.max_steps, c.train.eval_every_steps) == (240, 20)
        assert c.train.patience * 10 > c.train.max_steps  # never stops early
    assert s43.get_config("criteo").task == "ctr" and not s43.get_config("criteo").baseline.enabled
    with pytest.raises(ValueError, match="section43 variant 'seeds=x'"):
        s43.get_config("ml1m,seeds=x")


# ----------------------------------------------------------------------------- rating config


def test_rating_sweep_mixes_the_recurrent_models_and_mf_on_one_split():
    rating = _config_module("rating")
    runs = expand(lambda add: rating.sweep(add, "ml1m"))
    assert len(runs) == 15 and runs[0] == {"seed": 0}  # the aGRU first: the report's reference
    assert sum(r == {"model.cell": "gru", "seed": r["seed"]} for r in runs) == 3
    rec = {**RECOMMENDED_MODEL, **RECOMMENDED_RATINGS}  # reading the ratings, and without:
    assert sum(r == {**rec, "seed": r["seed"]} for r in runs) == 3
    items_only = {**RECOMMENDED_MODEL, "model.rating_input": False}
    assert sum(r == {**items_only, "seed": r["seed"]} for r in runs) == 3
    assert sum(r.get("baseline.name") == "mf" and r["task"] == "baseline" for r in runs) == 3
    base, mf = rating.get_config("ml1m"), rating.get_config("ml1m,mf")
    assert base.task == "" and base.loss.rating_weight > 0 and base.data.split == "random"
    assert base.train.select_metric == "valid/rmse" and base.data.dataset == "ml1m"
    assert mf.task == "baseline" and mf.baseline.name == "mf" and mf.baseline.mf.factors > 0
    assert mf.data.to_dict() == base.data.to_dict()  # one split for every method
    assert rating.get_config("ml100k,gru").model.cell == "gru"
    with pytest.raises(ValueError, match="unknown rating variant 'svd'"):
        rating.get_config("ml1m,svd")
    with pytest.raises(ValueError, match="unknown rating sweep variant 'mf'"):
        expand(lambda add: rating.sweep(add, "ml1m,mf"))


def test_ranking_sweep_takes_each_methods_own_config():
    ranking = _config_module("ranking")
    runs = expand(lambda add: ranking.sweep(add, "ml1m"))
    assert len(runs) == 5 * 3 + 2 and runs[0] == {"seed": 0}
    rec = {**RECOMMENDED_MODEL, **RECOMMENDED_SEEN}  # MovieLens's recommended model
    assert sum(r == {**rec, "seed": r["seed"]} for r in runs) == 3
    sub = expand(lambda add: ranking.sweep(add, "ml1m,seeds=1,methods=agru+pop"))
    assert sub == [{"seed": 0}, {"task": "baseline", "baseline.name": "pop", "seed": 0}]
    # A method's row is the same run as its own config file's.
    sasrec = ranking.get_config("ml1m,sasrec")
    own = _config_module("sasrec").get_config("ml1m")
    for group in ("model", "loss", "optim", "data", "eval"):
        assert sasrec[group].to_dict() == own[group].to_dict(), group
    assert (sasrec.train.epochs, sasrec.train.patience) == (own.train.epochs, own.train.patience)
    itemcf = ranking.get_config("ml1m,itemcf")
    assert itemcf.task == "baseline" and itemcf.baseline.itemcf.time_window_m == 10
    with pytest.raises(ValueError, match="unknown ranking variant 'bert4rec'"):
        ranking.get_config("ml1m,bert4rec")
    with pytest.raises(ValueError, match="unknown ranking sweep variant 'gru'"):
        expand(lambda add: ranking.sweep(add, "ml1m,gru"))


# ----------------------------------------------------------------------------- leaderboard

LB_CONFIG = {"seed": 0, "train": {"select_metric": "valid/ndcg@10"}}
# method -> {lr: ([test ndcg per seed], [valid ndcg per seed])}; a baseline has lr None.
LB = {
    "rec": {0.01: ([0.30, 0.32, 0.31], [0.40, 0.41, 0.42]),
            # the best *test* point has the worse validation: it must not be chosen
            0.03: ([0.50, 0.52, 0.51], [0.20, 0.21, 0.22])},
    "gru": {0.01: ([0.25, 0.28, 0.26], [0.30, 0.30, 0.31]),
            0.03: ([0.20, 0.21, 0.20], [0.35, 0.36, 0.37])},
    "itemcf": {None: ([0.29], [0.33])},
}  # fmt: skip


@pytest.fixture(scope="module")
def leaderboard_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    runs = []
    for method, grid in LB.items():
        for lr, (test, valid) in grid.items():
            for seed, (t, v) in enumerate(zip(test, valid, strict=True)):
                overrides = {"method": method, "seed": seed} | ({LR: lr} if lr else {})
                metrics = {"test/ndcg@10": t, "valid/ndcg@10": v, "test/hr@10": 2 * t}
                runs.append((overrides, metrics, 3.0, [(10, v - 0.1), (20, v)]))
    _write_sweep(str(root / "ml100k"), "configs/leaderboard.py:ml100k", LB_CONFIG, runs)
    return root


def test_leaderboard_selects_on_validation_and_tests_against_the_best(leaderboard_dir):
    from durgru_jax import leaderboard
    from durgru_jax.stats import paired_t_test

    b = leaderboard.board(report.load_sweep(str(leaderboard_dir / "ml100k")))
    assert b.metric == "test/ndcg@10" and b.select == "valid/ndcg@10"
    chosen = {e.method: e.group.overrides.get(LR) for e in b.entries}
    assert chosen == {"rec": 0.01, "gru": 0.03, "itemcf": None}  # validation, not test
    assert [e.method for e in b.entries] == ["rec", "itemcf", "gru"]  # by test score
    # gru (0.20, 0.21, 0.20) against rec (0.30, 0.32, 0.31), paired by seed
    want = paired_t_test([0.20, 0.21, 0.20], [0.30, 0.32, 0.31])
    assert b.tests["gru"].p == pytest.approx(want.p) and b.tests["gru"].p < 0.05
    # the deterministic baseline's one value stands for every seed
    want = paired_t_test([0.29] * 3, [0.30, 0.32, 0.31])
    assert b.tests["itemcf"].p == pytest.approx(want.p)
    # the best is tested against the second
    assert b.tests["rec"].diff == pytest.approx(-want.diff)
    assert leaderboard.within_noise(b, b.entries[0])
    assert leaderboard.within_noise(b, b.entries[1]) == (want.p >= 0.05)
    assert not leaderboard.within_noise(b, b.entries[2])


def test_leaderboard_columns_keep_the_declared_order_across_datasets():
    from durgru_jax.leaderboard import merged_order

    full = ["pop", "itemcf", "agru", "rec", "gru", "sasrec"]
    with_mf = ["pop", "itemcf", "mf", "agru", "rec"]  # a dataset with ratings, a subset
    assert merged_order([full, with_mf]) == ["pop", "itemcf", "mf", "agru", "rec", "gru", "sasrec"]
    assert merged_order([["rec", "gru"], full]) == ["pop", "itemcf", "agru", "rec", "gru", "sasrec"]
    assert merged_order([["a", "a", "b"]]) == ["a", "b"]


def test_leaderboard_two_single_values_are_not_within_noise(tmp_path):
    from durgru_jax import leaderboard

    runs = []
    for method, values in (("itemcf", [0.9]), ("pop", [0.1]), ("gru", [0.2, 0.3, 0.25])):
        for seed, v in enumerate(values):
            metrics = {"test/ndcg@10": v, "valid/ndcg@10": v}
            runs.append(({"method": method, "seed": seed}, metrics, 1.0, [(10, v)]))
    _write_sweep(str(tmp_path / "t"), "configs/leaderboard.py:taobao", LB_CONFIG, runs)
    b = leaderboard.board(report.load_sweep(str(tmp_path / "t")))
    assert [e.method for e in b.entries] == ["itemcf", "gru", "pop"]
    assert b.tests["pop"] is None and not leaderboard.within_noise(b, b.entries[2])
    assert b.tests["gru"] is not None  # the best's one value stands for each of gru's seeds


def test_leaderboard_report_table_and_figures(leaderboard_dir):
    pytest.importorskip("matplotlib")
    out = report.write_report(str(leaderboard_dir))
    text = open(out).read()
    assert text.startswith("# Leaderboard") and "## ml100k" in text
    summary = text.split("## Summary")[1].split("## ml100k")[0]
    row = next(line for line in summary.splitlines() if line.startswith("| ml100k"))
    assert row.split(" | ")[1:3] == ["ndcg@10", "**0.3100**"]  # rec, the best, in bold
    assert "0.2033 *" in row  # gru: significantly below the best
    assert "0.01: 0.4100" in text and "0.03: 0.2100" in text  # the grid, validation means
    png = leaderboard_dir / "leaderboard_ml100k.png"
    assert png.stat().st_size > 5000


def test_leaderboard_sweep_declares_one_budget_for_every_neural_method():
    lb = _config_module("leaderboard")
    runs = expand(lambda add: lb.sweep(add, "ml100k"))
    by_method: dict[str, list] = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    assert set(by_method) == set(lb.METHODS)  # ML-100K has ratings: mf too
    for m in lb.NEURAL:
        lrs = sorted({r[LR] for r in by_method[m]})
        centre = lb.get_config(f"ml100k,{m}").optim.learning_rate
        assert lrs == pytest.approx([centre / 3, centre, 3 * centre], rel=1e-2), m
        assert len(by_method[m]) == len(lb.LR_GRID) * lb.SEEDS
    for m in lb.BASELINES:
        assert [r["seed"] for r in by_method[m]] == [0]
    assert "mf" not in {r["method"] for r in expand(lambda add: lb.sweep(add, "taobao"))}
    with pytest.raises(ValueError, match="mf needs ratings"):
        lb.get_config("yoochoose,mf")
    # One protocol per dataset: every method sees the same data and evaluation.
    for dataset in lb.DATASETS:
        configs = [lb.get_config(f"{dataset},{m}") for m in lb.methods_of(dataset)]
        for c in configs[1:]:
            assert c.data.to_dict() == configs[0].data.to_dict(), (dataset, c.method)
            assert c.eval.to_dict() == configs[0].eval.to_dict(), (dataset, c.method)
            assert c.train.select_metric == configs[0].train.select_metric
            assert c.train.epochs == configs[0].train.epochs  # one training length
    assert lb.get_config("yoochoose,rec").train.epochs == 60  # raised: runs still improved
    assert (
        lb.get_config("ml100k,gru").train.epochs
        == load_config(os.path.join(ROOT, "configs", "ml100k.py")).train.epochs
    )  # elsewhere the dataset's own cap
    rec, agru = lb.get_config("ml1m-gru4rec,rec"), lb.get_config("ml1m-gru4rec,agru")
    assert {k: rec[k.split(".")[0]][k.split(".")[1]] for k in RECOMMENDED_MODEL} == dict(
        RECOMMENDED_MODEL
    )
    assert (
        agru.model.to_dict() == _config_module("ml1m").get_config("gru4rec,paper").model.to_dict()
    )
    assert lb.get_config("taobao-nextday,rec").eval.user_topn  # paper 001's protocol
    for dataset, (_, default, _) in lb.DATASETS.items():  # rec: what the dataset config trains
        got = lb.get_config(f"{dataset},rec")
        want = load_config(os.path.join(ROOT, "configs", default))
        assert got.model.to_dict() == want.model.to_dict(), dataset
        assert got.loss.to_dict() == want.loss.to_dict(), dataset
    assert lb.get_config("taobao,rec").model.repeat_head
    sasrec = lb.get_config("ml100k,sasrec")
    assert sasrec.model.cell == "sasrec" and sasrec.optim.learning_rate == 1e-3


def test_leaderboard_end_to_end_on_tiny_data(tmp_path, make_tiny):
    """The sweep trains each method's grid (seed and learning rate vectorised), the report
    reads it back: one entry per method, the pop baseline a single run."""
    pytest.importorskip("matplotlib")
    from durgru_jax import leaderboard, sweep

    lb = _config_module("leaderboard")
    config = lb.get_config("synthetic")
    tiny = make_tiny()
    config.data, config.model = tiny.data, tiny.model  # the tiny data and sizes, aGRU model
    config.train.epochs = 2
    config.train.batch_size = tiny.train.batch_size
    spec = os.path.join(ROOT, "configs", "leaderboard.py:synthetic,methods=rec+gru+pop,seeds=2")
    work = str(tmp_path / "lb" / "synthetic")
    rows = sweep.run_sweep(config, spec, work)
    assert len(rows) == 2 * 3 * 2 + 1
    out = report.write_report(str(tmp_path / "lb"))
    b = leaderboard.board(report.load_sweep(work))
    assert sorted(e.method for e in b.entries) == ["gru", "pop", "rec"]
    trained = [e for e in b.entries if e.method != "pop"]
    assert all(len(e.group.runs) == 2 and len(e.grid) == 3 for e in trained)
    for e in trained:  # one vectorised group of 6
        assert {r.values["trained_with"] for g, _ in e.grid for r in g.runs} == {6}
    assert "| synthetic | ndcg@10 |" in open(out).read()


def test_curve_drops_records_of_an_earlier_try_beyond_the_final_step():
    """A run started over (its checkpoints gone) appends to the same log: its own records win,
    and the first try's records past its final step are not part of its curve."""
    first_try = [{"step": s, "valid/ndcg@10": 0.1 * s} for s in (10, 20, 30)]
    second = [{"step": 10, "valid/ndcg@10": 0.5}, {"step": 20, "valid/ndcg@10": 0.6}]
    run = report.Run("r", {}, 0, {}, {}, first_try + second + [{"step": 20, "final": True}])
    assert report._curve(run, "valid/ndcg@10") == {10: 0.5, 20: 0.6}
    unfinished = report.Run("r", {}, 0, {}, {}, first_try + second)
    assert report._curve(unfinished, "valid/ndcg@10") == {10: 0.5, 20: 0.6, 30: 3.0}
