"""RecSys Challenge 2015 (YOOCHOOSE) clicks, session-based next-click prediction.

``python launch.py --config configs/yoochoose.py --workdir runs/yc \\
    --config.data.path=yoochoose-clicks.dat``
``python launch.py --config configs/yoochoose.py:prepared --workdir runs/yc \\
    --config.data.path=train.tsv``
``--config configs/yoochoose.py:paper`` (or ``:prepared,paper``): paper 000's aGRU instead of
the recommended model (docs/model_and_protocol.md).

Protocol (GRU4Rec's): sessions are the sequences; items with fewer than 5 clicks and sessions
with fewer than 2 are removed (iteratively); sessions ending in the last day are test, the day
before validation; every click of a held-out session after its first is a target, with the
session's earlier clicks as input. Dwell time = gap to the next click of the session (capped);
a session's last click has none. Because that gap *is* the next click's time,
``model.duration_delay=1`` keeps it out of the prediction it would leak into.
"""

from durgru_jax.base_config import MODELS, get_session_config, parse_variant, use_model

CHOICES = {"variant": ("clicks", "prepared"), "model": MODELS}  # after ":", defaults first


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="yoochoose")
    c = get_session_config()
    if v["variant"] == "clicks":
        c.data.source = "yoochoose"  # yoochoose-clicks.dat: session,ISO time,item,category
        c.data.path = "data/raw/yoochoose/yoochoose-clicks.dat"
        c.data.dataset = "yoochoose"  # registry entry: says where to get the file
    else:  # prepared
        c.data.source = "yoochoose_prepared"  # TSV SessionId ItemId Time (GRU4Rec's)
        c.data.path = "data/raw/yoochoose/yoochoose-clicks-100k_train_full.txt"
    return use_model(c, v["model"])
