"""The MovieLens ranking table in one command: the aGRU beside a plain GRU, SASRec, the
ADPR-style attention baseline, ItemCF-IUF and most-popular, on one split, one evaluator.

``python launch.py --config configs/ranking.py:ml1m --sweep --workdir W \\
    --config.data.path=PATH/ratings.dat`` then ``python launch.py --report W``.
One method: ``--config configs/ranking.py:ml1m,sasrec``.

Arguments ``DATASET[,METHOD][,seeds=N][,methods=A+B+...]``: ``ml1m`` (default) or ``ml100k``;
a method (default ``agru``): ``agru`` | ``gru`` | ``sasrec`` | ``adpr`` | ``itemcf`` | ``pop``;
for ``--sweep``, ``seeds=N`` (default 3) seeds of each trained model and ``methods=...`` a
subset (default: all; SASRec and ADPR take hours on a CPU). Protocol: ``configs/ml1m.py``
(leave-one-out, validation the second-to-last event, full ranking with the user's rated movies
excluded, selection on validation NDCG@10). Each method keeps its own hyper-parameters: those
of ``configs/sasrec.py`` / ``configs/adpr.py`` / ``configs/itemcf.py`` (ItemCF with eq. 4's window
m = 10 events, k chosen on validation) enter as the method's overrides, so a row here is the
same run as that config's.
"""

import os

import ml_collections

from durgru_jax.base_config import load_config_file, set_overrides

DATASETS = ("ml1m", "ml100k")
METHOD_NAMES = ("agru", "gru", "sasrec", "adpr", "itemcf", "pop")
TRAINED = ("agru", "gru", "sasrec", "adpr")  # seeded; the two baselines are deterministic


def _load(name: str):
    return load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py"))


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _parse(arg: str):
    dataset, method, seeds, methods = "ml1m", "agru", 3, METHOD_NAMES
    for token in filter(None, (t.strip() for t in (arg or "").split(","))):
        if token in DATASETS:
            dataset = token
        elif token in METHOD_NAMES:
            method = token
        elif token.startswith("seeds=") and token[6:].isdigit() and int(token[6:]) > 0:
            seeds = int(token[6:])
        elif token.startswith("methods=") and set(token[8:].split("+")) <= set(METHOD_NAMES):
            methods = tuple(token[8:].split("+"))
        else:
            raise ValueError(
                f"unknown ranking argument {token!r}: a dataset ({' | '.join(DATASETS)}), a "
                f"method ({' | '.join(METHOD_NAMES)}), seeds=N or methods=A+B"
            )
    return dataset, method, seeds, methods


def _base(dataset: str):
    c = _load(dataset).get_config()
    c.task = ""  # "" = the recurrent / attention model; "baseline" = config.baseline
    c.baseline = ml_collections.ConfigDict(_load("itemcf").get_config().baseline.to_dict())
    c.baseline.itemcf.time_window_m = 10  # eq. 4's window (the README's MovieLens rows)
    return c


def method_overrides(dataset: str, method: str) -> dict:
    """The overrides that turn the base (aGRU) config into ``method``'s."""
    if method == "agru":
        return {}
    if method == "gru":
        return {"model.cell": "gru"}
    if method in ("itemcf", "pop"):
        return {"task": "baseline", "baseline.name": method}
    base = _flat(_base(dataset).to_dict())
    other = _flat(_load(method).get_config(dataset).to_dict())
    return {k: v for k, v in other.items() if k in base and base[k] != v}


def get_config(arg: str = "ml1m"):
    dataset, method, _, _ = _parse(arg)
    c = _base(dataset)
    return set_overrides(c, method_overrides(dataset, method))


def sweep(add, arg: str = ""):
    dataset, _, n_seeds, methods = _parse(arg)
    if any(t.strip() in METHOD_NAMES for t in (arg or "").split(",")):
        raise ValueError("the ranking sweep takes methods=A+B, not a single method")
    for name in methods:
        overrides = method_overrides(dataset, name)
        for seed in range(n_seeds) if name in TRAINED else (0,):
            add(**overrides, seed=seed)
