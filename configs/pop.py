"""Most-popular baseline: every user gets the items ranked by training frequency.

``python launch.py --config configs/pop.py:ml1m --workdir runs/pop_ml1m``

Variants name the data: ``synthetic`` (default, the base config's data) or ``NAME[-VARIANT]``,
whose ``data`` and ``eval`` groups are copied from ``configs/NAME.py`` (e.g. ``ml1m``,
``ml100k``, ``ml1m-gru4rec``, ``taobao``), so the split and the evaluation are exactly the
main model's. Ties are counted against the baseline by the shared ranker.
"""

import os

import ml_collections

from durgru_jax.base_config import get_base_config
from durgru_jax.baselines import use_dataset


def get_config(variant: str = "synthetic"):
    c = get_base_config()
    use_dataset(c, variant, os.path.dirname(os.path.abspath(__file__)))
    c.task = "baseline"  # launch.py hands the config to durgru_jax.baselines.run
    c.baseline = b = ml_collections.ConfigDict()
    b.name = "pop"  # "pop" | "itemcf" | "mf"
    return c
