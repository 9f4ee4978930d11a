"""Click probabilities for the rows of a Criteo-format file, with a finished CTR run:
``python launch.py --recommend --workdir W --events FILE --out probs.csv``.

The rows are parsed by the training reader (`criteo.iter_blocks`) and tokenised with the run's
vocabularies (``vocab.npz`` of its prepared-data folder, fitted on the training rows): a value
kept in training gets its token, any other the shared OOV token 1, a missing value 0, as
`criteo.prepare` maps them. The model is ``params_best.npz`` of the run (`ctr.train.run`).
Output: ``row`` (0-based data row of FILE), ``label`` (the file's), ``click_probability``.
"""

from __future__ import annotations

import json
import os
import time
import types

import jax
import numpy as np
import pandas as pd

from durgru_jax.ctr import criteo, criteo_format
from durgru_jax.ctr import model as ctr_model


def _read_json(workdir: str, name: str) -> dict:
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir}: no {name}: not a finished CTR run")
    with open(path) as f:
        return json.load(f)


def load_model(workdir: str) -> tuple[dict, ctr_model.CtrModelConfig, dict]:
    """``(params, model config, config.json)`` of the CTR run in ``workdir``."""
    config = _read_json(workdir, "config.json")
    results = _read_json(workdir, "results.json")
    m = config["model"]
    mcfg = ctr_model.CtrModelConfig(
        vocab_sizes=tuple(results["data"]["vocab_sizes"]),
        cell=m["cell"],
        embed_dim=int(m["embed_dim"]),
        hidden_dim=int(m["hidden_dim"]),
        dropout=float(m["dropout"]),
        relevance=bool(m["relevance"]),
        field_context=bool(m["field_context"]),
        scan_unroll=int(m["scan_unroll"]),
    )
    saved = np.load(os.path.join(workdir, "params_best.npz"))
    template = ctr_model.init_params(mcfg, 0)
    leaves, tree = jax.tree_util.tree_flatten_with_path(template)
    values = []
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path)
        if key not in saved or saved[key].shape != leaf.shape:
            raise ValueError(f"{workdir}/params_best.npz: {key} missing or not {leaf.shape}")
        values.append(saved[key])
    return jax.tree_util.tree_unflatten(tree, values), mcfg, config


def tokenise(path: str, vocab_dir: str, int_transform: str, on_bad_rows: str = "error"):
    """``(tokens int32 [rows, 39], labels int8 [rows])`` of ``path`` in the run's vocabulary."""
    vocab_file = os.path.join(vocab_dir, "vocab.npz")
    if not os.path.exists(vocab_file):
        raise FileNotFoundError(
            f"{vocab_file} is gone: the run's vocabularies live in its prepared-data folder"
        )
    vocab = np.load(vocab_file)
    index = [pd.Index(vocab[name]) for name in criteo.FIELDS]
    tokens, labels = [], []
    for block in criteo.iter_blocks(path, on_bad_rows=on_bad_rows):
        ints = criteo.transform_ints(block.ints, block.ints_missing, int_transform)
        keys = [ints[:, j] for j in range(criteo.N_INT)]
        keys += [block.cat_keys[:, j] for j in range(criteo_format.N_CAT)]
        missing = np.concatenate([block.ints_missing, block.cats_missing], axis=1)
        tok = np.empty((len(block.labels), len(criteo.FIELDS)), np.int32)
        for j, ix in enumerate(index):
            pos = ix.get_indexer(keys[j])
            tok[:, j] = np.where(pos >= 0, pos + 2, criteo.OOV)
        tokens.append(np.where(missing, criteo.MISSING, tok))
        labels.append(block.labels)
    return np.concatenate(tokens).astype(np.int32), np.concatenate(labels)


def score_file(workdir: str, events: str, out: str, batch_size: int = 8192) -> dict:
    """Writes ``out`` (``row, label, click_probability``) for the rows of ``events``."""
    from durgru_jax.ctr.train import predict
    from durgru_jax.recommend_cli import write_table

    params, mcfg, config = load_model(workdir)
    vocab_dir = _read_json(workdir, "results.json")["data"]["cache_dir"]
    t0 = time.perf_counter()
    tokens, labels = tokenise(
        events, vocab_dir, config["data"]["int_transform"], config["data"]["on_bad_rows"]
    )
    prob_fn = jax.jit(lambda p, tok: jax.nn.sigmoid(ctr_model.logits(p, mcfg, tok)))
    data = types.SimpleNamespace(tokens=tokens)  # what `predict` reads of a prepared set
    probs = predict(prob_fn, params, data, slice(0, len(tokens)), batch_size)
    rows = np.arange(len(tokens))
    frame = pd.DataFrame({"row": rows, "label": labels, "click_probability": probs})
    write_table(frame, out)
    return {"out": out, "rows": len(tokens), "seconds": time.perf_counter() - t0}
