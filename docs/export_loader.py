"""Scores with a model exported by ``python launch.py --export --workdir W --out DIR``, with
jax and numpy only: ``python docs/export_loader.py DIR INPUTS.npz [K]`` prints each row's
top-K original item ids. ``INPUTS.npz`` holds the ``[B, max_len]`` arrays named in
``DIR/export.json`` (``Recommender.model_inputs`` builds them from raw events)."""

import json
import sys

import jax
import numpy as np


def load(folder):
    """``(score, item_ids)``: ``score(inputs) -> [B, n_items + 1]`` logits (column i: item
    ``item_ids[i - 1]``; column 0 is padding, -inf)."""
    with open(f"{folder}/export.json") as f:
        meta = json.load(f)
    with open(f"{folder}/score.jax", "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    params = dict(np.load(f"{folder}/params.npz"))
    lo, hi = meta["batch"]["min"], meta["batch"]["max"]

    def score(inputs):
        n = len(inputs["items"])
        step = hi or max(n, lo)
        out = []
        for a in range(0, n, step):  # rows in batches the export accepts (padded to lo)
            part = {k: np.asarray(v[a : a + step]) for k, v in inputs.items()}
            m = len(part["items"])
            part = {k: np.concatenate([v, np.zeros((max(lo - m, 0),) + v.shape[1:], v.dtype)])
                    for k, v in part.items()}  # fmt: skip
            out.append(np.asarray(exported.call(params, part))[:m])
        return np.concatenate(out)

    return score, np.load(f"{folder}/items.npz")["item_ids"]


if __name__ == "__main__":
    score, item_ids = load(sys.argv[1])
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    for row in np.argsort(-score(dict(np.load(sys.argv[2]))), axis=1, kind="stable")[:, :k]:
        print(" ".join(str(i) for i in item_ids[row - 1]))
