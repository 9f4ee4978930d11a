"""Embedded default: the recommended duration-aware GRU on synthetic browsing logs.

``python launch.py --config configs/default.py --workdir runs/default``
``python launch.py --config configs/default.py:paper --workdir runs/default_paper``: paper
000's aGRU (eq. 6-14) instead of the recommended model (docs/model_and_protocol.md).

The synthetic data's noise clicks are short and genuine clicks long (per user), so durations
carry real signal here; the run also trains the ``duration_mode=none`` ablation and reports
both, with the most-popular ranking, in ``results.json``.
"""

from durgru_jax.base_config import MODELS, get_base_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="default")["model"]
    c = get_base_config()
    c.data.source = "synthetic"
    c.data.max_len = 50  # synthetic sequences are at most 60 events long
    c.train.epochs = 12
    c.train.batch_size = 128
    c.train.patience = 3
    c.optim.learning_rate = 3e-3
    c.compare = ("model.duration_mode=none",)  # the ablation reported beside the full model
    return use_model(c, model)
