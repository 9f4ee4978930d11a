"""Tianchi 2015 mobile recommendation logs (``user_id,item_id,behavior_type,user_geohash,
item_category,time``; ``time`` is ``YYYY-MM-DD HH``).

``python launch.py --config configs/tianchi.py --workdir runs/tianchi \\
    --config.data.path=tianchi_mobile_recommend_train_user.csv``

``--config configs/tianchi.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

As ``configs/taobao.py`` (per-user leave-one-out, behaviour type as the aGRU's input context), but
timestamps have hour resolution, so no dwell time can be derived: the duration factor is
neutral and ``duration_mode`` only matters as an ablation switch.
"""

from durgru_jax.base_config import MODELS, get_user_log_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="tianchi")["model"]
    c = get_user_log_config()  # one sequence per user, leave-one-out, 5-core
    c.data.source = "tianchi"
    c.data.path = "data/raw/tianchi/tianchi_mobile_recommend_train_user.csv"
    c.data.dataset = "tianchi"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.duration_proxy = "none"  # hour-resolution times: a gap is not a dwell
    c.model.duration_delay = 0
    return use_model(c, model)
