"""Paper 001's experiment (its Table 1): top-N recommendation on e-commerce behaviour logs,
item-based CF (IUF, top-k, time window) against recurrent models, on precision, recall, user
coverage and item coverage.

``python launch.py --config configs/paper001.py:agru --sweep --workdir W \\
    --config.data.path=PATH/UserBehavior.csv`` then ``python launch.py --report W``.
One method: ``--config configs/paper001.py:itemcf``: ``rec`` (default: the recommended model,
docs/model_and_protocol.md, with the repeat-aware output) | ``agru`` (paper 000's aGRU) |
``gru`` (the aGRU's settings with the GRU cell) | ``itemcf`` | ``pop``. The sweep declares
every method with the one it is given first (the report's reference), each run as the method's
overrides plus whatever else its config differs in from that one's: with ``:agru`` the runs and
their names are those of the table in docs/results.md plus ``rec``; without a variant the same
runs.

Protocol (our reading of paper 001, Section 4): Taobao UserBehavior (the public Alibaba
behaviour log; paper 001 used the Alibaba competition's mobile log, which needs a login), one
sequence per user, behaviour type (pv/cart/fav/buy) and hour of day as aGRU input contexts.
Events of the last day are held out for test, the day before for validation; every model is
fitted on the earlier events only. Each user with held-out events gets ONE top-N list,
computed from the events before the held-out day, and is scored against the set of items it
interacts with on that day (``eval.user_topn``; metrics ``topn_*@N``, defined in the README and
`durgru_jax.metrics.user_topn_metrics`). Items seen before stay rankable (repeat purchases
and views are the norm in e-commerce). Model selection on validation ``topn_recall@10``.
"""

import os

import ml_collections

from durgru_jax.base_config import (
    RECOMMENDED_MODEL,
    RECOMMENDED_REPEATS,
    config_diff,
    get_base_config,
    parse_variant,
    set_overrides,
)
from durgru_jax.baselines import use_dataset

METHODS = {  # overrides of paper 000's aGRU on this protocol, in the table's order
    "agru": {},
    "gru": {"model.cell": "gru"},
    "itemcf": {"task": "baseline", "baseline.name": "itemcf"},
    "pop": {"task": "baseline", "baseline.name": "pop"},
    "rec": {**RECOMMENDED_MODEL, **RECOMMENDED_REPEATS},  # with the repeat-aware output
}
TRAINED = ("agru", "gru", "rec")  # seeded; the baselines are deterministic
# the argument after ":", default first: the recommended model
CHOICES = {"method": ("rec", *(m for m in METHODS if m != "rec"))}


def get_config(arg: str = ""):
    method = parse_variant(arg, CHOICES, config="paper001")["method"]
    c = get_base_config()
    use_dataset(c, "taobao", os.path.dirname(os.path.abspath(__file__)))
    d = c.data
    d.split = "temporal"  # last day test, the day before validation
    d.temporal_by_sequence = False  # by event: a user's earlier events stay in training
    d.temporal_test_days = 1.0
    d.temporal_valid_days = 1.0
    d.eval_history = "all_past"  # a held-out event's inputs: every earlier event
    d.kcore_users = 2  # the shared 814-user sample: k-core 5 would empty it
    d.kcore_items = 2
    d.duration_proxy = "none"  # no durations in the log (paper 001 uses none)
    c.model.duration_mode = "none"
    c.model.duration_delay = 0
    c.eval.user_topn = True
    c.eval.unknown_targets = "miss"  # a held-out item never seen in training is a miss
    c.train.select_metric = "valid/topn_recall@10"
    c.train.epochs = 10
    c.train.batch_size = 64
    c.optim.learning_rate = 3e-3
    c.task = ""  # "" = the recurrent model; "baseline" = config.baseline
    c.baseline = b = ml_collections.ConfigDict()
    b.name = "itemcf"  # "pop" | "itemcf" (used when task = "baseline")
    b.itemcf = i = ml_collections.ConfigDict()
    i.n_neighbors = 20  # k of eq. 2 (when select_k is empty)
    i.time_window_m = 10  # eq. 4's m, in events (0: off)
    i.iuf = True  # eq. 1's inverse user frequency
    i.alpha = 0.5  # eq. 1's square root
    i.normalize = "none"  # "none" | "max"
    i.select_k = (10, 20, 50, 100)  # k chosen on validation
    i.select_metric = "valid/topn_recall@10"  # the validation metric of that choice
    i.block_rows = 1024  # similarity rows computed at once
    return set_overrides(c, METHODS[method])


def sweep(add, arg: str = ""):
    base = parse_variant(arg, CHOICES, config="paper001 sweep")["method"]
    config = get_config(base)
    for name in (base, *(m for m in METHODS if m != base)):
        # the method's own overrides, and whatever else its config differs in from the base's
        overrides = {**config_diff(get_config(name), config), **METHODS[name]}
        for seed in (0, 1, 2) if name in TRAINED else (0,):
            add(**overrides, seed=seed)
