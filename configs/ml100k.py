"""MovieLens-100K ``u.data`` (``user item rating timestamp``, TAB), leave-one-out.

``python launch.py --config configs/ml100k.py --workdir runs/ml100k --config.data.path=u.data``

Same protocol, model and duration choice as ``configs/ml1m.py`` (see there); smaller batches
and more epochs for a tenth of the data.
"""

from durgru_jax.base_config import get_movielens_config


def get_config(variant: str = "default"):
    c = get_movielens_config(variant)
    c.data.path = "data/raw/ml-100k/u.data"  # official: grouplens.org/datasets/movielens/100k
    c.data.dataset = "ml100k"  # fetched into data/raw/ when the path is missing (if allowed)
    c.train.batch_size = 64
    c.train.epochs = 30
    c.train.patience = 4
    return c
