"""Paper 001's per-user top-N metrics (precision, recall, user and item coverage)."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from durgru_jax.baselines import run as baseline_run
from durgru_jax.metrics import ranking_metrics, user_topn_metrics


def test_user_topn_metrics_by_hand():
    # user 0: held-out items {5, 7} (5 twice); user 1: {an unknown item, 3}.
    user = np.array([0, 0, 0, 1, 1])
    target = np.array([5, 7, 5, 0, 3])
    top = np.array(
        [
            [5, 2, 9],  # user 0's earliest held-out example: its list
            [7, 1, 1],  # later examples' lists are not used (they saw held-out events)
            [7, 1, 1],
            [1, 4, 6],  # user 1's list
            [3, 1, 1],
        ]
    )
    m = user_topn_metrics(top, user, target, (1, 3), n_items=10, prefix="test")
    assert m["test/topn_users"] == 2
    # N=1: user 0 hits 5, user 1 misses; |T_0| = |T_1| = 2.
    assert m["test/topn_precision@1"] == pytest.approx(1 / 2)
    assert m["test/topn_recall@1"] == pytest.approx(1 / 4)
    assert m["test/topn_user_coverage@1"] == pytest.approx(1 / 2)
    assert m["test/topn_item_coverage@1"] == pytest.approx(2 / 10)  # {5, 1}
    # N=3: still one hit (7 is only in a later example's list).
    assert m["test/topn_precision@3"] == pytest.approx(1 / 6)
    assert m["test/topn_recall@3"] == pytest.approx(1 / 4)
    assert m["test/topn_user_coverage@3"] == pytest.approx(1 / 2)
    assert m["test/topn_item_coverage@3"] == pytest.approx(6 / 10)


def test_user_topn_equals_next_item_metrics_with_one_target_per_user():
    rng = np.random.default_rng(0)
    n, n_items = 50, 30
    top = np.stack([rng.permutation(np.arange(1, n_items + 1))[:10] for _ in range(n)])
    target = rng.integers(1, n_items + 1, n)
    pairs = zip(top, target, strict=True)
    rank = np.array([list(t).index(g) if g in t else n_items for t, g in pairs])
    user = np.arange(n)
    a = ranking_metrics(rank, top, user, (5, 10), n_items, "t")
    b = user_topn_metrics(top, user, target, (5, 10), n_items, "t")
    for k in (5, 10):
        assert b[f"t/topn_recall@{k}"] == pytest.approx(a[f"t/recall@{k}"])
        assert b[f"t/topn_precision@{k}"] == pytest.approx(a[f"t/precision@{k}"])
        assert b[f"t/topn_user_coverage@{k}"] == pytest.approx(a[f"t/user_coverage@{k}"])
        assert b[f"t/topn_item_coverage@{k}"] == pytest.approx(a[f"t/item_coverage@{k}"])


def test_switch_adds_the_metrics_to_baseline_and_model_runs(make_tiny, tmp_path):
    from durgru_jax.train import train_and_evaluate

    def config():
        c = make_tiny()
        c.eval.user_topn = True
        c.data.split = "temporal"  # held-out period: events after the cut-off
        c.data.temporal_by_sequence = False
        c.data.temporal_test_days = 3.0
        c.data.temporal_valid_days = 3.0
        c.train.epochs = 1
        return c

    res = train_and_evaluate(config(), str(tmp_path / "model"))
    m = res["metrics"]
    assert 0 < m["test/topn_users"] <= m["test/n_examples"]
    assert 0 <= m["test/topn_recall@10"] <= 1 and 0 <= m["test/topn_precision@10"] <= 1

    c = config()
    c.task = "baseline"
    c.baseline = ml_collections.ConfigDict({"name": "pop"})
    res = baseline_run.run(c, str(tmp_path / "pop"))
    assert res["metrics"]["test/topn_users"] == m["test/topn_users"]
    assert "test/topn_item_coverage@10" in res["metrics"]
