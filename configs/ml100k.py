"""MovieLens-100K ``u.data`` (``user item rating timestamp``, TAB), leave-one-out.

``python launch.py --config configs/ml100k.py --workdir runs/ml100k --config.data.path=u.data``

Same protocol and duration choice as ``configs/ml1m.py`` (see there), smaller model.
"""

from durgru_jax.base_config import get_base_config


def get_config(variant: str = "default"):
    c = get_base_config()
    c.data.source = "movielens"
    c.data.path = "data/raw/ml-100k/u.data"  # official: grouplens.org/datasets/movielens/100k
    c.data.dataset = "ml100k"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.max_len = 100  # input events per training window / evaluation input
    c.data.hour_buckets = 0  # rating timestamps say when a rating was entered, not watched
    c.data.gap_buckets = 4  # time since the previous rating, 4 quantile buckets
    c.model.embed_dim = 64
    c.model.hidden_dim = 100
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-2  # Adam; 2e-3 reaches the same recall 2x slower
    c.train.batch_size = 64
    c.train.epochs = 30
    c.train.patience = 4
    c.train.log_every = 20
    if variant == "gru4rec":
        c.eval.exclude_history = False
        c.train.select_metric = "valid/recall@20"
    elif variant == "rating":
        c.data.split = "random"  # 90/10; validation is 10% of the 90 (81/9/10 overall)
        c.data.random_test_ratio = 0.1
        c.data.random_valid_ratio = 0.09
        c.loss.rating_weight = 1.0
        c.train.select_metric = "valid/rmse"  # minimised
    elif variant != "default":
        raise ValueError(f"unknown ml100k variant {variant!r}: default | gru4rec | rating")
    return c
