"""DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``, session-based next-click prediction.

``python launch.py --config configs/diginetica.py --workdir runs/dn \\
    --config.data.path=train-item-views.csv``

``--config configs/diginetica.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Same protocol as ``configs/yoochoose.py`` with the last 7 days as test and the 7 before as
validation (the usual DIGINETICA cut). Timestamps are the event date plus the ``timeframe``
offset (ms since the session's first event), so dwell = difference of consecutive timeframes.
"""

from durgru_jax.base_config import MODELS, get_session_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="diginetica")["model"]
    c = get_session_config()
    c.data.source = "diginetica"
    c.data.path = "data/raw/diginetica/train-item-views.csv"
    c.data.dataset = "diginetica"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.temporal_test_days = 7.0  # the last week is test
    c.data.temporal_valid_days = 7.0  # the week before validation
    return use_model(c, model)
