"""MovieLens 20M/25M/32M ``ratings.csv`` (``userId,movieId,rating,timestamp``), leave-one-out.

``python launch.py --config configs/ml20m.py --workdir runs/ml20m --config.data.path=ratings.csv``

``--config configs/ml20m.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Same protocol and duration choice as ``configs/ml1m.py``; a larger catalogue, so the sampled
softmax is the default target loss.
"""

from durgru_jax.base_config import MODELS, get_movielens_config, parse_variant

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="ml20m")["model"]
    c = get_movielens_config(model)
    c.data.path = "data/raw/ml-20m/ratings.csv"
    c.data.dataset = "ml20m"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.kcore_items = 5
    c.loss.target = "sampled"  # 27k-84k items
    c.model.seen_bias = False  # the seen-item offset is trained in the full softmax only
    c.loss.n_sampled = 2048
    c.optim.learning_rate = 5e-3
    c.train.batch_size = 256
    c.train.epochs = 10
    c.train.log_every = 50  # 20M ratings: a progress line every 50 steps, not 20
    return c
