"""GRU4Rec done right (Hidasi et al. 2016/2018; Hidasi & Czapp 2023), as a baseline inside the
main model and training code: same data pipeline, same full-ranking evaluator.

``python launch.py --config configs/gru4rec.py:ml1m --workdir runs/gru4rec_ml1m \\
    --config.data.path=PATH/ratings.dat``
``python launch.py --config configs/gru4rec.py:ml1m,bpr_max --workdir runs/gru4rec_ml1m_bpr``

The argument is a dataset and/or a loss, comma-separated. Datasets (their ``data``, ``eval`` and
``train`` groups are those of the dataset's own config): ``synthetic`` (default,
``configs/default.py``), ``ml1m`` / ``ml100k`` (``configs/ml1m.py:gru4rec`` /
``configs/ml100k.py:gru4rec``: history not excluded, selection on validation recall@20),
``yoochoose`` (``configs/yoochoose.py``, the raw clicks) and ``prepared``
(``configs/yoochoose.py:prepared``). Losses: ``xe`` (default; cross-entropy over the in-batch
and sampled negatives with log-Q correction) or ``bpr_max``.

GRU4Rec is: a plain GRU (no durations, no contexts), input and output item embeddings shared
(GRU4Rec's "constrained embedding"), dropout on the embeddings entering the GRU and on its
output, the state reset at every sequence boundary (packed rows carry ``reset``), and the
other rows' targets at the same step plus ``n_sampled`` shared draws as negatives. What
differs from the official code: windows of ``data.max_len`` steps trained with BPTT instead of
one-step session-parallel updates; one dropout rate for both places; Adam instead of Adagrad
with momentum; cross-entropy draws its negatives from popularity^1 (BPR-max from
popularity^0.4, ``loss.sample_alpha``); log-Q as the log expected count of each candidate
with accidental hits removed (the official ``logq`` subtracts ``log pop`` of in-batch and
``log pop^alpha`` of sampled candidates and keeps hits); accidental hits removed from
BPR-max's negatives too; no ELU on the BPR-max scores; with cross-entropy the output bias
starts at the log popularity (with BPR-max at zero, as in GRU4Rec).
"""

from durgru_jax.base_config import load_config, parse_variant

# variant -> its dataset config, configs/NAME.py[:VARIANT]; the model is set below, so the
# dataset's own model choices (its ``paper`` one: the dataclass defaults) stay out of it
DATASETS = {
    "synthetic": "default.py:paper",
    "ml1m": "ml1m.py:gru4rec,paper",
    "ml100k": "ml100k.py:gru4rec,paper",
    "yoochoose": "yoochoose.py:clicks,paper",
    "prepared": "yoochoose.py:prepared,paper",
}
LOSSES = ("xe", "bpr_max")
CHOICES = {"dataset": tuple(DATASETS), "loss": LOSSES}  # the argument after ":", defaults first


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="gru4rec")
    c = load_config(DATASETS[v["dataset"]], beside=__file__)
    c.compare = ()  # the dataset config's ablations belong to the aGRU
    m = c.model
    m.cell = "gru"  # eq. (10)-(11) without the duration factor: GRU4Rec's GRU layer
    m.duration_mode = "none"
    m.tie_output = True  # GRU4Rec's constrained embedding: one item matrix in and out
    m.hidden_dim = 100  # GRU4Rec's usual single layer of 100 units
    m.embed_dim = 100  # constrained embedding: the item vectors have the layer's size
    m.dropout = 0.2  # on the embeddings in and the GRU output
    l = c.loss  # noqa: E741
    l.aux_weight = 0.0  # GRU4Rec has no auxiliary loss
    l.n_sampled = 2048  # GRU4Rec's default number of shared extra negatives
    l.sampler = "popularity"
    if v["loss"] == "xe":
        l.target = "sampled"  # cross-entropy over in-batch + sampled negatives, log-Q
    else:
        l.target = "bpr_max"
        l.bpreg = 1.0  # GRU4Rec's default regulariser weight for BPR-max
        # BPR-max has no log-Q: popularity^1 negatives push popular items down. GRU4Rec draws
        # from popularity^0.3-0.5 (ML-100K validation recall@20: 0.14 with alpha 1, 0.23
        # uniform, 0.24 with 0.4, the value of its retailrocket BPR-max paramfile).
        l.sample_alpha = 0.4
        # The regulariser pulls every score to 0 and fights a log-popularity start (ML-100K
        # validation recall@20 0.12 vs 0.23); GRU4Rec's output bias starts at zero too.
        m.init_bias_from_popularity = False
    return c
