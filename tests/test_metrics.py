"""Tests for durgru_jax.metrics: exact full ranking and the metrics computed from ranks."""

from __future__ import annotations

import numpy as np
import pytest

from durgru_jax.metrics import rank_and_topk, ranking_metrics, rating_metrics

N = 6  # items 1..6; column 0 is padding
# Scores of ids 0..6 per user. With u = these rows, v = identity and c = 0, the model's scores
# are exactly these numbers (no rounding anywhere).
SCORES = np.array(
    [
        [100, 5, 3, 3, 3, 1, 4],  # target 3 tied with 2 and 4; 1 and 6 above; id 0 ignored
        [0, 2, 9, 7, 1, 8, 6],  # target 2 is the best
        [0, 9, 4, 5, 1, 2, 8],  # target 3; 1 and 6 above but in the history
        [0, 1, 2, 3, 4, 5, 6],  # target 5 is in the history
        [0, 6, 5, 4, 3, 2, 1],  # unknown target (id 0)
        [0, 1, 1, 1, 1, 1, 1],  # all equal: the target ranks last
    ],
    np.float32,
)
TARGET = np.array([3, 2, 3, 5, 0, 4], np.int32)
HIST = np.array([[0, 0, 0], [0, 0, 0], [1, 6, 0], [5, 2, 0], [0, 0, 0], [0, 0, 0]], np.int32)
RANK_EXCL = [4, 0, 0, N, N, 5]
RANK_NO_EXCL = [4, 0, 2, 1, N, 5]
TOP2_EXCL = [[1, 6], [2, 5], [3, 2], [6, 4], [1, 2]]  # rows 0..4 (row 5 is all ties)
TOP2_NO_EXCL = [[1, 6], [2, 5], [1, 6], [6, 5], [1, 2]]


def _rank(exclude, chunk, kmax=2, scores=SCORES, target=TARGET, hist=HIST):
    u = scores
    v = np.eye(scores.shape[1], dtype=np.float32)
    c = np.zeros(scores.shape[1], np.float32)
    rank, top = rank_and_topk(
        u, v, c, target, hist, n_items=N, kmax=kmax, item_chunk=chunk, exclude_history=exclude
    )
    return np.asarray(rank), np.asarray(top)


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, N + 1])
def test_hand_computed_ranks_and_topk(chunk):
    rank, top = _rank(True, chunk)
    np.testing.assert_array_equal(rank, RANK_EXCL)
    np.testing.assert_array_equal(top[:5], TOP2_EXCL)
    assert set(top[5]) <= set(range(1, N + 1))  # ties: any real items, never 0 or padding
    rank, top = _rank(False, chunk)
    np.testing.assert_array_equal(rank, RANK_NO_EXCL)
    np.testing.assert_array_equal(top[:5], TOP2_NO_EXCL)


@pytest.mark.parametrize("chunk", [1, 3, N + 1])
def test_top_scores_are_the_scores_of_the_top_items(chunk):
    u, v, c = SCORES, np.eye(N + 1, dtype=np.float32), np.zeros(N + 1, np.float32)
    rank, top, score = rank_and_topk(
        u,
        v,
        c,
        TARGET,
        HIST,
        n_items=N,
        kmax=2,
        item_chunk=chunk,
        exclude_history=True,
        with_scores=True,
    )
    np.testing.assert_array_equal(rank, RANK_EXCL)
    np.testing.assert_array_equal(top[:5], TOP2_EXCL)
    np.testing.assert_array_equal(score[:5], [[5, 4], [9, 8], [5, 4], [6, 4], [6, 5]])
    np.testing.assert_array_equal(score[5], [1, 1])
    # Fewer rankable items than kmax: the list is padded with -inf.
    _, _, score = rank_and_topk(
        u[:1],
        v,
        c,
        TARGET[:1],
        HIST[:1],
        n_items=N,
        kmax=N + 2,
        item_chunk=chunk,
        exclude_history=True,
        with_scores=True,
    )
    assert np.isneginf(np.asarray(score)[0, N:]).all()


def test_item_zero_is_never_ranked_nor_recommended():
    scores = np.array([[1e6, 1, 2, 3, 4, 5, 6]], np.float32)
    rank, top = _rank(
        True, 3, kmax=N, scores=scores, target=np.array([1]), hist=np.zeros((1, 1), np.int32)
    )
    assert rank[0] == N - 1  # 5 items above, item 0 not counted
    np.testing.assert_array_equal(top[0], [6, 5, 4, 3, 2, 1])


