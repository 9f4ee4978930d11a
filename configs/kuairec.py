"""KuaiRec (``small_matrix.csv`` / ``big_matrix.csv``): short-video views with the real
``play_duration``, the one dataset here with a measured duration.

``python launch.py --config configs/kuairec.py --workdir runs/kuairec \\
    --config.data.path=small_matrix.csv``

``--config configs/kuairec.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Per-user leave-one-out; duration = play duration in seconds (known when the video ends, before
the next one starts, so ``model.duration_delay=0``).
"""

from durgru_jax.base_config import MODELS, get_base_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="kuairec")["model"]
    c = get_base_config()
    c.data.source = "kuairec"
    c.data.path = "data/raw/kuairec/small_matrix.csv"
    c.data.dataset = "kuairec"  # fetched into data/raw/ when the path is missing (if allowed)
    c.data.on_bad_rows = "skip"  # some KuaiRec rows lack a timestamp: dropped and counted
    c.data.max_len = 100
    c.data.hour_buckets = 4
    c.model.duration_delay = 0
    c.optim.learning_rate = 5e-3
    c.train.batch_size = 128
    return use_model(c, model)
