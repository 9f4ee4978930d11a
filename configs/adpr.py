"""ADPR-style attention over the history (our reading of paper 000's Ref. [28]) as a baseline.

``python launch.py --config configs/adpr.py:ml1m --workdir runs/adpr_ml1m \\
    --config.data.path=PATH/ratings.dat``

At step t a dot-product attention, queried by the current event's embedding plus a learned
user-independent query, weighs the embeddings of the user's events up to t; the weighted sum
and the current embedding go through a two-layer MLP (``durgru_jax/attention.py``). Trained
with the full-softmax cross-entropy like every model here; durations are not used.

Variants: ``default`` (synthetic), ``ml1m`` and ``ml100k`` (``configs/ml1m.py``'s
protocol, 200 events of history as ``configs/sasrec.py``).
"""

from durgru_jax.base_config import get_base_config, load_config, parse_variant

CHOICES = {"dataset": ("default", "ml1m", "ml100k")}  # the argument after ":", default first


def _adpr(c):
    m = c.model
    m.cell = "adpr"
    m.duration_mode = "none"  # attention cells take no duration factor
    m.embed_dim = 64
    m.hidden_dim = 100  # attention size and MLP width
    m.dropout = 0.2
    c.loss.target = "full"
    c.loss.aux_weight = 0.0
    c.train.batch_size = 128
    return c


def get_config(arg: str = ""):
    dataset = parse_variant(arg, CHOICES, config="adpr")["dataset"]
    if dataset == "default":  # the synthetic data (at most 60 events a user)
        c = get_base_config()
        c.optim.learning_rate = 3e-3  # as configs/default.py (MovieLens: 1e-2, as the aGRU)
        c.train.epochs = 30
    else:  # configs/ml1m.py / ml100k.py with 200 events of history, as configs/sasrec.py
        c = load_config(f"{dataset}.py:paper", beside=__file__)  # _adpr sets the model
        c.data.max_len = 200
        c.train.epochs = 100
        c.train.patience = 5
    return _adpr(c)
