"""MovieLens-100K ``u.data`` (``user item rating timestamp``, TAB), leave-one-out.

``python launch.py --config configs/ml100k.py --workdir runs/ml100k --config.data.path=u.data``

Same protocol, model and duration choice, and the same variants (``gru4rec``, ``rating``,
``paper``) as ``configs/ml1m.py`` (see there); smaller batches and more epochs for a tenth of
the data.
"""

from durgru_jax.base_config import MODELS, MOVIELENS_VARIANTS, get_movielens_config

CHOICES = {"variant": MOVIELENS_VARIANTS, "model": MODELS}  # after ":", defaults first


def get_config(arg: str = ""):
    c = get_movielens_config(arg)
    c.data.path = "data/raw/ml-100k/u.data"  # official: grouplens.org/datasets/movielens/100k
    c.data.dataset = "ml100k"  # fetched into data/raw/ when the path is missing (if allowed)
    c.train.batch_size = 64
    c.train.epochs = 30
    c.train.patience = 4
    return c
