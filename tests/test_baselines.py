"""Baselines: ItemCF-IUF by hand, top-k pruning, the eq. 4 window, biased MF, run() end to end,
and that nothing is fitted on validation or test events."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import ml_collections
import numpy as np
import pandas as pd
import pytest

from durgru_jax.baselines import itemcf, mf
from durgru_jax.baselines import run as baseline_run
from durgru_jax.config import EvalConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data import synthetic
from durgru_jax.data.dataset import TRAIN, PrepConfig, prepare
from durgru_jax.data.sources import load_prepared
from durgru_jax.evaluate import evaluate_popularity, evaluate_scorer, score_factors, topk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Paper 001's own example: user A likes items 1, 2, 3; B likes 1 and 3; C likes 1 and 4.
#   |N(A)| = 3 -> 1/ln 4 = 0.72135;  |N(B)| = |N(C)| = 2 -> 1/ln 3 = 0.91024
#   |N(1)| = 3, |N(2)| = 1, |N(3)| = 2, |N(4)| = 1
#   w12 = (1/ln 4) / sqrt(3 * 1)          = 0.72135 / 1.73205 = 0.41647
#   w13 = (1/ln 4 + 1/ln 3) / sqrt(3 * 2) = 1.63159 / 2.44949 = 0.66609
#   w14 = (1/ln 3) / sqrt(3 * 1)          = 0.91024 / 1.73205 = 0.52553
#   w23 = (1/ln 4) / sqrt(1 * 2)          = 0.72135 / 1.41421 = 0.51007
#   w24 = w34 = 0 (no common user)
USER = np.array([0, 0, 0, 1, 1, 2, 2])
ITEM = np.array([1, 2, 3, 1, 3, 1, 4])
W_HAND = {(1, 2): 0.41647, (1, 3): 0.66609, (1, 4): 0.52553, (2, 3): 0.51007}


def _hand_matrix(entries) -> np.ndarray:
    w = np.zeros((5, 5))
    for (i, j), x in entries.items():
        w[i, j] = w[j, i] = x
    return w


def test_iuf_similarity_matches_hand_computation():
    w = itemcf.similarity(USER, ITEM, 3, 4)
    np.testing.assert_allclose(w, _hand_matrix(W_HAND), atol=1e-5)
    assert w[1, 3] == pytest.approx((1 / math.log(4) + 1 / math.log(3)) / math.sqrt(6))
    # Without IUF: plain cosine on binary data, w13 = 2 / sqrt(6).
    w_cos = itemcf.similarity(USER, ITEM, 3, 4, iuf=False)
    assert w_cos[1, 3] == pytest.approx(2 / math.sqrt(6))
    # alpha: |N(i)|^alpha |N(j)|^(1 - alpha), row i = history item: w_1->2 = (1/ln 4) / 3.
    w_a = itemcf.similarity(USER, ITEM, 3, 4, alpha=1.0)
    assert w_a[1, 2] == pytest.approx(1 / math.log(4) / 3)
    assert w_a[2, 1] == pytest.approx(1 / math.log(4) / 1)
    # Block size changes nothing.
    np.testing.assert_allclose(itemcf.similarity(USER, ITEM, 3, 4, block_rows=2), w)


def test_topk_keeps_the_k_most_similar_neighbours():
    model = itemcf.fit(USER, ITEM, 3, 4, itemcf.ItemCFConfig(n_neighbors=2))
    # Item 1: w13 = .666 > w14 = .526 > w12 = .416  ->  {3, 4}; item 4 has a single neighbour.
    assert model.nbr_idx[1].tolist() == [3, 4]
    assert model.nbr_idx[3].tolist() == [1, 2]
    assert model.nbr_val[4].tolist() == pytest.approx([0.52553, 0.0], abs=1e-5)
    w2 = model.dense()
    assert w2[1, 2] == 0.0 and w2[2, 1] == pytest.approx(0.41647, abs=1e-5)  # no longer symmetric
    w1 = model.dense(1)
    assert (w1 > 0).sum(axis=1).tolist() == [0, 1, 1, 1, 1]
    assert w1[1, 3] == pytest.approx(0.66609, abs=1e-5)
    # "max" normalisation divides each row by its largest weight.
    norm = itemcf.fit(USER, ITEM, 3, 4, itemcf.ItemCFConfig(n_neighbors=2, normalize="max"))
    assert norm.dense()[1, 3] == pytest.approx(1.0)
    assert norm.dense()[1, 4] == pytest.approx(0.52553 / 0.66609, abs=1e-5)


def test_time_window_counts_only_nearby_events():
    # A's sequence is 1, 2, 3: with m = 1, items 1 and 3 (two positions apart) no longer
    # co-occur for A, so w13 = (1/ln 3) / sqrt(6) (B's 1, 3 are adjacent); |N(u)| unchanged.
    w1 = itemcf.similarity(USER, ITEM, 3, 4, window=1)
    expect = dict(W_HAND)
    expect[(1, 3)] = 1 / math.log(3) / math.sqrt(6)
    np.testing.assert_allclose(w1, _hand_matrix(expect), atol=1e-5)
    # A window as long as every sequence is the unwindowed similarity.
    np.testing.assert_allclose(
        itemcf.similarity(USER, ITEM, 3, 4, window=2), itemcf.similarity(USER, ITEM, 3, 4)
    )
    # Scoring: only the last m visible events form the history.
    offsets, items = np.array([0, 3]), np.array([1, 3, 2])
    full = itemcf.history_matrix(offsets, items, np.array([0]), 4, window=0)
    last = itemcf.history_matrix(offsets, items, np.array([0]), 4, window=1)
    assert full.toarray()[0].tolist() == [0, 1, 1, 1, 0]
    assert last.toarray()[0].tolist() == [0, 0, 1, 0, 0]


def test_windowed_cooccurrence_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 12, size=25)
    user = np.repeat(np.arange(25), lens)
    item = rng.integers(1, 9, size=len(user))  # repeats within a user on purpose
    d_u = rng.random(25)
    m = 3
    brute = np.zeros((9, 9))
    for u in range(25):
        seq = item[user == u]
        pairs = {
            (seq[a], seq[b])
            for a in range(len(seq))
            for b in range(len(seq))
            if a != b and abs(a - b) <= m and seq[a] != seq[b]
        }
        for i, j in pairs:
            brute[i, j] += d_u[u]
    for chunk in (1, 7, 10**6):
        got = itemcf.windowed_cooccurrence(user, item, d_u, 8, m, chunk_pairs=chunk).toarray()
        np.testing.assert_allclose(got, brute)


def _hand_prepared() -> ds.Prepared:
    # B rates 1, 3 (training), then 2 (validation), then 4 (test). A and C have too few events
    # (min_user_events=4) to be held out: training is exactly paper 001's example.
    rows = [("A", 1, 1), ("A", 2, 2), ("A", 3, 3), ("B", 1, 4), ("B", 3, 5)]
    rows += [("B", 2, 6), ("B", 4, 7), ("C", 1, 8), ("C", 4, 9)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    df["rating"] = [5.0, 3.0, 4.0, 4.0, 2.0, 3.0, 1.0, 5.0, 1.0]
    p = prepare(df, PrepConfig(min_user_events=4, gap_buckets=0, hour_buckets=0))
    assert p.item_ids[1:].tolist() == [1, 2, 3, 4]  # raw id = mapped id
    return p


def _rank_valid(p, k, ks=(1, 2)):
    train = p.split == TRAIN
    w = itemcf.fit(
        p.user[train], p.item[train], p.n_users, p.n_items, itemcf.ItemCFConfig(n_neighbors=k)
    ).matrix()
    ex = ds.eval_examples(p, "valid")
    eval_cfg = EvalConfig(ks=ks, batch_size=4, item_chunk=3, exclude_history=True)

    def make_scores(rows, batch):
        b = len(batch["target"])
        h = itemcf.history_matrix(ex["hist_offsets"], ex["hist_items"], rows, 4, 0, batch=b)
        return itemcf.scores(w, h)

    return evaluate_scorer(score_factors(make_scores), ex, eval_cfg, 4, "valid"), w


def test_itemcf_ranks_a_tiny_example_as_computed_by_hand():
    p = _hand_prepared()
    # B's validation example: history {1, 3} (excluded), candidates 2 and 4.
    # All neighbours: s(2) = w12 + w32 = .41647 + .51007 = .92654 > s(4) = w14 = .52553 -> rank 0.
    m, _ = _rank_valid(p, k=3)
    assert m["valid/n_examples"] == 1 and m["valid/hr@1"] == 1.0
    # k = 2: topk(1) = {3, 4}, topk(3) = {1, 2}: s(2) = w32 = .51007 < s(4) = w14 = .52553.
    m, w = _rank_valid(p, k=2)
    assert m["valid/hr@1"] == 0.0 and m["valid/hr@2"] == 1.0 and m["valid/mrr@2"] == 0.5
    # The weighted-average rating of item 2 from B's ratings (item 1: 4, item 3: 2), k = 2:
    # only item 3 has 2 as a neighbour -> 2.0.
    ex = ds.eval_examples(p, "valid")
    hr = baseline_run.history_ratings(p, "valid", ex, drop_unknown=False)
    assert hr.tolist() == [4.0, 2.0]
    pred, from_nbrs = itemcf.predict_ratings(
        w, ex["hist_offsets"], ex["hist_items"], hr, np.array([0]), ex["target"], 0, 3.0
    )
    assert pred.tolist() == pytest.approx([2.0]) and from_nbrs.tolist() == [True]


def test_topk_recommends_by_hand_with_the_evaluation_loop():
    p = _hand_prepared()
    train = p.split == TRAIN
    w = itemcf.fit(
        p.user[train], p.item[train], p.n_users, p.n_items, itemcf.ItemCFConfig(n_neighbors=3)
    ).matrix()
    ex = ds.eval_examples(p, "valid")
    hist = {k: ex[k] for k in ("hist_offsets", "hist_items")}  # no target: a recommendation

    def make_scores(rows, batch):
        b = len(batch["target"])
        return itemcf.scores(w, itemcf.history_matrix(*hist.values(), rows, 4, 0, batch=b))

    scorer = score_factors(make_scores)
    # B's history {1, 3}: s(2) = w12 + w32 = .92654, s(4) = w14 = .52553; 1 and 3 excluded.
    items, scores = topk(scorer, hist, 4, 2, item_chunk=3)
    assert items.tolist() == [[2, 4]]
    np.testing.assert_allclose(scores, [[0.92654, 0.52553]], atol=1e-5)
    # Without the exclusion the history's own items compete: s(1) = w31 = .66609 is second.
    items, scores = topk(scorer, hist, 4, 2, exclude_history=False)
    assert items.tolist() == [[2, 1]]
    np.testing.assert_allclose(scores, [[0.92654, 0.66609]], atol=1e-5)


def _low_rank_ratings(seed=0, n_users=150, n_items=80, rank=2):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, rank))
    v = rng.normal(size=(n_items, rank))
    full = 3.0 + 0.3 * rng.normal(size=(n_users, 1)) + u @ v.T * 0.7
    mask = rng.random((n_users, n_items)) < 0.5
    uu, ii = np.nonzero(mask)
    r = full[uu, ii] + 0.1 * rng.normal(size=len(uu))
    test = rng.random(len(uu)) < 0.2
    return uu, ii + 1, r.astype(np.float32), test, n_users, n_items


def test_mf_learns_a_low_rank_matrix():
    uu, ii, r, test, n_users, n_items = _low_rank_ratings()
    cfg = mf.MFConfig(factors=4, reg=0.01, lr=2e-2, epochs=25, batch_size=512, clip=False)
    valid = (uu[test], ii[test], r[test])
    model = mf.fit(uu[~test], ii[~test], r[~test], n_users, n_items, cfg, seed=0, valid=valid)
    hist = [h["train_rmse"] for h in model.history]
    assert hist[-1] < 0.5 * hist[0]
    held = np.sqrt(np.mean((model.predict(uu[test], ii[test]) - r[test]) ** 2))
    global_mean = np.sqrt(np.mean((r[~test].mean() - r[test]) ** 2))
    assert held < 0.5 * global_mean
    assert model.history[model.best_epoch]["valid_rmse"] == min(
        h["valid_rmse"] for h in model.history
    )


def _baseline_config(base, name, **group):
    c = base
    c.task = "baseline"
    c.baseline = ml_collections.ConfigDict({"name": name})
    if group:
        c.baseline[name] = ml_collections.ConfigDict(group)
    return c


def test_run_writes_results_for_pop_and_itemcf(tiny_config, make_tiny, tmp_path):
    c = _baseline_config(tiny_config, "pop")
    res = baseline_run.run(c, str(tmp_path / "pop"))
    with open(tmp_path / "pop" / "results.json") as f:
        saved = json.load(f)
    assert saved["baseline"] == "pop" and os.path.exists(tmp_path / "pop" / "config.json")
    for split in ("valid", "test"):
        assert f"{split}/hr@10" in saved["metrics"] and f"{split}/ndcg@10" in saved["metrics"]
    assert {"seconds", "events_per_second"} <= set(saved["train"])
    # The same ranking as the main model's built-in most-popular (smoothed log counts).
    prep = load_prepared(c.data, c.seed)
    rc = from_config(make_tiny())
    ref = evaluate_popularity(
        prep.log_popularity, rc, ds.eval_examples(prep, "test"), prep.n_items, "test"
    )
    for key, value in ref.items():
        assert res["metrics"][key] == pytest.approx(value)

    c = _baseline_config(make_tiny(), "itemcf", n_neighbors=10, time_window_m=5, select_k=(5, 10))
    res = baseline_run.run(c, str(tmp_path / "itemcf"))
    assert res["train"]["n_neighbors"] in (5, 10)
    assert set(res["train"]["selection"]["scores"]) == {5, 10}
    assert 0.0 <= res["metrics"]["test/ndcg@10"] <= res["metrics"]["test/hr@10"] <= 1.0


def test_run_mf_on_a_rating_file(make_tiny, tmp_path):
    uu, ii, r, _, _, _ = _low_rank_ratings(n_users=60, n_items=40)
    ts = np.arange(len(uu))
    path = tmp_path / "u.data"
    lines = [f"{u + 1}\t{i}\t{x:.3f}\t{t}" for u, i, x, t in zip(uu, ii, r, ts, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    c = make_tiny()
    c.data.source, c.data.path = "movielens", str(path)
    c.data.split, c.data.random_test_ratio, c.data.random_valid_ratio = "random", 0.1, 0.1
    c = _baseline_config(c, "mf", factors=4, reg=0.01, lr=2e-2, epochs=15, batch_size=256)
    res = baseline_run.run(c, str(tmp_path / "mf"))
    m = res["metrics"]
    assert m["test/rmse"] < 0.8 and "valid/rmse" in m and "test/hr@10" in m
    assert res["train"]["best_epoch"] >= 0 and len(res["train"]["history"]) == 15
    # ItemCF's weighted-average rating prediction on the same file.
    c.baseline = ml_collections.ConfigDict({"name": "itemcf"})
    res = baseline_run.run(c, str(tmp_path / "itemcf"))
    assert "test/rmse" in res["metrics"] and res["metrics"]["test/rating_from_neighbours"] > 0.5


def test_fitting_never_sees_validation_or_test_events():
    events = synthetic.generate_synthetic(n_users=80, n_items=60, n_topics=4, min_len=6, max_len=12)
    events = events[[c for c in events.columns if not c.startswith("_")]]
    cfg = PrepConfig(gap_buckets=0, hour_buckets=0)
    p = prepare(events, cfg)
    changed = events.copy()
    held = np.zeros(len(events), bool)
    # Replace every held-out event's item (positions are shared: prepare keeps its order).
    order = np.lexsort((events["timestamp"].to_numpy(), pd.factorize(events["user"])[0]))
    held[order] = p.split != TRAIN
    changed.loc[held, "item"] = (changed.loc[held, "item"] + 7) % 60
    q = prepare(changed, cfg)
    assert not np.array_equal(p.item[p.split != TRAIN], q.item[q.split != TRAIN])

    def fitted(prep, m):
        tr = prep.split == TRAIN
        conf = itemcf.ItemCFConfig(n_neighbors=10, time_window_m=m)
        return itemcf.fit(prep.user[tr], prep.item[tr], prep.n_users, prep.n_items, conf).dense()

    for m in (0, 3):
        np.testing.assert_array_equal(fitted(p, m), fitted(q, m))


def test_configs_load_and_copy_dataset_groups():
    def load(name, *args):
        spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, "configs", name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(*args)

    assert load("pop.py").baseline.name == "pop" and load("pop.py").data.source == "synthetic"
    c = load("itemcf.py", "ml1m")
    assert c.task == "baseline" and c.data.source == "movielens" and c.data.max_len == 100
    name, cfg = baseline_run.baseline_config(c)
    assert name == "itemcf" and cfg.n_neighbors == 20 and max(cfg.select_k) == 200
    c = load("mf.py")
    assert c.data.split == "random" and c.data.random_valid_ratio == 0.09
    assert baseline_run.baseline_config(c)[1].factors == 32
    with pytest.raises(ValueError, match="unknown dataset variant"):
        load("pop.py", "nope")
    c.baseline.mf.bogus = 1
    with pytest.raises(ValueError, match="bogus"):
        baseline_run.baseline_config(c)
