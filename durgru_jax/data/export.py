"""Writes a prepared split in GRU4Rec's TSV format, to run other code on exactly our data.

``python -m durgru_jax.data.export --config configs/ml1m.py:gru4rec \\
    --config.data.path=PATH/ratings.dat --out DIR``

The data config (and ``config.seed``) is prepared exactly as ``launch.py`` prepares it (same
cache), then ``DIR`` receives TAB-separated files with a header, the layout that the official
GRU4Rec code reads (``SessionId``, ``ItemId``, ``Time``; extra columns are ignored there):

* ``train.tsv``: every training event, ``SessionId`` = our sequence index (the user, or the
  user's session), in our order: by sequence, then time, equal times in the file's order. The
  file is therefore already sorted by (``SessionId``, ``Time``): GRU4Rec's reader checks that
  and then does not re-sort, so events with equal timestamps keep our order.
* ``valid.tsv``, ``test.tsv``: one session per evaluation example, ``SessionId`` = the
  example's index (0..E-1, the order of `eval_examples`), ``UserId`` = our sequence index. A
  session is the example's whole *visible* history (the events `eval_examples` puts in
  ``hist_items``: training events for validation, training and validation events for test;
  unknown items left out) followed by the held-out target as its **last row**. Only that last
  position is the example: GRU4Rec's own evaluator scores every position of a session.
* ``items.tsv``: ``ItemId`` (ours, 1..n_items) and ``RawItemId`` (the id in the source file).
  ``ItemId`` 0 is an item never seen in training: a target with it counts as a miss in our
  evaluation (``eval.unknown_targets=miss``), and GRU4Rec's evaluator would silently drop
  the row, so a driver must count such examples itself.
* ``meta.json``: the counts, the data config and the seed.

``Time`` is our timestamp (seconds); within a session rows are in our order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from absl import app, flags, logging
from ml_collections import config_flags

from durgru_jax.data.dataset import TRAIN, Prepared, heldout_positions
from durgru_jax.files import write_atomic


def train_table(p: Prepared) -> pd.DataFrame:
    """Training events as ``SessionId ItemId Time`` in our (sequence, time) order."""
    pos = np.flatnonzero(p.split == TRAIN)
    return pd.DataFrame(
        {"SessionId": p.user[pos], "ItemId": p.item[pos].astype(np.int64), "Time": p.timestamp[pos]}
    )


def eval_table(p: Prepared, split: str, drop_unknown: bool = False) -> pd.DataFrame:
    """One session per held-out event of ``split``: its visible history, then the target.

    Targets and histories are `heldout_positions`' (as for `eval_examples`: same order, same
    visibility rule, same ``drop_unknown``); columns ``SessionId`` (example index), ``ItemId``,
    ``Time``, ``UserId`` and ``IsTarget`` (true on each session's last row).
    """
    h = heldout_positions(p, split, drop_unknown)
    n_hist = np.diff(h.hist_offsets)
    n_rows = n_hist + 1
    ex = np.repeat(np.arange(len(h.target_pos)), n_rows)
    row_off = np.concatenate([[0], np.cumsum(n_rows)])
    k = np.arange(len(ex)) - row_off[ex]  # row within the session
    is_target = k == n_hist[ex]
    hist_idx = np.minimum(h.hist_offsets[ex] + k, max(len(h.hist_pos) - 1, 0))
    pos = np.where(is_target, h.target_pos[ex], h.hist_pos[hist_idx] if len(h.hist_pos) else 0)
    return pd.DataFrame(
        {
            "SessionId": ex,
            "ItemId": p.item[pos].astype(np.int64),
            "Time": p.timestamp[pos],
            "UserId": p.user[pos],
            "IsTarget": is_target,
        }
    )


def _write_tsv(df: pd.DataFrame, path: str) -> None:
    write_atomic(path, lambda f: df.to_csv(f, sep="\t", index=False, float_format="%.17g"))


def export_gru4rec(
    p: Prepared, out_dir: str, meta: Mapping[str, Any] | None = None, drop_unknown: bool = False
) -> dict[str, str]:
    """Writes the files of the module docstring into ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"{name}.tsv") for name in ("train", "valid", "test")}
    _write_tsv(train_table(p), paths["train"])
    counts = {}
    for split in ("valid", "test"):
        df = eval_table(p, split, drop_unknown=drop_unknown)
        tgt = df[df["IsTarget"]]
        counts[split] = {
            "examples": int(len(tgt)),
            "unknown_targets": int((tgt["ItemId"] == 0).sum()),
            "rows": int(len(df)),
        }
        _write_tsv(df, paths[split])
    paths["items"] = os.path.join(out_dir, "items.tsv")
    ids = np.arange(1, p.n_items + 1)
    _write_tsv(pd.DataFrame({"ItemId": ids, "RawItemId": p.item_ids[1:]}), paths["items"])
    paths["meta"] = os.path.join(out_dir, "meta.json")
    info = {
        "format": "GRU4Rec TSV (SessionId ItemId Time); see durgru_jax/data/export.py",
        "n_items": int(p.n_items),
        "n_sequences": int(p.n_users),
        "train_events": int((p.split == TRAIN).sum()),
        "eval": counts,
        "unknown_targets_dropped": bool(drop_unknown),
        **dict(meta or {}),
    }
    write_atomic(paths["meta"], lambda f: json.dump(info, f, indent=1, sort_keys=True, default=str))
    return paths


def _define_flags():
    """Flags of the command line only: importing the module defines none (``launch.py``
    defines its own ``--config``)."""
    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "Experiment config file (configs/*.py); its data group is exported.",
        lock_config=True,
    )
    out = flags.DEFINE_string("out", None, "Output directory for the TSV files.")
    flags.mark_flags_as_required(["config", "out"])
    return config, out


def main(argv, config_flag, out_flag):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from durgru_jax.data.sources import load_prepared

    logging.set_verbosity(logging.INFO)
    config = config_flag.value
    p = load_prepared(config.data, seed=int(config.seed))
    paths = export_gru4rec(
        p,
        out_flag.value,
        meta={"data": config.data.to_dict(), "seed": int(config.seed)},
        drop_unknown=config.eval.unknown_targets == "drop",
    )
    logging.info("wrote %s", ", ".join(paths.values()))


if __name__ == "__main__":
    _flags = _define_flags()
    app.run(lambda argv: main(argv, *_flags))
