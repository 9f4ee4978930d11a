"""Readers for raw interaction logs: MovieLens, the original files of the session and behaviour
datasets (Taobao UserBehavior, Tianchi 2015 mobile, YooChoose, DIGINETICA, KuaiRec) and generic
CSV/TSV/Parquet logs. :func:`read_dataset` picks the reader by format name.

Every reader returns a :class:`ReadResult` whose ``events`` frame is in *file order* (the caller
sorts stably by ``(user, timestamp)`` so that equal timestamps keep file order) with columns

* ``user``, ``item``: raw ids, ``int64`` when every kept id is an integer, else ``str``
  (session datasets put the session id in ``user``);
* ``timestamp``: ``float64`` Unix seconds;
* optional ``duration`` (``float64`` seconds, NaN = missing), ``rating`` (``float32``),
  ``behavior`` (``str``; a pandas ``Categorical`` in the original-format readers) and
  ``category`` (``int64`` item category, or a ``Categorical`` of text for YooChoose);
* format-specific extras after those (KuaiRec: ``video_duration`` seconds, ``watch_ratio``).

Malformed rows (wrong number of fields, a non-numeric or missing value where a number is
required, a negative or infinite duration, a missing id or timestamp, an unparsable date) either
raise :class:`DataFormatError` naming file, line and column of the first one
(``on_bad_rows="error"``) or are dropped and counted (``on_bad_rows="skip"``).

Parsing is vectorised with pyarrow compute kernels; line numbers are kept per record, so bad rows
are located without a second pass. The original-format readers stream the file in blocks, so
their memory follows the parsed columns, not the size of the text.

Modules: `values` (the error and result types, parsing one column of raw values), `records`
(splitting a text file into records), `generic` (MovieLens and CSV/TSV/Parquet logs read at
once), `stream` (the block-streaming parser) and `original` (the original dataset formats and
`read_dataset`). Names with a leading underscore are private to this package.
"""

from durgru_jax.data.readers.generic import CANONICAL_COLUMNS, read_interactions, read_movielens
from durgru_jax.data.readers.original import (
    read_dataset,
    read_diginetica,
    read_kuairec,
    read_taobao,
    read_tianchi,
    read_yoochoose_clicks,
    read_yoochoose_prepared,
)
from durgru_jax.data.readers.values import DataFormatError, ReadResult, check_text_head

__all__ = [
    "CANONICAL_COLUMNS",
    "DataFormatError",
    "ReadResult",
    "check_text_head",
    "read_dataset",
    "read_diginetica",
    "read_interactions",
    "read_kuairec",
    "read_movielens",
    "read_taobao",
    "read_tianchi",
    "read_yoochoose_clicks",
    "read_yoochoose_prepared",
]
