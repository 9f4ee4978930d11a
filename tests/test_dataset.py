"""Tests for durgru_jax.data.dataset: splits, fitted statistics, windows and examples.

Most tests build the event table by hand. Where an event must be followed through the
pipeline, its ``duration`` holds its row number in the file and ``duration_transform="none"``
keeps that value, so ``Prepared.dur`` and the ``dur`` arrays of windows and examples name
the file row of each event.
"""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest

from durgru_jax.data.dataset import (
    TEST,
    TRAIN,
    VALID,
    Prepared,
    PrepConfig,
    eval_examples,
    heldout_positions,
    iterate_eval_batches,
    iterate_train_batches,
    n_train_batches,
    prepare,
    train_windows,
)

DAY = 86400.0


def _frame(rows, tag_rows: bool = True) -> pd.DataFrame:
    """``rows`` of (user, item, timestamp[, duration]); by default duration = file row."""
    df = pd.DataFrame([r[:3] for r in rows], columns=["user", "item", "timestamp"]).astype(
        {"timestamp": float}
    )
    if tag_rows:
        df["duration"] = np.arange(len(df), dtype=float)
    elif len(rows[0]) > 3:
        df["duration"] = [float(r[3]) for r in rows]
    return df


def _prep(df: pd.DataFrame, **kw) -> Prepared:
    kw.setdefault("duration_transform", "none")
    return prepare(df, PrepConfig(**kw))


def _row_of(p: Prepared) -> np.ndarray:
    """File row of every prepared (sorted) event, from the tag in ``duration``."""
    return p.dur.astype(np.int64)


def _split_by_row(p: Prepared) -> dict[int, int]:
    return dict(zip(_row_of(p).tolist(), p.split.tolist(), strict=True))


