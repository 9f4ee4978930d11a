"""SASRec (Kang & McAuley 2018) as a baseline, trained with full-softmax cross-entropy.

``python launch.py --config configs/sasrec.py:ml1m --workdir runs/sasrec_ml1m \\
    --config.data.path=PATH/ratings.dat``

Variants (``--config configs/sasrec.py:VARIANT``):
  * ``default``: the embedded synthetic browsing data (``configs/default.py``'s data);
  * ``ml1m``: MovieLens-1M with ``configs/ml1m.py``'s protocol (leave-one-out, rated movies
    excluded from the ranking) and SASRec's ML-1M hyper-parameters (width 50, 2 blocks,
    1 head, dropout 0.2, 200 events of history) except Adam lr 5e-3 and batch 32 instead of
    1e-3 and 128: with the full softmax, 1e-3 / 128 sat at the popularity level for the
    first ~200 steps, and 5e-3 / 32 was best on the ML-1M sample's validation curves (test
    HR@10 0.298 / NDCG@10 0.173 at early stop, README); ``--config.optim.learning_rate=1e-3
    --config.train.batch_size=128`` restores the paper's;
  * ``ml100k``: MovieLens-100K, same model and protocol.

SASRec's loss (one sampled negative per step, binary cross-entropy) is replaced by the
softmax over all items (``loss.target=full``); the output shares the item embeddings
(``model.tie_output``). The encoder is ``durgru_jax/attention.py``; durations are not used.
"""

from durgru_jax.base_config import get_base_config, load_config, parse_variant

CHOICES = {"dataset": ("default", "ml1m", "ml100k")}  # the argument after ":", default first


def _sasrec(c):
    m = c.model
    m.cell = "sasrec"
    m.duration_mode = "none"  # attention cells take no duration factor
    m.embed_dim = 50  # SASRec's d: one width for embeddings and blocks
    m.hidden_dim = 50
    m.n_layers = 2
    m.n_heads = 1
    m.dropout = 0.2
    m.tie_output = True  # SASRec scores with the (shared) item embeddings
    c.loss.target = "full"
    c.loss.aux_weight = 0.0  # no auxiliary loss (eq. 13 is the aGRU's)
    c.optim.learning_rate = 1e-3
    c.train.batch_size = 128
    return c


def get_config(arg: str = ""):
    dataset = parse_variant(arg, CHOICES, config="sasrec")["dataset"]
    if dataset == "default":  # the synthetic data (at most 60 events a user)
        c = get_base_config()
        c.train.epochs = 30
    else:  # configs/ml1m.py / ml100k.py with SASRec's n = 200 events of history (ML-1M)
        c = load_config(f"{dataset}.py:paper", beside=__file__)  # _sasrec sets the model
        c.data.max_len = 200
        c.train.epochs = 200
        c.train.patience = 5
    c = _sasrec(c)
    if dataset == "ml1m":
        c.optim.learning_rate = 5e-3  # chosen on validation (see the docstring)
        c.train.batch_size = 32
    return c
