"""Taobao UserBehavior (Alibaba, Tianchi dataset 649), next-interaction prediction per user.

``python launch.py --config configs/taobao.py --workdir runs/taobao \\
    --config.data.path=UserBehavior.csv``

``--config configs/taobao.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Each user's whole 9-day history is one sequence, leave-one-out (last event test,
second-to-last validation). Behaviour type (pv/cart/fav/buy) and hour-of-day are the aGRU's
input contexts (the recommended GRU does not read them). No durations in the data: dwell =
gap to the user's next event when it comes within 30 minutes (``data.dwell_break_s``), capped
at 10 minutes (``data.dwell_cap_s``), with ``model.duration_delay=1``. Users and items with
fewer than 5 events are removed (iteratively). Repeated interactions with an item are common
in e-commerce logs, so already-seen items stay rankable (``eval.exclude_history=false``).
"""

from durgru_jax.base_config import MODELS, get_user_log_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="taobao")["model"]
    c = get_user_log_config()  # one sequence per user, leave-one-out, 5-core
    c.data.source = "taobao"
    c.data.path = "data/raw/taobao/UserBehavior.csv"
    c.data.dataset = "taobao"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.dwell_break_s = 1800.0  # dwell only up to a pause of 30 min (else: none)
    c.data.dwell_cap_s = 600.0  # and capped at 10 min
    c.train.select_metric = "valid/ndcg@10"
    return use_model(c, model)
