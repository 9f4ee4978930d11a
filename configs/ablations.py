"""Ablations of the full model, as variants of one config (issue 4).

One variant: ``python launch.py --config configs/ablations.py:no_duration --workdir W``.
All variants x 3 seeds: ``python launch.py --config configs/ablations.py --sweep --workdir W``
(``--config configs/ablations.py:ml100k`` etc. runs the same sweep on another dataset).

Variants: full | no_duration | duration_gate | no_aux | gru | no_relevance | reset_gate |
shuffled_durations.
``shuffled_durations`` permutes each user's durations among that user's events (per split): a
control that keeps every statistic of the factor but breaks its link to the events, so it must
erase any gain that durations bring.
"""

from durgru_jax.base_config import get_base_config

VARIANTS = {
    "full": {},
    "no_duration": {"model.duration_mode": "none"},
    "duration_gate": {"model.duration_mode": "gate"},
    "no_aux": {"loss.aux_weight": 0.0},
    "gru": {"model.cell": "gru"},
    "no_relevance": {"model.relevance": False},
    "reset_gate": {"model.reset_gate": True},
    "shuffled_durations": {"data.shuffle_durations": True},
}
SEEDS = (0, 1, 2)


def _set(c, key, value):
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value


def get_config(variant: str = "full"):
    c = get_base_config()  # the synthetic default data and model
    c.train.epochs = 12
    c.optim.learning_rate = 3e-3
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation {variant!r}: {' | '.join(VARIANTS)}")
    for key, value in VARIANTS[variant].items():
        _set(c, key, value)
    return c


def sweep(add):
    for overrides in VARIANTS.values():
        for seed in SEEDS:
            add(**overrides, seed=seed)
