"""DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``, session-based next-click prediction.

``python launch.py --config configs/diginetica.py --workdir runs/dn \\
    --config.data.path=train-item-views.csv``

``--config configs/diginetica.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Same protocol as ``configs/yoochoose.py`` with the last 7 days as test and the 7 before as
validation (the usual DIGINETICA cut). Timestamps are the event date plus the ``timeframe``
offset (ms since the session's first event), so dwell = difference of consecutive timeframes.

Variants (``--config configs/diginetica.py:VARIANT``):

* ``full`` (default): the whole file, GRU4Rec's filters (items with >= 5 clicks);
* ``sample``: the 12,391-row sample in the shared data folder (``diginetica-sample/``), where
  the 5-click filter keeps 7 % of the events (the run would stop, naming it): items with
  >= 2 clicks, smaller batches and more epochs, so the run trains past its floor of 100 steps.
"""

from durgru_jax.base_config import (
    MODELS,
    get_session_config,
    parse_variant,
    shared_sample,
    use_model,
)

CHOICES = {"variant": ("full", "sample"), "model": MODELS}  # after ":", defaults first


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="diginetica")
    variant = v["variant"]
    c = get_session_config()
    c.data.source = "diginetica"
    c.data.path = "data/raw/diginetica/train-item-views.csv"
    c.data.dataset = "diginetica"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.temporal_test_days = 7.0  # the last week is test
    c.data.temporal_valid_days = 7.0  # the week before validation
    if variant == "sample":
        c.data.path = shared_sample("diginetica-sample/sample_train-item-views.csv")
        c.data.kcore_items = 2
        c.train.batch_size = 64
        c.train.epochs = 100
    return use_model(c, v["model"])
