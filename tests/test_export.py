"""The GRU4Rec TSV export: a hand-computed example, and a round trip on the tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from durgru_jax.data.dataset import TRAIN, PrepConfig, eval_examples, prepare
from durgru_jax.data.export import eval_table, export_gru4rec, train_table
from durgru_jax.data.sources import load_prepared

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


@pytest.fixture
def hand_prepared():
    # a: sorted 11@1 12@3 13@3 (tie: file order) | valid 10@5 (unseen in training) | test 14@7
    # b: 12@2 15@4 | valid 11@6 | test 16@8 (unseen); c: two events, training only.
    # Training items in order of appearance: 11 -> 1, 12 -> 2, 13 -> 3, 15 -> 4.
    events = pd.DataFrame(
        [
            ("a", 10, 5),
            ("a", 11, 1),
            ("a", 12, 3),
            ("b", 12, 2),
            ("a", 13, 3),
            ("b", 15, 4),
            ("c", 11, 1),
            ("a", 14, 7),
            ("b", 11, 6),
            ("c", 12, 2),
            ("b", 16, 8),
        ],
        columns=["user", "item", "timestamp"],
    )
    return prepare(events, PrepConfig(max_len=2))


def test_hand_computed_tables(hand_prepared) -> None:
    p = hand_prepared
    assert list(p.item_ids[1:]) == [11, 12, 13, 15]
    train = train_table(p)
    assert train.values.tolist() == [
        [0, 1, 1],
        [0, 2, 3],
        [0, 3, 3],
        [1, 2, 2],
        [1, 4, 4],
        [2, 1, 1],
        [2, 2, 2],
    ]
    valid = eval_table(p, "valid")
    assert valid[["SessionId", "ItemId", "Time", "UserId"]].values.tolist() == [
        [0, 1, 1, 0],
        [0, 2, 3, 0],
        [0, 3, 3, 0],
        [0, 0, 5, 0],  # a's target, unknown item
        [1, 2, 2, 1],
        [1, 4, 4, 1],
        [1, 1, 6, 1],
    ]
    assert valid["IsTarget"].tolist() == [False] * 3 + [True] + [False] * 2 + [True]
    test = eval_table(p, "test")
    # a's unknown validation item is not visible history; b's known one is.
    assert test[["SessionId", "ItemId", "Time"]].values.tolist() == [
        [0, 1, 1],
        [0, 2, 3],
        [0, 3, 3],
        [0, 0, 7],
        [1, 2, 2],
        [1, 4, 4],
        [1, 1, 6],
        [1, 0, 8],
    ]
    dropped = eval_table(p, "valid", drop_unknown=True)
    assert dropped[["SessionId", "ItemId", "UserId"]].values.tolist() == [
        [0, 2, 1],
        [0, 4, 1],
        [0, 1, 1],
    ]
    assert len(eval_table(p, "test", drop_unknown=True)) == 0


def test_files_are_what_gru4rec_reads(hand_prepared, tmp_path) -> None:
    paths = export_gru4rec(hand_prepared, str(tmp_path))
    for name in ("train", "valid", "test"):
        df = _read(paths[name])
        assert list(df.columns[:3]) == ["SessionId", "ItemId", "Time"]
        # sorted by (SessionId, Time): the official code then keeps our order of equal times
        s, t = df["SessionId"].to_numpy(), df["Time"].to_numpy()
        assert np.all(np.diff(s) >= 0)
        assert np.all((np.diff(s) > 0) | (np.diff(t) >= 0))
    items = _read(paths["items"])
    assert items.values.tolist() == [[1, 11], [2, 12], [3, 13], [4, 15]]
    meta = json.loads(open(paths["meta"]).read())
    assert meta["eval"]["test"] == {"examples": 2, "rows": 8, "unknown_targets": 2}
    assert meta["train_events"] == 7


def _check_round_trip(p, out_dir) -> None:
    export_gru4rec(p, out_dir)
    train = _read(os.path.join(out_dir, "train.tsv"))
    pos = np.flatnonzero(p.split == TRAIN)
    np.testing.assert_array_equal(train["SessionId"].to_numpy(), p.user[pos])
    np.testing.assert_array_equal(train["ItemId"].to_numpy(), p.item[pos])
    np.testing.assert_array_equal(train["Time"].to_numpy(), p.timestamp[pos])
    for split in ("valid", "test"):
        ex = eval_examples(p, split)
        df = _read(os.path.join(out_dir, f"{split}.tsv"))
        sessions = [g for _, g in df.groupby("SessionId", sort=True)]
        assert len(sessions) == len(ex["target"]) > 0
        tgt = df[df["IsTarget"]]
        np.testing.assert_array_equal(tgt["SessionId"].to_numpy(), np.arange(len(sessions)))
        np.testing.assert_array_equal(tgt["ItemId"].to_numpy(), ex["target"])
        np.testing.assert_array_equal(tgt["UserId"].to_numpy(), ex["user"])
        L = ex["items"].shape[1]
        for e, g in enumerate(sessions):
            assert g["IsTarget"].tolist() == [False] * (len(g) - 1) + [True]
            hist = g["ItemId"].to_numpy()[:-1]
            lo, hi = ex["hist_offsets"][e], ex["hist_offsets"][e + 1]
            np.testing.assert_array_equal(hist, ex["hist_items"][lo:hi])
            n_in = min(len(hist), L)  # the model's input window: the last L visible events
            np.testing.assert_array_equal(ex["items"][e, :n_in], hist[len(hist) - n_in :])
            assert not ex["mask"][e, n_in:].any()


def test_round_trip_tiny_config(tiny_config, tmp_path) -> None:
    _check_round_trip(load_prepared(tiny_config.data, seed=0), str(tmp_path))


def test_round_trip_all_past_visible(tiny_config, tmp_path) -> None:
    # Several held-out events per sequence, earlier ones visible (the temporal protocols).
    tiny_config.data.split = "random"
    tiny_config.data.eval_history = "all_past"
    _check_round_trip(load_prepared(tiny_config.data, seed=0), str(tmp_path))


def test_command_line(tmp_path) -> None:
    out = tmp_path / "out"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "durgru_jax.data.export",
            "--config",
            "configs/default.py",
            "--config.data.synthetic.n_users=50",
            "--config.data.synthetic.n_items=40",
            "--config.data.synthetic.min_len=5",
            "--config.data.synthetic.max_len=9",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["eval"]["test"]["examples"] == 50
    assert meta["data"]["synthetic"]["n_users"] == 50
    test = _read(out / "test.tsv")
    assert test["IsTarget"].sum() == 50
