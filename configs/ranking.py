"""The MovieLens ranking table in one command: paper 000's aGRU beside a plain GRU, the
recommended model (docs/model_and_protocol.md), SASRec, the ADPR-style attention baseline,
ItemCF-IUF and most-popular, on one split, one evaluator.

``python launch.py --config configs/ranking.py:ml1m --sweep --workdir W \\
    --config.data.path=PATH/ratings.dat`` then ``python launch.py --report W``.
One method: ``--config configs/ranking.py:ml1m,sasrec``.

Arguments ``DATASET[,METHOD][,seeds=N][,methods=A+B+...]``: ``ml1m`` (default) or ``ml100k``;
a method (default ``agru``): ``agru`` | ``gru`` (the aGRU's settings with the GRU cell) |
``rec`` (the recommended model: ``configs/ml1m.py``'s default) | ``sasrec`` | ``adpr`` |
``itemcf`` | ``pop``;
for ``--sweep``, ``seeds=N`` (default 3) seeds of each trained model and ``methods=...`` a
subset (default: all; SASRec and ADPR take hours on a CPU). Protocol: ``configs/ml1m.py``
(leave-one-out, validation the second-to-last event, full ranking with the user's rated movies
excluded, selection on validation NDCG@10). Each method keeps its own hyper-parameters: those
of ``configs/sasrec.py`` / ``configs/adpr.py`` / ``configs/itemcf.py`` (ItemCF with eq. 4's window
m = 10 events, k chosen on validation) enter as the method's overrides, so a row here is the
same run as that config's.
"""

import ml_collections

from durgru_jax.base_config import (
    config_diff,
    load_config,
    parse_variant,
    positive_int,
    set_overrides,
)

DATASETS = ("ml1m", "ml100k")
METHOD_NAMES = ("agru", "gru", "rec", "sasrec", "adpr", "itemcf", "pop")
TRAINED = ("agru", "gru", "rec", "sasrec", "adpr")  # seeded; the baselines are deterministic
CHOICES = {"dataset": DATASETS, "method": METHOD_NAMES}  # the argument after ":"


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(text.split("+"))
    unknown = sorted(set(names) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"not a method: {', '.join(unknown)} (one of {' | '.join(METHOD_NAMES)})")
    return names


# The sweep's extras; get_config takes (and ignores) them too, as launch.py passes it the same
# argument.
EXTRAS = {"seeds": positive_int, "methods": _methods}


def _base(dataset: str):
    c = load_config(f"{dataset}.py:paper", beside=__file__)  # the protocol and paper 000's aGRU
    c.task = ""  # "" = the recurrent / attention model; "baseline" = config.baseline
    itemcf = load_config("itemcf.py", beside=__file__)
    c.baseline = ml_collections.ConfigDict(itemcf.baseline.to_dict())
    c.baseline.itemcf.time_window_m = 10  # eq. 4's window (the README's MovieLens rows)
    return c


def method_overrides(dataset: str, method: str) -> dict:
    """The overrides that turn the base (aGRU) config into ``method``'s."""
    if method == "agru":
        return {}
    if method == "gru":
        return {"model.cell": "gru"}
    if method == "rec":  # the dataset config's default model (so on MovieLens the seen offset)
        default = load_config(f"{dataset}.py", beside=__file__)
        return config_diff(default, load_config(f"{dataset}.py:paper", beside=__file__))
    if method in ("itemcf", "pop"):
        return {"task": "baseline", "baseline.name": method}
    other = load_config(f"{method}.py:{dataset}", beside=__file__)
    return config_diff(other, _base(dataset))


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, extras=EXTRAS, config="ranking")
    return set_overrides(_base(v["dataset"]), method_overrides(v["dataset"], v["method"]))


def sweep(add, arg: str = ""):
    """``methods`` (default all) on one dataset: the argument names no single method."""
    v = parse_variant(arg, {"dataset": DATASETS}, extras=EXTRAS, config="ranking sweep")
    for name in v.get("methods", METHOD_NAMES):
        overrides = method_overrides(v["dataset"], name)
        for seed in range(v.get("seeds", 3)) if name in TRAINED else (0,):
            add(**overrides, seed=seed)
