"""RecSys Challenge 2015 (YOOCHOOSE) clicks, session-based next-click prediction.

``python launch.py --config configs/yoochoose.py --workdir runs/yc \\
    --config.data.path=yoochoose-clicks.dat``
``python launch.py --config configs/yoochoose.py:prepared --workdir runs/yc \\
    --config.data.path=train.tsv``

Protocol (GRU4Rec's): sessions are the sequences; items with fewer than 5 clicks and sessions
with fewer than 2 are removed (iteratively); sessions ending in the last day are test, the day
before validation; every click of a held-out session after its first is a target, with the
session's earlier clicks as input. Dwell time = gap to the next click of the session (capped);
a session's last click has none. Because that gap *is* the next click's time,
``model.duration_delay=1`` keeps it out of the prediction it would leak into.
"""

from durgru_jax.base_config import get_session_config, parse_variant

CHOICES = {"variant": ("clicks", "prepared")}  # the argument after ":", default first


def get_config(arg: str = ""):
    variant = parse_variant(arg, CHOICES, config="yoochoose")["variant"]
    c = get_session_config()
    if variant == "clicks":
        c.data.source = "yoochoose"  # yoochoose-clicks.dat: session,ISO time,item,category
        c.data.path = "data/raw/yoochoose/yoochoose-clicks.dat"
        c.data.dataset = "yoochoose"  # registry entry: says where to get the file
    else:  # prepared
        c.data.source = "yoochoose_prepared"  # TSV SessionId ItemId Time (GRU4Rec's)
        c.data.path = "data/raw/yoochoose/yoochoose-clicks-100k_train_full.txt"
    return c
