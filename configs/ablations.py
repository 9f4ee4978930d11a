"""Ablations of the full model, as variants of one config.

One variant: ``python launch.py --config configs/ablations.py:no_duration --workdir W``.
All variants x 3 seeds: ``python launch.py --config configs/ablations.py --sweep --workdir W``.
Another dataset: ``--config configs/ablations.py:yoochoose`` (or ``:ml100k``), one variant on it
``--config configs/ablations.py:yoochoose,no_aux`` (give ``--config.data.path`` for real data).
``python launch.py --report W`` turns the sweep into the table (mean ± std, paired tests).

Variants: full | no_duration | duration_gate | no_aux | aux_w0.2 | aux_w1 | gru |
no_relevance | reset_gate | shuffled_durations.
``aux_w0.2`` / ``aux_w1`` with ``full`` (0.5) and ``no_aux`` (0) are the auxiliary-loss weight
grid: "tuned" is the one with the best *validation* metric. ``shuffled_durations`` permutes each
user's durations among that user's events (per split): a control that keeps every statistic of
the factor but breaks its link to the events, so it must erase any gain that durations bring.
"""

from durgru_jax.base_config import load_config, parse_variant, set_overrides

VARIANTS = {
    "full": {},
    "no_duration": {"model.duration_mode": "none"},
    "duration_gate": {"model.duration_mode": "gate"},
    "no_aux": {"loss.aux_weight": 0.0},
    "aux_w0.2": {"loss.aux_weight": 0.2},
    "aux_w1": {"loss.aux_weight": 1.0},
    "gru": {"model.cell": "gru"},
    "no_relevance": {"model.relevance": False},
    "reset_gate": {"model.reset_gate": True},
    "shuffled_durations": {"data.shuffle_durations": True},
}
DURATION_VARIANTS = ("no_duration", "duration_gate", "shuffled_durations")
DATASETS = ("synthetic", "yoochoose", "ml100k")
SEEDS = (0, 1, 2)
CHOICES = {"dataset": DATASETS, "variant": tuple(VARIANTS)}  # the argument after ":"


def _dataset_config(dataset: str):
    if dataset == "synthetic":
        c = load_config("default.py", beside=__file__)  # the synthetic data and model
        c.compare = ()  # the variants are the comparisons
    elif dataset == "yoochoose":  # the prepared RecSys 2015 sample: sessions, derived dwell
        c = load_config("yoochoose.py:prepared", beside=__file__)
        # 6 steps per epoch: after 10 epochs validation recall@20 was still rising steeply,
        # so every variant trains until validation stops improving (patience 3).
        c.train.epochs = 60
    else:  # MovieLens-100K: no durations, so only the non-duration ablations are declared
        c = load_config("ml100k.py", beside=__file__)
    return c


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="ablation")
    return set_overrides(_dataset_config(v["dataset"]), VARIANTS[v["variant"]])


def sweep(add, arg: str = ""):
    dataset = parse_variant(arg, {"dataset": DATASETS}, config="ablation sweep")["dataset"]
    for name, overrides in VARIANTS.items():
        if dataset == "ml100k" and name in DURATION_VARIANTS:
            continue  # no durations: these equal no_duration exactly
        for seed in SEEDS:
            add(**overrides, seed=seed)