def test_bias_and_factors_both_enter_scores():
    rng = np.random.default_rng(0)
    u = rng.integers(-3, 4, (5, 2)).astype(np.float32)
    v = rng.integers(-3, 4, (2, N + 1)).astype(np.float32)
    c = rng.integers(-3, 4, N + 1).astype(np.float32)
    target = np.array([1, 2, 3, 4, 5], np.int32)
    hist = np.zeros((5, 2), np.int32)
    rank, _ = rank_and_topk(
        u, v, c, target, hist, n_items=N, kmax=3, item_chunk=4, exclude_history=False
    )
    s = u @ v + c
    for b in range(5):
        others = [j for j in range(1, N + 1) if j != target[b]]
        want = sum(s[b, j] > s[b, target[b]] for j in others)
        want += sum(s[b, j] == s[b, target[b]] for j in others)
        assert rank[b] == want


def test_rank_agrees_with_topk_on_float_scores():
    """With random float factors, the rank must agree with the top-K list computed in the
    same call: a target listed first must have rank 0, and any target in the list must have
    its position as rank. It must not depend on the chunk size either."""
    rng = np.random.default_rng(0)
    b, d, n = 64, 48, 200
    u = rng.normal(size=(b, d)).astype(np.float32)
    v = rng.normal(size=(d, n + 1)).astype(np.float32)
    c = rng.normal(size=n + 1).astype(np.float32)
    s = u.astype(np.float64) @ v + c
    s[:, 0] = -np.inf
    target = np.argmax(s, 1).astype(np.int32)
    hist = np.zeros((b, 4), np.int32)
    ranks = []
    for chunk in (7, 64, n + 1):
        rank, top = rank_and_topk(
            u, v, c, target, hist, n_items=n, kmax=5, item_chunk=chunk, exclude_history=True
        )
        rank, top = np.asarray(rank), np.asarray(top)
        for i in range(b):
            if target[i] in top[i]:
                assert rank[i] == list(top[i]).index(target[i]), (chunk, i)
        ranks.append(rank)
    np.testing.assert_array_equal(ranks[0], ranks[1])
    np.testing.assert_array_equal(ranks[0], ranks[2])


# --------------------------------------------------------------------------- ranking_metrics


def test_ranking_metrics_by_hand():
    rank = np.array([0, 2, 4, 10, 1])
    user = np.array([0, 0, 1, 2, 3])  # user 0 has two examples, one a hit at K=1
    top = np.array(
        [
            [1, 2, 3, 4, 5],
            [1, 2, 6, 7, 8],
            [2, 1, 9, 3, 4],
            [1, 3, 2, 4, 5],
            [2, 1, 3, 0, 0],  # padding ids are not items
        ]
    )
    m = ranking_metrics(rank, top, user, ks=(1, 3, 5), n_items=10, prefix="valid")
    l2 = np.log2
    want = {
        "valid/n_examples": 5.0,
        "valid/hr@1": 0.2,
        "valid/hr@3": 0.6,
        "valid/hr@5": 0.8,
        "valid/ndcg@1": 0.2,
        "valid/ndcg@3": (1 + 1 / l2(4) + 1 / l2(3)) / 5,  # ranks 0, 2, 1
        "valid/ndcg@5": (1 + 1 / l2(4) + 1 / l2(6) + 1 / l2(3)) / 5,
        "valid/mrr@1": 0.2,
        "valid/mrr@3": (1 + 1 / 3 + 1 / 2) / 5,
        "valid/mrr@5": (1 + 1 / 3 + 1 / 5 + 1 / 2) / 5,
        "valid/precision@1": 0.2,
        "valid/precision@3": 0.2,
        "valid/precision@5": 0.16,
        "valid/recall@1": 0.2,
        "valid/recall@3": 0.6,
        "valid/recall@5": 0.8,
        "valid/user_coverage@1": 0.25,  # user 0 only
        "valid/user_coverage@3": 0.5,  # users 0 and 3
        "valid/user_coverage@5": 0.75,  # users 0, 1, 3
        "valid/item_coverage@1": 0.2,  # {1, 2}
        "valid/item_coverage@3": 0.5,  # {1, 2, 3, 6, 9}
        "valid/item_coverage@5": 0.9,  # {1..9}
    }
    assert set(m) == set(want)
    for k, v in want.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k
    assert want["valid/ndcg@3"] == pytest.approx(0.42618596, abs=1e-8)


def test_ranking_metrics_empty():
    m = ranking_metrics(np.zeros(0), np.zeros((0, 5)), np.zeros(0), (5,), 10, "test")
    assert m == {"test/n_examples": 0.0}


def test_rating_metrics_by_hand():
    m = rating_metrics(np.array([3.0, 4.0, 2.5]), np.array([4.0, 4.0, 1.0]), "test")
    # errors -1, 0, 1.5: mse = 3.25 / 3, mae = 2.5 / 3
    assert m["test/rmse"] == pytest.approx(1.0408330, abs=1e-7)
    assert m["test/mae"] == pytest.approx(0.8333333, abs=1e-7)
    assert set(m) == {"test/rmse", "test/mae"}
    assert rating_metrics(np.zeros(0), np.zeros(0), "test") == {}
