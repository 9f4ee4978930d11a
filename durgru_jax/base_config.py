"""The base experiment config; every file in ``configs/`` starts from `get_base_config()`."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def get_optim_config() -> ml_collections.ConfigDict:
    """The ``config.optim`` group (read by ``durgru_jax.train.make_optimizer``)."""
    o = ml_collections.ConfigDict()
    o.name = "adam"  # "adam" | "adamw" | "sgd" | "adagrad"
    o.learning_rate = 1e-3  # peak learning rate
    o.schedule = "constant"  # "constant" | "cosine" | "linear" decay after warm-up
    o.warmup_steps = 0  # linear warm-up steps
    o.weight_decay = 0.0  # adamw only
    o.clip_norm = 1.0  # global gradient-norm clipping (0: off)
    return o


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds parameters, data order, dropout and negative sampling

    c.data = d = ml_collections.ConfigDict()
    d.source = "synthetic"  # "synthetic" | "movielens" | "csv"
    d.path = ""  # input file for movielens / csv
    d.dataset = ""  # registry name (durgru_jax/data/download.py) to fetch a missing file
    d.download = True  # fetch a missing registered dataset from its official source
    d.cache = True  # cache the prepared arrays (keyed by config + source size/mtime)
    d.cache_dir = ""  # "" = $DURGRU_CACHE or ~/.cache/durgru_jax
    d.on_bad_rows = "error"  # "error": stop at the first bad row; "skip": drop and count them
    d.sep = ""  # csv only: field separator ("" = from the file extension)
    d.timestamp_unit = "s"  # csv only: unit of numeric timestamps, "s" | "ms"
    d.columns = ml_collections.ConfigDict()  # csv only: canonical name -> column in the file
    d.columns.user = "user"
    d.columns.item = "item"
    d.columns.timestamp = "timestamp"
    d.columns.duration = ""  # "" = use a column named "duration" if the file has one
    d.columns.rating = ""
    d.columns.behavior = ""
    d.synthetic = ml_collections.ConfigDict()  # keyword arguments of generate_synthetic
    d.synthetic.n_users = 2000  # users
    d.synthetic.n_items = 1000  # catalogue size
    d.synthetic.n_topics = 20  # interest topics (items are split among them)
    d.synthetic.min_len = 20  # shortest user sequence
    d.synthetic.max_len = 60  # longest user sequence
    d.synthetic.noise_rate = 0.3  # share of short-dwell noise clicks
    d.synthetic.drift = 0.1  # per-event probability of switching topic
    d.synthetic.seed = 0  # generator seed (independent of the run's seed)
    # "leave_one_out" (last test, 2nd-to-last valid) | "random" | "temporal" (global cut-off)
    d.split = "leave_one_out"
    d.random_test_ratio = 0.1  # split="random": share of events held out for test
    d.random_valid_ratio = 0.1  # split="random": share held out for validation
    d.temporal_test_days = 1.0  # split="temporal": the last days (before the newest event) test
    d.temporal_valid_days = 1.0  # split="temporal": the days before them validation
    d.temporal_by_sequence = True  # split="temporal": a sequence goes whole by its last event
    d.min_user_events = 3  # leave_one_out: users with fewer events only train
    d.kcore_users = 0  # iteratively drop users with fewer events (0: off)
    d.kcore_items = 0  # iteratively drop items with fewer events (0: off)
    d.session_gap_s = 0.0  # cut each user's events into sessions at longer gaps (0: off)
    d.drop_consecutive_repeats = False  # drop an event repeating the previous item
    # inputs of a held-out event: "held_out_hidden" (visible = training events, plus the
    # validation ones for test) | "all_past" (every earlier event of the sequence) | "auto"
    # (all_past for split="temporal", else held_out_hidden)
    d.eval_history = "auto"
    d.max_len = 50  # input events per sequence (training windows and evaluation inputs)
    d.duration_transform = "log1p"  # transform before the per-user z-score: "log1p" | "none"
    d.duration_min_events = 3  # users with fewer training durations get the neutral factor
    # data without durations: "none" | "prev_gap" (time since the previous event) | "next_gap"
    # (dwell = time to the next event of the sequence, capped at dwell_cap_s)
    d.duration_proxy = "none"
    d.dwell_cap_s = 1800.0  # cap of a next_gap dwell, seconds
    d.dwell_break_s = 0.0  # next_gap: a longer gap ends the visit, so no dwell (0: off)
    d.shuffle_durations = False  # control: permute durations within each (user, split)
    d.pack = True  # several short training windows share a row (state reset between them)
    d.use_behavior = True  # behaviour type (if the data has one) as an aGRU input context
    d.hour_buckets = 4  # hour-of-day input-context buckets (0: off; must divide 24)
    d.gap_buckets = 4  # time-gap transfer-context buckets (0: off)

    c.model = m = ml_collections.ConfigDict()
    m.cell = "agru"  # "agru" (eq. 6-8) | "gru" (eq. 10-11) | "sasrec" | "adpr" (attention.py)
    m.duration_mode = "input"  # "none" | "input" (paper, eq. 10) | "gate" (AUGRU-style)
    m.embed_dim = 64  # item embedding size (the paper's k)
    m.hidden_dim = 100  # hidden state size
    m.dropout = 0.1  # on cell inputs and outputs
    m.tie_output = False  # score with the item embeddings (eq. 12 with W_0 tied)
    m.relevance = True  # aGRU: the relevance context C_A in the update gate (eq. 7)
    m.reset_gate = False  # aGRU ablation: a learned reset gate instead of the paper's r_t = I
    # alpha = duration_scale * sigmoid(z). 1.0 is eq. (9) as printed (an average event gets
    # 0.5); 2.0 gives an average or unknown event exactly 1, so "none" is the case z = 0.
    m.duration_scale = 2.0
    m.scan_unroll = 4  # lax.scan unroll factor (speed only; ~15% faster than 1 on CPU)
    m.init_bias_from_popularity = True  # output bias starts at log training popularity
    # 0: an event's duration is known when the next item is predicted (measured dwell);
    # 1: only after the next event (dwell derived from the next click's time): the prediction
    # made at event t then uses a neutral factor for t, so the next click's time never leaks.
    m.duration_delay = 0
    m.n_layers = 2  # sasrec: self-attention blocks
    m.n_heads = 1  # sasrec: attention heads (must divide hidden_dim)
    # sasrec's positional table size (model.max_len) is not set here: like the catalogue size
    # it is filled in from the data, = data.max_len. Attention cells need duration_mode=none.
    # "bfloat16": the train step computes in bf16 from f32 master weights (logsumexp and
    # losses stay f32, gradients are f32); meant for GPUs/TPUs, slow on CPU. Evaluation is f32.
    m.compute_dtype = "float32"

    c.loss = l = ml_collections.ConfigDict()
    l.target = "full"  # "full": softmax over all items (NLL) | "sampled" (log-Q) | "bpr_max"
    l.n_sampled = 1024  # target="sampled": shared negatives per batch
    l.sampler = "popularity"  # target="sampled": "uniform" | "popularity"
    l.aux_weight = 0.5  # alpha of eq. (14); 0 switches the auxiliary loss off
    l.aux_negatives = 1  # negatives per step for the auxiliary loss, eq. (13)
    l.aux_sampler = "uniform"  # "uniform" | "popularity"
    l.rating_weight = 0.0  # > 0 adds the next-item rating MSE (data with ratings)
    l.bpreg = 1.0  # target="bpr_max": weight of its score regulariser sum_j s_j r_j^2
    # sampler="popularity": draws from popularity^alpha (GRU4Rec's sample_alpha; 1: as is)
    l.sample_alpha = 1.0

    c.optim = get_optim_config()

    c.train = t = ml_collections.ConfigDict()
    t.batch_size = 128  # sequences (windows) per step
    t.epochs = 20  # maximum epochs
    t.max_steps = 0  # stop after this many steps (0: no limit)
    t.patience = 3  # evaluations without validation improvement before early stopping
    t.select_metric = "valid/ndcg@10"  # model selection metric (validation only)
    t.log_every = 50  # steps between progress lines / metrics.jsonl records
    t.eval_every_epochs = 1  # validation every this many epochs
    # also validate every this many optimizer steps (and at step 0), appended to metrics.jsonl
    # for metric-vs-iteration curves (0: off); selection and early stopping stay at epoch ends
    t.eval_every_steps = 0
    t.time_budget_s = 0.0  # stop training after this many seconds (0: no limit)
    # Devices (durgru_jax/parallel.py): a (data_parallel x model_parallel) mesh. Batches are
    # split over data_parallel devices (0: all devices not used by model_parallel; batch_size
    # is padded with empty rows to a multiple of it); model_parallel > 1 splits the item
    # tables along the item axis. 1 x 1 is the plain one-device path.
    t.data_parallel = 1
    t.model_parallel = 1

    c.eval = e = ml_collections.ConfigDict()
    e.ks = (5, 10, 20)  # cutoffs of every ranking metric
    e.exclude_history = True  # never rank items the user already interacted with
    e.batch_size = 512  # users per evaluation chunk
    e.item_chunk = 65536  # items scored at once (memory: batch_size x item_chunk floats)
    e.unknown_targets = "miss"  # targets never seen in training: "miss" | "drop"
    # also paper 001's top-N protocol: one list per user (from its earliest held-out example)
    # against the set of items of its held-out period: topn_precision/recall/coverage@K
    e.user_topn = False

    # Extra runs trained beside this one, each "key=value[,key=value]" of overrides; their
    # metrics are stored under "comparisons" in results.json.
    c.compare = ()
    return c


def get_session_config() -> ml_collections.ConfigDict:
    """Base for click / behaviour logs: sessions, derived dwell, temporal split."""
    c = get_base_config()
    d = c.data
    d.split = "temporal"  # sessions ending in the last day are test, the day before valid
    d.session_gap_s = 1800.0  # a user's events 30 min apart start a new session
    d.kcore_users = 2  # sessions with a single click cannot be evaluated
    d.kcore_items = 5  # items with fewer than 5 clicks are removed (GRU4Rec's filter)
    d.drop_consecutive_repeats = True  # a reload of the same item is one view
    d.duration_proxy = "next_gap"  # dwell = gap to the next click of the session
    d.hour_buckets = 4
    d.max_len = 20
    c.model.duration_delay = 1  # that dwell is the next click's time: never let it leak
    c.eval.exclude_history = False  # re-clicking an item is a legitimate next click
    c.eval.unknown_targets = "drop"  # test items never seen in training are removed
    c.train.select_metric = "valid/recall@20"
    c.train.batch_size = 256
    c.optim.learning_rate = 5e-3
    return c


def get_movielens_config(variant: str = "default") -> ml_collections.ConfigDict:
    """Base for MovieLens: leave-one-out; ``variant`` "gru4rec" (history not excluded,
    selection on recall@20, as GRU4Rec evaluates) or "rating" (random 90/10 rating split)."""
    c = get_base_config()
    c.data.source = "movielens"
    c.data.max_len = 100  # input events per training window / evaluation input
    c.data.hour_buckets = 0  # rating timestamps say when a rating was entered, not watched
    c.data.gap_buckets = 4  # time since the previous rating, 4 quantile buckets
    c.model.embed_dim = 64
    c.model.hidden_dim = 100
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-2  # Adam; 2e-3 reaches the same recall 2x slower
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
        raise ValueError(f"unknown MovieLens variant {variant!r}: default | gru4rec | rating")
    return c


def set_overrides(c: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """Sets dotted ``{"group.key": value}`` overrides in place (a sweep's or a variant's);
    returns ``c``. An unknown key raises, as a mistyped ``--config.x=y`` does."""
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"override {key!r}: no such config field")
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return c


def load_config_file(path: str):
    """The module of a config file (``configs/NAME.py``), for configs built from others."""
    name = "_durgru_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot load config file {path!r}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
