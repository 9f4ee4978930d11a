"""MovieLens-1M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), leave-one-out.

``python launch.py --config configs/ml1m.py --workdir runs/ml1m --config.data.path=ratings.dat``

Variants (``--config configs/ml1m.py:VARIANT``):
  * ``default``: full ranking with already-rated movies excluded (the RecBole convention);
  * ``gru4rec``: the protocol of the official GRU4Rec comparison: history *not* excluded,
    selected on validation recall@20;
  * ``rating``: random 90/10 rating split with the rating head (RMSE/MAE of paper 000).

MovieLens has no browsing durations. Default: none, so the duration factor is neutral (0.5)
and ``duration_mode=input`` reduces to a constant input scale; ``data.duration_proxy=prev_gap``
uses the time since the user's previous rating instead (causal, but a weak proxy).
"""

from durgru_jax.base_config import get_base_config


def get_config(variant: str = "default"):
    c = get_base_config()
    c.data.source = "movielens"
    c.data.path = "data/raw/ml-1m/ratings.dat"  # official: grouplens.org/datasets/movielens/1m
    c.data.dataset = "ml1m"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.max_len = 100  # input events per training window / evaluation input
    c.data.hour_buckets = 0  # rating timestamps say when a rating was entered, not watched
    c.data.gap_buckets = 4  # time since the previous rating, 4 quantile buckets
    c.model.embed_dim = 64
    c.model.hidden_dim = 100
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-2  # Adam; 2e-3 reaches the same recall 2x slower
    c.train.batch_size = 128
    c.train.epochs = 20
    c.train.patience = 3
    c.train.log_every = 20
    if variant == "gru4rec":
        c.eval.exclude_history = False  # GRU4Rec ranks every item, rated ones included
        c.train.select_metric = "valid/recall@20"
    elif variant == "rating":
        c.data.split = "random"  # 90/10; validation is 10% of the 90 (81/9/10 overall)
        c.data.random_test_ratio = 0.1
        c.data.random_valid_ratio = 0.09
        c.loss.rating_weight = 1.0
        c.train.select_metric = "valid/rmse"  # minimised
    elif variant != "default":
        raise ValueError(f"unknown ml1m variant {variant!r}: default | gru4rec | rating")
    return c
