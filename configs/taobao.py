"""Taobao UserBehavior (Alibaba, Tianchi dataset 649), next-interaction prediction per user.

``python launch.py --config configs/taobao.py --workdir runs/taobao \\
    --config.data.path=UserBehavior.csv``

``--config configs/taobao.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md), which here includes the repeat-aware output
(`base_config.RECOMMENDED_REPEATS`: it wins on validation on this log).

Each user's whole 9-day history is one sequence, leave-one-out (last event test,
second-to-last validation). Behaviour type (pv/cart/fav/buy) and hour-of-day are the aGRU's
input contexts (the recommended GRU does not read them). No durations in the data: dwell =
gap to the user's next event when it comes within 30 minutes (``data.dwell_break_s``), capped
at 10 minutes (``data.dwell_cap_s``), with ``model.duration_delay=1``. Users and items with
fewer than 5 events are removed (iteratively). Repeated interactions with an item are common
in e-commerce logs, so already-seen items stay rankable (``eval.exclude_history=false``).

Variants (``--config configs/taobao.py:VARIANT``, with ``paper`` or not):

* ``full`` (default): the whole file (100 M rows), users and items 5-core;
* ``sample``: the 814-user subset in the shared data folder (``taobao-userbehavior-subset/``),
  where the 5-core keeps 14 % of the events and one step an epoch (the run would stop at
  setup, naming it): users and items 2-core, smaller batches and more epochs, so the run
  trains past its floor of 100 steps.
"""

from durgru_jax.base_config import (
    MODELS,
    get_user_log_config,
    parse_variant,
    shared_sample,
    use_model,
)

CHOICES = {"variant": ("full", "sample"), "model": MODELS}  # after ":", defaults first


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="taobao")
    variant = v["variant"]
    c = get_user_log_config()  # one sequence per user, leave-one-out, 5-core
    c.data.source = "taobao"
    c.data.path = "data/raw/taobao/UserBehavior.csv"
    c.data.dataset = "taobao"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.dwell_break_s = 1800.0  # dwell only up to a pause of 30 min (else: none)
    c.data.dwell_cap_s = 600.0  # and capped at 10 min
    c.train.select_metric = "valid/ndcg@10"
    if variant == "sample":
        c.data.path = shared_sample("taobao-userbehavior-subset/UserBehavior.csv")
        c.data.kcore_users = 2
        c.data.kcore_items = 2
        c.train.batch_size = 128
        c.train.epochs = 30  # 240 steps at most: minutes on a CPU (the floor is 13 epochs)
    # users come back to items, and seen items stay rankable: the repeat-aware output
    return use_model(c, v["model"], repeats=True)
