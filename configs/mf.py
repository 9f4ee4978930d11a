"""Biased matrix factorisation ``r = mu + b_u + b_i + p_u . q_i`` for the rating task, trained
with Adam on the training ratings (MSE + L2); the best epoch is chosen on validation RMSE.
It also ranks all items by ``p_u . q_i + b_i`` with the shared ranker.

``python launch.py --config configs/mf.py:ml1m-rating --workdir runs/mf_ml1m``

Variants name the data: ``NAME[-VARIANT]`` (default ``ml100k-rating``: MovieLens-100K, random
81/9/10 rating split, as paper 000's rating task), whose ``data`` and ``eval`` groups are
copied from ``configs/NAME.py``. The data must have ratings.
"""

import os

import ml_collections

from durgru_jax.base_config import get_base_config
from durgru_jax.baselines import use_dataset


def get_config(variant: str = "ml100k-rating"):
    c = get_base_config()
    use_dataset(c, variant, os.path.dirname(os.path.abspath(__file__)))
    c.task = "baseline"  # launch.py hands the config to durgru_jax.baselines.run
    c.baseline = b = ml_collections.ConfigDict()
    b.name = "mf"  # "pop" | "itemcf" | "mf"
    b.mf = m = ml_collections.ConfigDict()
    m.factors = 32  # size of p_u and q_i
    m.reg = 0.1  # L2 weight per rating on its factors and biases (ML-100K validation RMSE)
    m.lr = 5e-3  # Adam learning rate
    m.epochs = 30  # passes over the training ratings
    m.batch_size = 1024  # ratings per step
    m.init_std = 0.1  # std of the normal initialisation of the factors (biases start at 0)
    m.select_epoch = True  # keep the epoch with the lowest validation RMSE
    m.clip = True  # clip predictions to the training ratings' [min, max]
    return c
