"""Your own interaction log: CSV / TSV / Parquet with ``user,item,timestamp`` columns and
optional ``duration`` (seconds), ``rating`` and ``behavior``.

``python launch.py --config configs/csv.py --workdir runs/mylog --config.data.path=log.csv``

``--config configs/csv.py:paper``: paper 000's aGRU instead of the recommended model
(docs/model_and_protocol.md).

Remap column names with ``--config.data.columns.user=session_id`` etc. Timestamps may be
numbers (``--config.data.timestamp_unit=ms`` for milliseconds) or ISO-8601 strings.
"""

from durgru_jax.base_config import MODELS, get_base_config, parse_variant, use_model

CHOICES = {"model": MODELS}  # the argument after ":", default first


def get_config(arg: str = ""):
    model = parse_variant(arg, CHOICES, config="csv")["model"]
    c = get_base_config()
    c.data.source = "csv"
    c.data.path = ""  # required: --config.data.path=FILE
    c.data.max_len = 50  # input events per training window / evaluation input
    c.train.epochs = 20
    return use_model(c, model)