def _random_log(seed: int, n_users: int = 30, n_pool: int = 40, max_events: int = 40):
    """A shuffled log with repeated items, tied timestamps and some very short users."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, max_events))
        ts = np.sort(rng.integers(0, 3 * n, size=n)) * 3600.0  # many ties
        items = rng.integers(0, n_pool, size=n)
        rows += [(f"u{u}", int(i), float(t)) for i, t in zip(items, ts, strict=True)]
    order = rng.permutation(len(rows))
    return _frame([rows[i] for i in order])


def _reference(df: pd.DataFrame, p: Prepared):
    """Per-user lists of sorted positions, computed independently of `prepare`."""
    ref = df.assign(row=np.arange(len(df)), code=pd.factorize(df["user"])[0])
    ref = ref.sort_values(["code", "timestamp", "row"])  # ties: file order
    assert _row_of(p).tolist() == ref["row"].tolist(), "sort is not (user, time, file order)"
    return [np.arange(p.offsets[u], p.offsets[u + 1]) for u in range(p.n_users)]


# --------------------------------------------------------------------------------------------
# Splits


def test_leave_one_out_last_is_test_second_to_last_is_valid() -> None:
    # File order is not time order; users are interleaved.
    df = _frame(
        [
            ("a", 14, 5.0),  # row 0: a's last event -> test
            ("b", 1, 1.0),
            ("a", 10, 1.0),
            ("a", 13, 4.0),  # row 3: a's second-to-last -> valid
            ("a", 11, 2.0),
            ("b", 2, 2.0),
            ("a", 12, 3.0),
            ("b", 3, 3.0),
        ]
    )
    p = _prep(df)
    split = _split_by_row(p)
    assert split[0] == TEST and split[3] == VALID
    assert [split[r] for r in (2, 4, 6)] == [TRAIN] * 3
    assert (split[1], split[5], split[7]) == (TRAIN, VALID, TEST)
    assert np.all(np.diff(p.timestamp[p.offsets[0] : p.offsets[1]]) >= 0)
    assert p.info["n_test"] == 2 and p.info["n_valid"] == 2 and p.info["n_train"] == 4


def test_leave_one_out_equal_timestamps_keep_file_order() -> None:
    # The last two events of each user share a timestamp: the later row in the file is test,
    # whatever the item ids (sorting by item would swap them).
    df = _frame(
        [
            ("a", 5, 100.0),
            ("b", 9, 300.0),
            ("a", 6, 200.0),
            ("a", 30, 300.0),  # row 3
            ("b", 8, 100.0),
            ("a", 29, 300.0),  # row 5: same time as row 3, later in the file -> test
            ("b", 7, 300.0),  # row 6: same time as row 1 -> test
            ("b", 6, 50.0),
        ]
    )
    split = _split_by_row(_prep(df))
    assert split[5] == TEST and split[3] == VALID
    assert split[6] == TEST and split[1] == VALID
    assert [split[r] for r in (0, 2, 4, 7)] == [TRAIN] * 4


def test_short_users_only_train() -> None:
    rows = [("a", i, float(i)) for i in range(2)]  # 2 events: below the floor of 3
    rows += [("b", i, float(i)) for i in range(4)]  # 4 events: below min_user_events=5
    rows += [("c", i, float(i)) for i in range(5)]  # 5 events: split
    p = _prep(_frame(rows), min_user_events=5)
    per_user = [p.split[p.offsets[u] : p.offsets[u + 1]].tolist() for u in range(3)]
    assert per_user[0] == [TRAIN] * 2
    assert per_user[1] == [TRAIN] * 4
    assert per_user[2] == [TRAIN] * 3 + [VALID, TEST]
    # min_user_events below 3 still leaves at least one training event per split user.
    p = _prep(_frame(rows), min_user_events=1)
    assert p.split[p.offsets[0] : p.offsets[1]].tolist() == [TRAIN] * 2
    assert p.split[p.offsets[1] : p.offsets[2]].tolist() == [TRAIN, TRAIN, VALID, TEST]


def test_leave_one_out_matches_reference_on_random_log() -> None:
    df = _random_log(seed=1)
    p = _prep(df, min_user_events=4)
    for pos in _reference(df, p):
        expect = [TRAIN] * len(pos)
        if len(pos) >= 4:
            expect[-2:] = [VALID, TEST]
        assert p.split[pos].tolist() == expect


def test_random_split_proportions_and_test_inputs() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(50):
        items = rng.permutation(500)[:40]  # no repeats within a user
        rows += [(u, int(i), float(t)) for t, i in enumerate(items)]
    df = _frame(rows)
    p = _prep(df, split="random", random_test_ratio=0.2, random_valid_ratio=0.1, seed=3)
    n = len(df)
    assert abs(p.info["n_test"] / n - 0.2) < 0.04
    assert abs(p.info["n_valid"] / n - 0.1) < 0.03
    assert p.info["n_train"] + p.info["n_valid"] + p.info["n_test"] == n
    other = _prep(df, split="random", random_test_ratio=0.2, random_valid_ratio=0.1, seed=4)
    assert not np.array_equal(p.split, other.split)

    row_pos = {int(r): j for j, r in enumerate(_row_of(p))}
    for split, code, visible in (("valid", VALID, (TRAIN,)), ("test", TEST, (TRAIN, VALID))):
        ex = eval_examples(p, split)
        targets = np.flatnonzero(p.split == code)
        assert len(ex["target"]) == len(targets)
        for e, j in enumerate(targets):
            inputs = [row_pos[int(r)] for r in ex["dur"][e][ex["mask"][e]]]
            assert all(p.user[k] == p.user[j] and k < j for k in inputs)
            assert all(p.split[k] in visible for k in inputs), f"{split} input is held out"
            hist = ex["hist_items"][ex["hist_offsets"][e] : ex["hist_offsets"][e + 1]]
            others = p.item[(p.user == p.user[j]) & (p.split == TEST)]
            assert not set(others.tolist()) & set(hist.tolist()), "test event in a history"


# --------------------------------------------------------------------------------------------
# Statistics fitted on training events only


def test_item_vocabulary_from_training_events_only() -> None:
    df = _frame(
        [
            ("a", "x", 1.0),
            ("a", "y", 2.0),
            ("a", "z", 3.0),
            ("a", "only_valid", 4.0),
            ("a", "only_test", 5.0),
            ("b", "y", 1.0),
            ("b", "z", 2.0),
            ("b", "w", 3.0),
            ("b", "x", 4.0),  # valid, known from a's training events
            ("b", "q", 5.0),  # test, also unknown
        ]
    )
    p = _prep(df)
    assert p.n_items == 4  # x, y, z, w
    assert sorted(p.item_ids[1:].tolist()) == ["w", "x", "y", "z"]
    raw = {row: df["item"][row] for row in range(len(df))}
    for j, row in enumerate(_row_of(p)):
        if raw[row] in ("only_valid", "only_test", "q"):
            assert p.item[j] == 0
        else:
            assert p.item_ids[p.item[j]] == raw[row]
    assert p.info["unknown_test_targets"] == 2
    assert p.info["unknown_valid_targets"] == 1
    # Popularity counts training events only; unknown (0) gets no mass.
    assert np.isneginf(p.log_popularity[0])
    counts = {"x": 1, "y": 2, "z": 2, "w": 1}
    pop = np.array([counts[p.item_ids[i]] + 1 for i in range(1, 5)], float)
    np.testing.assert_allclose(p.log_popularity[1:], np.log(pop / pop.sum()), rtol=1e-6)

    ex = eval_examples(p, "test")
    assert ex["target"].tolist().count(0) == 2
    kept = eval_examples(p, "test", drop_unknown=True)
    assert len(kept["target"]) == 0
    vx = eval_examples(p, "valid", drop_unknown=True)
    assert len(vx["target"]) == 1 and p.item_ids[vx["target"][0]] == "x"
    # The unknown validation event of user a is no input of a's test example.
    assert 0 not in ex["items"][ex["mask"]].tolist()


def test_duration_statistics_use_training_events_only() -> None:
    rows = [("a", i, float(i), d) for i, d in enumerate([3.0, 10.0, 7.0, 20.0, 50.0])]
    rows += [("b", i, float(i), d) for i, d in enumerate([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])]

    def stats(rows):
        p = prepare(_frame(rows, tag_rows=False), PrepConfig(duration_min_events=2))
        return p.dur_mean.copy(), p.dur_std.copy(), p.dur_user_ok.copy()

    mean, std, ok = stats(rows)
    expect = np.log1p([3.0, 10.0, 7.0])
    np.testing.assert_allclose(mean[0], expect.mean(), rtol=1e-6)
    np.testing.assert_allclose(std[0], expect.std(), rtol=1e-6)
    assert ok.all()

    changed = list(rows)
    changed[4] = ("a", 4, 4.0, 5000.0)  # a's test event
    changed[3] = ("a", 3, 3.0, 0.5)  # a's validation event
    changed[-1] = ("b", 5, 5.0, 1e6)  # b's test event
    m2, s2, ok2 = stats(changed)
    np.testing.assert_array_equal(m2, mean)
    np.testing.assert_array_equal(s2, std)
    np.testing.assert_array_equal(ok2, ok)

    changed[0] = ("a", 0, 0.0, 300.0)  # a training event does count
    m3, _, _ = stats(changed)
    assert m3[0] != mean[0] and m3[1] == mean[1]


def test_gap_edges_fitted_on_training_gaps() -> None:
    rng = np.random.default_rng(5)
    rows = []
    for u in range(20):
        ts = np.cumsum(rng.exponential(3600.0, size=12))
        rows += [(u, int(i), float(t)) for i, t in enumerate(ts)]
    df = _frame(rows)
    p = _prep(df, gap_buckets=4)
    tr = p.split == TRAIN
    gaps = np.diff(p.timestamp[tr])[np.diff(p.user[tr]) == 0]
    expect = np.unique(np.quantile(np.log1p(gaps), [0.25, 0.5, 0.75]))
    np.testing.assert_allclose(p.gap_edges, expect)
    assert p.n_transfer_contexts == 1 + len(expect) + 1

    # Moving held-out events far into the future changes no edge.
    late = df.copy()
    held = np.isin(np.arange(len(df)), _row_of(p)[p.split != TRAIN])
    late.loc[held, "timestamp"] += 1000 * DAY * (1 + np.arange(held.sum()))
    late_p = _prep(late, gap_buckets=4)
    np.testing.assert_array_equal(late_p.split, p.split)
    np.testing.assert_array_equal(late_p.gap_edges, p.gap_edges)

    off = _prep(df, gap_buckets=0)
    assert off.n_transfer_contexts == 1
    assert not train_windows(off)["tr_ctx"].any()


def _expected_bucket(p: Prepared, gap: float | None) -> int:
    if gap is None:
        return 0
    return 1 + int(np.searchsorted(p.gap_edges, np.log1p(max(gap, 0.0))))


def test_gap_buckets_in_evaluation_inputs() -> None:
    df = _random_log(seed=7)
    p = _prep(df, max_len=5, gap_buckets=4)
    positions = _reference(df, p)
    for split, visible in (("valid", (TRAIN,)), ("test", (TRAIN, VALID))):
        ex = eval_examples(p, split)
        for e, j in enumerate(np.flatnonzero(p.split == {"valid": VALID, "test": TEST}[split])):
            pos = positions[p.user[j]]
            vis = [k for k in pos if k < j and p.split[k] in visible and p.item[k] > 0]
            n = int(ex["mask"][e].sum())
            assert n == min(len(vis), 5)
            expect = [
                _expected_bucket(
                    p, None if i == 0 else p.timestamp[vis[i]] - p.timestamp[vis[i - 1]]
                )
                for i in range(len(vis) - n, len(vis))
            ]
            assert ex["tr_ctx"][e, :n].tolist() == expect
            assert not ex["tr_ctx"][e, n:].any()


def test_gap_bucket_zero_for_a_users_first_training_event() -> None:
    df = _random_log(seed=8)
    p = _prep(df, max_len=50, gap_buckets=4)  # one window per user
    w = train_windows(p)
    positions = _reference(df, p)
    for row, u in enumerate(w["user"]):
        tr = [k for k in positions[u] if p.split[k] == TRAIN]
        n = int(w["mask"][row].sum())
        assert n == len(tr) - 1
        expect = [0] + [
            _expected_bucket(p, p.timestamp[tr[i]] - p.timestamp[tr[i - 1]]) for i in range(1, n)
        ]
        assert w["tr_ctx"][row, :n].tolist() == expect


def test_gap_bucket_of_a_cut_window_start_is_the_real_gap() -> None:
    ts = np.cumsum([3600.0 * (1 + i % 3) ** 3 for i in range(30)])
    df = _frame([("a", i, t) for i, t in enumerate(ts)])
    p = _prep(df, max_len=4, gap_buckets=4)
    w = train_windows(p)
    tr = np.flatnonzero(p.split == TRAIN)
    for row in range(len(w["items"])):
        first = int(np.flatnonzero(_row_of(p)[tr] == int(w["dur"][row, 0]))[0])
        gap = None if first == 0 else p.timestamp[tr[first]] - p.timestamp[tr[first - 1]]
        assert w["tr_ctx"][row, 0] == _expected_bucket(p, gap)


def test_hour_of_day_and_behaviour_input_contexts() -> None:
    hours = [0, 5, 6, 11, 12, 17, 18, 23, 3, 13]
    beh = ["view", "cart", "view", "buy", "view", "cart", "view", "view", "fav", "view"]
    rows = [("a", i, (10 + i) * DAY + h * 3600.0) for i, h in enumerate(hours)]
    df = _frame(rows)
    p = _prep(df, hour_buckets=4, use_behavior=False)
    assert p.n_input_contexts == 4
    assert p.in_ctx.tolist() == [h // 6 for h in hours]

    df["behavior"] = beh
    p = _prep(df, hour_buckets=4)
    vocab = p.info["behaviors"]  # training behaviours only: "fav" is the valid event
    assert "fav" not in vocab and p.n_input_contexts == (len(vocab) + 1) * 4
    for j, row in enumerate(_row_of(p)):
        b = vocab.index(beh[row]) + 1 if beh[row] in vocab else 0
        assert p.in_ctx[j] == b * 4 + hours[row] // 6

    p = _prep(df, hour_buckets=0, use_behavior=False)
    assert p.n_input_contexts == 1 and not p.in_ctx.any()
    with pytest.raises(ValueError, match="hour_buckets"):
        PrepConfig(hour_buckets=5)


# --------------------------------------------------------------------------------------------
# Training windows


def _check_windows(p: Prepared, w: dict, positions) -> None:
    L = p.max_len
    row_pos = {int(r): j for j, r in enumerate(_row_of(p))}
    seen_inputs = collections.Counter()
    n_pairs = 0
    for row in range(len(w["items"])):
        mask = w["mask"][row]
        n = int(mask.sum())
        assert 1 <= n <= L and mask[:n].all() and not mask[n:].any(), "mask is not a prefix"
        assert w["reset"][row, 0] and not w["reset"][row, 1:].any()
        u = int(w["user"][row])
        tr = [k for k in positions[u] if p.split[k] == TRAIN]
        inputs = [row_pos[int(r)] for r in w["dur"][row, :n]]
        assert all(p.split[k] == TRAIN for k in inputs), "a window holds a held-out event"
        first = tr.index(inputs[0])
        assert inputs == tr[first : first + n], "inputs are not consecutive in time"
        nxt = tr[first + 1 : first + n + 1]
        assert len(nxt) == n, "the last input has no later training event as target"
        assert w["targets"][row, :n].tolist() == p.item[nxt].tolist()
        assert w["items"][row, :n].tolist() == p.item[inputs].tolist()
        assert not w["targets"][row, n:].any() and not w["items"][row, n:].any()
        seen_inputs.update(inputs)
        n_pairs += int((mask & (w["targets"][row] > 0)).sum())
    n_transitions = sum(max(sum(p.split[k] == TRAIN for k in pos) - 1, 0) for pos in positions)
    assert n_pairs == n_transitions
    expect = collections.Counter(
        k for pos in positions for k in [k for k in pos if p.split[k] == TRAIN][:-1]
    )
    assert seen_inputs == expect, "some training transition is missing or repeated"


@pytest.mark.parametrize("max_len", [1, 3, 7, 50])
def test_train_windows_cover_each_transition_once(max_len: int) -> None:
    df = _random_log(seed=11)
    p = _prep(df, max_len=max_len)
    w = train_windows(p)
    assert w["items"].shape == (len(w["user"]), max_len)
    _check_windows(p, w, _reference(df, p))


def test_train_windows_random_split() -> None:
    df = _random_log(seed=12)
    p = _prep(df, max_len=4, split="random", random_test_ratio=0.2, random_valid_ratio=0.2)
    _check_windows(p, train_windows(p), _reference(df, p))


def test_long_user_is_cut_into_full_windows() -> None:
    rows = [("long", i, float(i)) for i in range(32)]  # 30 training events, 29 transitions
    rows += [("short", i, float(i)) for i in range(5)]
    p = _prep(_frame(rows), max_len=4)
    w = train_windows(p)
    lengths = w["mask"].sum(1)
    long_rows = np.flatnonzero(w["user"] == 0)
    assert len(long_rows) == -(-29 // 4)
    assert sorted(lengths[long_rows].tolist()) == [1] + [4] * 7
    assert lengths[w["user"] == 1].tolist() == [2]
    # The windows tile the history: the latest events are in full windows.
    starts = sorted(int(w["dur"][r, 0]) for r in long_rows)
    assert starts == [0, 1, 5, 9, 13, 17, 21, 25]
    # Targets are known items and carry the next event's rating (none here).
    assert (w["targets"][w["mask"]] > 0).all() and not w["rating_ok"].any()


# --------------------------------------------------------------------------------------------
# Evaluation examples


@pytest.mark.parametrize("max_len", [2, 6, 40])
def test_eval_examples_match_reference(max_len: int) -> None:
    df = _random_log(seed=21)
    p = _prep(df, max_len=max_len)
    positions = _reference(df, p)
    long_history = False
    for split, code, visible in (("valid", VALID, (TRAIN,)), ("test", TEST, (TRAIN, VALID))):
        ex = eval_examples(p, split)
        targets = np.flatnonzero(p.split == code)
        assert len(ex["target"]) == len(targets)
        assert ex["items"].shape == (len(targets), max_len)
        for e, j in enumerate(targets):
            u = int(p.user[j])
            assert ex["user"][e] == u and ex["target"][e] == p.item[j]
            vis = [k for k in positions[u] if k < j and p.split[k] in visible and p.item[k] > 0]
            hist = ex["hist_items"][ex["hist_offsets"][e] : ex["hist_offsets"][e + 1]]
            assert hist.tolist() == p.item[vis].tolist(), "history is not every visible event"
            long_history |= len(vis) > max_len
            inp = vis[-max_len:]
            n = len(inp)
            assert ex["mask"][e].tolist() == [True] * n + [False] * (max_len - n)
            assert ex["items"][e, :n].tolist() == p.item[inp].tolist()
            assert ex["dur"][e, :n].tolist() == p.dur[inp].tolist()
            assert ex["reset"][e, 0] == (n > 0)
            assert not ex["reset"][e, 1:].any()
            # The target is an input only as often as it genuinely occurred before.
            genuine = int(sum(p.item[k] == p.item[j] for k in inp))
            assert int((ex["items"][e, :n] == ex["target"][e]).sum()) == genuine
            assert all(_row_of(p)[k] != _row_of(p)[j] for k in inp)
    if max_len < 40:
        assert long_history, "the fixture should have histories longer than max_len"


def test_eval_inputs_valid_sees_train_test_sees_train_and_valid() -> None:
    rows = [("a", 100 + i, float(i)) for i in range(20)]  # 18 train, valid 118, test 119
    rows += [("b", 100 + i, float(i)) for i in range(22)]  # makes 118 and 119 known
    rows += [("c", 1, 0.0), ("c", 2, 1.0), ("c", 3, 2.0), ("c", 1, 3.0), ("c", 2, 4.0)]
    p = _prep(_frame(rows), max_len=4)
    raw = lambda ids: [p.item_ids[i] for i in ids]  # noqa: E731

    vx, tx = eval_examples(p, "valid"), eval_examples(p, "test")
    assert raw(vx["items"][0]) == [114, 115, 116, 117] and raw([vx["target"][0]]) == [118]
    assert raw(tx["items"][0]) == [115, 116, 117, 118] and raw([tx["target"][0]]) == [119]
    assert raw(vx["hist_items"][: vx["hist_offsets"][1]]) == list(range(100, 118))
    assert raw(tx["hist_items"][: tx["hist_offsets"][1]]) == list(range(100, 119))
    # c re-consumes item 1 (valid) and item 2 (test): genuine earlier events stay visible.
    c_valid = int(np.flatnonzero(vx["user"] == 2)[0])
    assert raw(vx["items"][c_valid, :3]) == [1, 2, 3] and raw([vx["target"][c_valid]]) == [1]
    c_test = int(np.flatnonzero(tx["user"] == 2)[0])
    assert raw(tx["items"][c_test, :4]) == [1, 2, 3, 1] and raw([tx["target"][c_test]]) == [2]
    # The user's duration statistics are broadcast over the real inputs only.
    assert (vx["dur_user_ok"][0] == vx["mask"][0]).all()
    assert (vx["dur_mean"][0][vx["mask"][0]] == p.dur_mean[0]).all()


def test_heldout_positions_by_hand() -> None:
    # Temporal split (days): events after day 2.6 are test, after day 1.6 validation.
    # Sorted positions: a = 0..4, b = 5..7, c = 8. Training items: 1, 2, 3, 4; 7 is unknown.
    rows = [("a", 1, 0.0), ("a", 2, 1.0), ("a", 3, 2.5), ("a", 4, 3.5), ("a", 1, 3.6)]
    rows += [("b", 3, 0.0), ("b", 4, 0.5), ("b", 7, 3.0)]
    rows += [("c", 2, 3.5)]  # a sequence's first event: nothing to predict it from
    df = _frame([(u, i, t * DAY) for u, i, t in rows])
    kw = dict(split="temporal", temporal_by_sequence=False, gap_buckets=0)

    def held(p, split, drop=False):
        h = heldout_positions(p, split, drop)
        hist = [
            h.hist_pos[a:b].tolist()
            for a, b in zip(h.hist_offsets[:-1], h.hist_offsets[1:], strict=True)
        ]
        return h.target_pos.tolist(), hist

    p = _prep(df, **kw)  # eval_history "auto": all earlier events are visible (temporal)
    assert p.split.tolist() == [TRAIN, TRAIN, VALID, TEST, TEST, TRAIN, TRAIN, TEST, TEST]
    assert held(p, "valid") == ([2], [[0, 1]])
    # a's second test event sees the first; c's only event is no target.
    assert held(p, "test") == ([3, 4, 7], [[0, 1, 2], [0, 1, 2, 3], [5, 6]])
    assert held(p, "test", drop=True) == ([3, 4], [[0, 1, 2], [0, 1, 2, 3]])
    # Held-out events hidden: test sees training and validation events only.
    p = _prep(df, eval_history="held_out_hidden", **kw)
    assert held(p, "test") == ([3, 4, 7, 8], [[0, 1, 2], [0, 1, 2], [5, 6], []])
    ex = eval_examples(p, "test")
    assert ex["hist_offsets"].tolist() == [0, 3, 6, 8, 8]
    assert ex["target"].tolist() == p.item[[3, 4, 7, 8]].tolist()


# --------------------------------------------------------------------------------------------
# Batching


def _row_key(batch: dict, r: int) -> bytes:
    return batch["items"][r].tobytes() + batch["targets"][r].tobytes() + batch["dur"][r].tobytes()


def test_iterate_train_batches_shuffle_shape_and_coverage() -> None:
    df = _random_log(seed=31, n_users=60)
    p = _prep(df, max_len=5)
    w = train_windows(p)
    n, bs = len(w["items"]), 16
    assert n % bs, "the fixture should need a padded last batch"
    nb = n_train_batches(w, bs)
    assert nb == -(-n // bs)

    def epoch(seed, e, start=0):
        return list(iterate_train_batches(w, bs, seed=seed, epoch=e, start_batch=start))

    e0 = epoch(0, 0)
    assert len(e0) == nb
    for b in e0:
        assert set(b) == set(w) - {"user"}
        for k, v in b.items():
            assert v.shape == (bs,) + w[k].shape[1:] and v.dtype == w[k].dtype
    pad = n - (nb - 1) * bs
    assert not e0[-1]["mask"][pad:].any() and not e0[-1]["targets"][pad:].any()
    assert e0[-1]["mask"][:pad].any(1).all()

    got = collections.Counter(_row_key(b, r) for b in e0 for r in range(bs) if b["mask"][r].any())
    assert got == collections.Counter(_row_key(w, r) for r in range(n))

    def order(batches):
        return np.concatenate([b["dur"][:, 0] for b in batches]).tolist()

    assert order(epoch(0, 0)) == order(e0), "not deterministic for (seed, epoch)"
    assert order(epoch(0, 1)) != order(e0), "epochs should differ"
    assert order(epoch(1, 0)) != order(e0), "seeds should differ"
    assert order(epoch(0, 0, start=3)) == order(e0[3:]), "resuming mid-epoch differs"


def test_iterate_eval_batches_pads_and_rounds_history_width() -> None:
    rows = []
    for u, n_events in enumerate([4, 20, 6, 40, 3, 12]):
        rows += [(u, i, float(i)) for i in range(n_events)]
    p = _prep(_frame(rows), max_len=8)
    ex = eval_examples(p, "test")
    hist_len = np.diff(ex["hist_offsets"])
    # Everything visible before the test event; user 3's valid item (38) is unknown: dropped.
    assert hist_len.tolist() == [3, 19, 5, 38, 2, 11]
    batches = list(iterate_eval_batches(ex, batch_size=4))
    assert [n for _, _, n in batches] == [4, 2]
    widths = [h.shape[1] for _, h, _ in batches]
    assert widths == [64, 16]  # 38 -> 64; 11 -> 16 (the minimum)
    for bi, (batch, hist, n) in enumerate(batches):
        assert batch["items"].shape == (4, 8) and hist.shape[0] == 4
        assert batch["target"].shape == (4,)
        for r in range(4):
            e = bi * 4 + r
            if r < n:
                row = ex["hist_items"][ex["hist_offsets"][e] : ex["hist_offsets"][e + 1]]
                assert hist[r, : len(row)].tolist() == row.tolist()
                assert not hist[r, len(row) :].any()
                assert batch["target"][r] == ex["target"][e]
            else:
                assert not hist[r].any() and not batch["mask"][r].any()
                assert batch["target"][r] == 0
    w = {1 << k for k in range(4, 12)}
    ex2 = eval_examples(_prep(_frame(rows), max_len=8), "valid")
    for _, h, _ in iterate_eval_batches(ex2, batch_size=2):
        assert h.shape[1] in w
