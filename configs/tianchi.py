"""Tianchi 2015 mobile recommendation logs (``user_id,item_id,behavior_type,user_geohash,
item_category,time``; ``time`` is ``YYYY-MM-DD HH``).

``python launch.py --config configs/tianchi.py --workdir runs/tianchi \\
    --config.data.path=tianchi_mobile_recommend_train_user.csv``

As ``configs/taobao.py`` (per-user leave-one-out, behaviour type as input context), but
timestamps have hour resolution, so no dwell time can be derived: the duration factor is
neutral and ``duration_mode`` only matters as an ablation switch.
"""

from durgru_jax.base_config import get_user_log_config


def get_config():
    c = get_user_log_config()  # one sequence per user, leave-one-out, 5-core
    c.data.source = "tianchi"
    c.data.path = "data/raw/tianchi/tianchi_mobile_recommend_train_user.csv"
    c.data.dataset = "tianchi"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.duration_proxy = "none"  # hour-resolution times: a gap is not a dwell
    c.model.duration_delay = 0
    return c
