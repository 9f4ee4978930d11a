"""Item-based CF with paper 001's IUF similarity (eq. 1), top-k neighbours (eq. 2) and its
time window m (eq. 4) as an option. See ``durgru_jax/baselines/itemcf.py`` for the formulas
and our reading of eq. 4.

``python launch.py --config configs/itemcf.py:ml1m --workdir runs/itemcf_ml1m``
``python launch.py --config configs/itemcf.py:taobao --workdir runs/itemcf_taobao
  --config.baseline.itemcf.time_window_m=10``

Variants name the data: ``synthetic`` (default) or ``NAME[-VARIANT]``, whose ``data`` and
``eval`` groups are copied from ``configs/NAME.py`` (e.g. ``ml1m``, ``ml100k``, ``taobao``).
On data with ratings the weighted-average rating prediction adds RMSE/MAE.
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
    b.name = "itemcf"  # "pop" | "itemcf" | "mf"
    b.itemcf = i = ml_collections.ConfigDict()
    i.n_neighbors = 20  # k of eq. 2: most similar items kept per item (when select_k is empty)
    # m of eq. 4, counted in events (0: off). On: a user counts towards w_ij only when the
    # user's training events on i and j are at most m positions apart (eq. 4's 2m events
    # around v_n), and a user is scored from the last m visible events only.
    i.time_window_m = 0
    i.iuf = True  # eq. 1's inverse user frequency 1/log(1+|N(u)|) (False: plain cosine)
    i.alpha = 0.5  # denominator |N(i)|^alpha |N(j)|^(1-alpha); 0.5 is eq. 1's square root
    i.normalize = "none"  # "none" | "max": divide each item's neighbour weights by their max
    # Candidate k values, the best chosen on validation (empty: k = n_neighbors). One fit with
    # the largest k serves them all (neighbour lists are sorted).
    i.select_k = (10, 20, 50, 100, 200)
    i.select_metric = "valid/ndcg@10"  # the validation metric of that choice
    i.block_rows = 1024  # similarity rows computed at once (memory: block_rows x items floats)
    return c
