"""GRU4Rec done right (Hidasi et al. 2016/2018; Hidasi & Czapp 2023), as a baseline inside the
main model and training code: same data pipeline, same full-ranking evaluator.

``python launch.py --config configs/gru4rec.py:ml1m --workdir runs/gru4rec_ml1m \\
    --config.data.path=PATH/ratings.dat``
``python launch.py --config configs/gru4rec.py:ml1m,bpr_max --workdir runs/gru4rec_ml1m_bpr``

The argument is a dataset, a loss and/or ``official``, comma-separated. Datasets (their
``data``, ``eval`` and ``train`` groups are those of the dataset's own config): ``synthetic``
(default, ``configs/default.py``), ``ml1m`` / ``ml100k`` (``configs/ml1m.py:gru4rec`` /
``configs/ml100k.py:gru4rec``: history not excluded, selection on validation recall@20),
``yoochoose`` (``configs/yoochoose.py``, the raw clicks) and ``prepared``
(``configs/yoochoose.py:prepared``). Losses: ``xe`` (default; cross-entropy over the in-batch
and sampled negatives with log-Q correction) or ``bpr_max``. ``official`` (`official`; the
default is ``ours``) trains as the official code does, with the values of its paramfile for
the loss (`OFFICIAL`): one-step session-parallel updates (``train.bptt=1``), Adagrad with
momentum, separate dropout rates on the embeddings and the hidden state, ELU on the BPR-max
scores, no gradient clipping, the output bias from zero, 10 epochs.

GRU4Rec is: a plain GRU (no durations, no contexts), input and output item embeddings shared
(GRU4Rec's "constrained embedding"), dropout on the embeddings entering the GRU and on its
output, the state reset at every sequence boundary (packed rows carry ``reset``), and the
other rows' targets at the same step plus ``n_sampled`` shared draws as negatives. What
differs from the official code (without ``official``): windows of ``data.max_len`` steps
trained with BPTT instead of one-step session-parallel updates; one dropout rate for both
places; Adam instead of Adagrad with momentum; no ELU on the BPR-max scores; cross-entropy
draws its negatives from popularity^1 (BPR-max from popularity^0.4, ``loss.sample_alpha``, as
the paramfile). Always: log-Q as the log expected count of each candidate with accidental hits
removed (the official ``logq`` subtracts ``log pop`` of in-batch and ``log pop^alpha`` of
sampled candidates and keeps hits); accidental hits removed from BPR-max's negatives too; with
cross-entropy the output bias starts at the log popularity (with BPR-max at zero, as in
GRU4Rec); the GRU output meets the item embeddings through a learned projection
(``out.proj``), where the official constrained embedding scores the GRU output directly; the
official hidden dropout also drops the state carried to the next step, ours only the output;
the state restarts at every window (``data.max_len`` events), the official one runs through the
whole session.
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
# The argument after ":", defaults first.
CHOICES = {"dataset": tuple(DATASETS), "loss": LOSSES, "setup": ("ours", "official")}
# The official paramfiles (hidasib/GRU4Rec_PyTorch_Official, paramfiles/) `official` takes:
# BPR-max: retailrocket_bprmax_shared_best; cross-entropy: rsc15_xe_shared_100_best.
OFFICIAL = {
    "bpr_max": {
        "layers": 224,
        "batch_size": 80,
        "dropout_p_embed": 0.5,
        "dropout_p_hidden": 0.05,
        "learning_rate": 0.05,
        "momentum": 0.4,
        "n_sample": 2048,
        "sample_alpha": 0.4,
        "bpreg": 1.95,
        "elu_param": 0.5,
    },
    "xe": {
        "layers": 100,
        "batch_size": 32,
        "dropout_p_embed": 0.0,
        "dropout_p_hidden": 0.4,
        "learning_rate": 0.2,
        "momentum": 0.2,
        "n_sample": 2048,
        "sample_alpha": 0.5,
    },
}


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
    if v["setup"] == "official":
        official(c, OFFICIAL[v["loss"]])
    return c


def official(c, p: dict) -> None:
    """The official GRU4Rec's training with the paramfile values ``p``, in place."""
    m, l, o, t = c.model, c.loss, c.optim, c.train  # noqa: E741
    m.hidden_dim = m.embed_dim = p["layers"]
    m.dropout_embed = p["dropout_p_embed"]
    m.dropout_hidden = p["dropout_p_hidden"]
    m.init_bias_from_popularity = False  # the official output bias starts at zero
    l.n_sampled = p["n_sample"]
    l.sample_alpha = p["sample_alpha"]
    if "bpreg" in p:
        l.bpreg = p["bpreg"]
        l.bpr_elu = p["elu_param"]
    o.name = "adagrad_momentum"  # IndexedAdagradM
    o.learning_rate = p["learning_rate"]
    o.momentum = p["momentum"]
    o.schedule, o.warmup_steps = "constant", 0
    o.clip_norm = 0.0  # the official code does not clip
    t.batch_size = p["batch_size"]
    t.bptt = 1  # session-parallel: one update per step of every row, the state carried
    t.epochs = 10  # the paramfiles' n_epochs
