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

from durgru_jax.base_config import get_base_config, get_movielens_config, get_session_config

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


def _parse(arg: str) -> tuple[str, str]:
    dataset, variant = "synthetic", "full"
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if token in DATASETS:
            dataset = token
        elif token in VARIANTS:
            variant = token
        else:
            raise ValueError(
                f"unknown ablation argument {token!r}: a dataset ({' | '.join(DATASETS)}) "
                f"and/or a variant ({' | '.join(VARIANTS)})"
            )
    return dataset, variant


def _set(c, key, value):
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value


def _dataset_config(dataset: str):
    if dataset == "synthetic":
        c = get_base_config()  # the synthetic default data and model
        c.train.epochs = 12
        c.optim.learning_rate = 3e-3
    elif dataset == "yoochoose":  # the prepared RecSys 2015 sample: sessions, derived dwell
        c = get_session_config()
        c.data.source = "yoochoose_prepared"
        c.data.path = "data/raw/yoochoose/yoochoose-clicks-100k_train_full.txt"
        # 6 steps per epoch: after 10 epochs validation recall@20 was still rising steeply,
        # so every variant trains until validation stops improving (patience 3).
        c.train.epochs = 60
    else:  # MovieLens-100K: no durations, so only the non-duration ablations are declared
        c = get_movielens_config()
        c.data.path = "data/raw/ml-100k/u.data"
        c.data.dataset = "ml100k"
        c.train.batch_size = 64
        c.train.epochs = 30
        c.train.patience = 4
    return c


def get_config(arg: str = "full"):
    dataset, variant = _parse(arg)
    c = _dataset_config(dataset)
    for key, value in VARIANTS[variant].items():
        _set(c, key, value)
    return c


def sweep(add, arg: str = ""):
    dataset, _ = _parse(arg)
    for name, overrides in VARIANTS.items():
        if dataset == "ml100k" and name in DURATION_VARIANTS:
            continue  # no durations: these equal no_duration exactly
        for seed in SEEDS:
            add(**overrides, seed=seed)
