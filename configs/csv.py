"""Your own interaction log: CSV / TSV / Parquet with ``user,item,timestamp`` columns and
optional ``duration`` (seconds), ``rating`` and ``behavior``.

``python launch.py --config configs/csv.py --workdir runs/mylog --config.data.path=log.csv``

Remap column names with ``--config.data.columns.user=session_id`` etc. Timestamps may be
numbers (``--config.data.timestamp_unit=ms`` for milliseconds) or ISO-8601 strings.
"""

from durgru_jax.base_config import get_base_config


def get_config():
    c = get_base_config()
    c.data.source = "csv"
    c.data.path = ""  # required: --config.data.path=FILE
    c.data.max_len = 50  # input events per training window / evaluation input
    c.train.epochs = 20
    return c
