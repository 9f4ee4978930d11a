"""MovieLens-1M ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), leave-one-out.

``python launch.py --config configs/ml1m.py --workdir runs/ml1m --config.data.path=ratings.dat``

Variants (``--config configs/ml1m.py:VARIANT``):
  * ``default``: full ranking with already-rated movies excluded (the RecBole convention);
  * ``gru4rec``: the protocol of the official GRU4Rec comparison: history *not* excluded,
    selected on validation recall@20;
  * ``rating``: random 90/10 rating split with the rating head (RMSE/MAE of paper 000);
  * ``paper``, also with a protocol (``gru4rec,paper``): paper 000's aGRU instead of the
    recommended model (docs/model_and_protocol.md; on the two ranking protocols it has the
    seen-item offset: no one rates a movie twice).

MovieLens has no browsing durations. Default: none, so the duration factor is neutral (1) and
every ``duration_mode`` computes what ``none`` does; ``data.duration_proxy=prev_gap`` uses the
time since the user's previous rating instead (causal, but a weak proxy).
"""

from durgru_jax.base_config import MODELS, MOVIELENS_VARIANTS, get_movielens_config

CHOICES = {"variant": MOVIELENS_VARIANTS, "model": MODELS}  # after ":", defaults first


def get_config(arg: str = ""):
    c = get_movielens_config(arg)
    c.data.path = "data/raw/ml-1m/ratings.dat"  # official: grouplens.org/datasets/movielens/1m
    c.data.dataset = "ml1m"  # fetched into data/raw/ when the path is missing (if allowed)
    c.train.batch_size = 128
    c.train.epochs = 20
    c.train.patience = 3
    return c
