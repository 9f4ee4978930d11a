"""Criteo display advertising (Kaggle DAC 2014): click-through-rate prediction.

``python launch.py --config configs/criteo.py --workdir runs/criteo``
(``--config.data.path=FILE`` for another location; ``train.txt`` of the Kaggle challenge, the
``dac_sample.txt`` sample, or the CSV variant ``Id,Label,I1..I13,C1..C26`` all work.)

Each impression's 39 fields (13 bucketised integers, 26 hashed categoricals) are read as a
sequence by the aGRU (or GRU) cell; the last hidden state gives the click probability.
Logistic regression on hashed features is trained beside it on the same temporal split (the
file is in time order: last 10% of rows test, the 10% before validation). Durations do not
apply (Criteo has none). See ``durgru_jax/ctr``.

Variants (``--config configs/criteo.py:VARIANT``):

* ``default``: the full Kaggle file, ``data/raw/criteo/train.txt``;
* ``tiny``: the 1,999-row Kaggle sample ``../shared/data/criteo-kaggle-tiny/train.tiny.csv``
  (smaller vocabulary threshold and model; seconds on a CPU);
* ``bench``: no training; generates a file in the Kaggle ``train.txt`` format with
  ``bench.rows`` rows in the workdir and measures preprocessing speed and peak memory
  (``W/criteo_bench.json``).
"""

import ml_collections

from durgru_jax.base_config import get_optim_config, parse_variant, shared_sample

CHOICES = {"variant": ("default", "tiny", "bench")}  # the argument after ":", default first


def get_config(arg: str = ""):
    variant = parse_variant(arg, CHOICES, config="criteo")["variant"]
    c = ml_collections.ConfigDict()
    c.task = "ctr"  # launch.py dispatches to durgru_jax.ctr.run
    c.seed = 0  # seeds parameters, batch order and dropout (both models)

    c.data = d = ml_collections.ConfigDict()
    # Kaggle train.txt (TAB, no header) or the CSV variant with an Id,Label,... header.
    # Download: Kaggle "Display Advertising Challenge" / Criteo Labs dac.tar.gz.
    d.path = "data/raw/criteo/train.txt"
    d.cache_dir = "data/cache/criteo"  # prepared arrays, one folder per (file, options) key
    d.min_count = 10  # values seen fewer times in the training rows share the OOV token
    d.valid_ratio = 0.1  # the rows just before the test rows (temporal split)
    d.test_ratio = 0.1  # the last rows of the file (the file is in time order)
    d.int_transform = "sqlog"  # I1..I13 buckets: "sqlog" floor(ln(x)^2) for x > 2 | "identity"
    d.on_bad_rows = "error"  # "error": stop at the first bad row; "skip": drop and count them
    d.block_mib = 8.0  # text read and parsed per block (memory is bounded by this)
    d.workers = 2  # parser threads (the machine has 2 cores)

    c.model = m = ml_collections.ConfigDict()
    m.cell = "agru"  # "agru" (eq. 6-8) | "gru" (eq. 10-11), reading the 39 fields in order
    m.embed_dim = 16  # token embedding size (shared by all fields)
    m.hidden_dim = 64  # recurrent state size
    m.dropout = 0.1  # on the embeddings and on the final state
    m.relevance = True  # aGRU: relevance context C_A (attention to the mean field embedding)
    m.field_context = True  # aGRU: the field index is the input context (39 input matrices)
    m.scan_unroll = 1  # lax.scan unroll factor (speed only)

    c.optim = get_optim_config()  # the shared optimiser group (adam, lr 1e-3, clip 1.0)

    c.train = t = ml_collections.ConfigDict()
    t.batch_size = 1024  # impressions per step
    t.epochs = 2  # maximum passes over the training rows
    t.max_steps = 0  # stop after this many steps (0: no limit)
    t.patience = 2  # evaluations without a better validation AUC before stopping
    t.eval_every_steps = 5000  # validation every this many steps (0: once per epoch)
    t.log_every = 200  # steps between progress lines / metrics.jsonl records
    t.time_budget_s = 0.0  # stop training after this many seconds (0: no limit)

    c.eval = e = ml_collections.ConfigDict()
    e.batch_size = 8192  # impressions per prediction batch
    e.max_valid_rows = 500_000  # early-stopping evaluations use the first rows only (0: all)

    c.baseline = b = ml_collections.ConfigDict()  # logistic regression on hashed features
    b.enabled = True  # train it beside the model (results.json "baselines")
    b.hash_bits = 20  # (field, token) hashed into 2^hash_bits weights (0: one per token)
    b.optimizer = "adagrad"  # any make_optimizer name
    b.learning_rate = 0.05  # step size
    b.l2 = 0.0  # L2 penalty on the weights (per batch mean loss)
    b.batch_size = 4096  # impressions per step
    b.epochs = 2  # maximum passes (same early stopping as the model)

    c.bench = ml_collections.ConfigDict()  # the "bench" variant only
    c.bench.enabled = False  # True: run the preprocessing benchmark instead of training
    c.bench.rows = 45_000_000  # rows of the generated file (the Kaggle file has 45,840,617)
    c.bench.keep_file = False  # keep the generated file in the workdir afterwards
    c.bench.seed = 0  # generator seed

    if variant == "tiny":
        d.path = shared_sample("criteo-kaggle-tiny/train.tiny.csv")
        d.cache_dir = "data/cache/criteo-tiny"
        d.min_count = 3  # 1,599 training rows
        m.embed_dim = 8
        m.hidden_dim = 32
        t.batch_size = 128
        t.epochs = 10
        t.patience = 3
        t.eval_every_steps = 0
        t.log_every = 10
        e.batch_size = 512
        e.max_valid_rows = 0
        b.hash_bits = 0
        b.batch_size = 128
        b.epochs = 10
    elif variant == "bench":
        c.bench.enabled = True
    return c
