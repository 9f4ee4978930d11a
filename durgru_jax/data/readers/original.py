"""Readers of the original files of the session and behaviour datasets: Taobao UserBehavior,
Tianchi 2015 mobile, YooChoose (clicks and the prepared TSV), DIGINETICA and KuaiRec, plus
`read_dataset`, which picks a reader (these or the generic ones) by format name.

Each format is a `_Layout` (separator, header, fields, where to download the file) streamed by
`durgru_jax.data.readers.stream`. A reader first looks at the file's first line: when it does
not fit the reader's layout but fits another known layout of the same dataset (`_OTHERS`: the
prepared YOOCHOOSE TSV and ``yoochoose-clicks.dat``; DIGINETICA's CIKM Cup header spelling
and its prepared TSV), the file is read in that layout and the log says so; a file of a
neighbouring dataset (Tianchi for Taobao and back) stops with an error naming the config to
use.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pandas as pd
from absl import logging

from durgru_jax.data.readers.generic import read_interactions, read_movielens
from durgru_jax.data.readers.records import _first_line, _split_header
from durgru_jax.data.readers.stream import _Col, _Layout, _read_layout, _resolve_layout_path
from durgru_jax.data.readers.values import DataFormatError, ReadResult

_DATASET_FORMATS = (
    "movielens",
    "csv",
    "taobao",
    "tianchi",
    "yoochoose",
    "yoochoose_prepared",
    "diginetica",
    "kuairec",
)
_TAOBAO_URL = "https://tianchi.aliyun.com/dataset/649"
_TIANCHI_URL = "https://tianchi.aliyun.com/dataset/46"
_YOOCHOOSE_URL = "https://recsys.acm.org/recsys15/challenge/"
_DIGINETICA_URL = "https://competitions.codalab.org/competitions/11161"
_KUAIREC_URL = "https://kuairec.com/"


def read_taobao(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read Taobao UserBehavior ``UserBehavior.csv`` (Alibaba, Tianchi dataset 649).

    No header; each line is ``user,item,category,behavior,timestamp`` with behaviour ``pv``,
    ``cart``, ``fav`` or ``buy`` and Unix-second timestamps. The file (100M rows) is streamed:
    memory is about 33 bytes per row (``int64`` user, item, category, ``float64`` timestamp,
    ``behavior`` as a pandas ``Categorical`` whose categories start ``pv, cart, fav, buy``).
    Any non-empty behaviour string is kept. A folder is searched for ``UserBehavior.csv``.

    Raises:
        FileNotFoundError: no such file, with where to download it.
        DataFormatError: empty file or a bad row (with ``on_bad_rows="error"``).
    """
    return _read_recognised(path, _TAOBAO, on_bad_rows)


def read_tianchi(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read the Tianchi 2015 mobile recommendation logs (``tianchi_mobile_recommend_train_user``).

    Header ``user_id,item_id,behavior_type,user_geohash,item_category,time`` (columns found by
    name); ``time`` is ``YYYY-MM-DD HH`` (hour resolution, taken as UTC) and ``behavior_type``
    1..4 means click, collect, cart, buy (any other value is a bad row). ``user_geohash`` is
    ignored. Columns: ``user``, ``item``, ``timestamp``, ``behavior`` (Categorical of the four
    names), ``category`` (``int64`` item category).
    """
    return _read_recognised(path, _TIANCHI, on_bad_rows)


def read_yoochoose_clicks(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read RecSys Challenge 2015 ``yoochoose-clicks.dat`` (or ``yoochoose-test.dat``).

    No header; each line is ``session,timestamp,item,category`` with an ISO-8601 timestamp such
    as ``2014-04-07T10:51:09.277Z`` (naive times are taken as UTC). ``user`` is the session id;
    ``category`` is kept as text (``"S"`` = special offer, ``"0"`` = missing, 1-12 categories,
    longer numbers brands) in a pandas ``Categorical``.
    """
    return _read_recognised(path, _YOOCHOOSE, on_bad_rows)


def read_yoochoose_prepared(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read the common prepared YooChoose TSV (GRU4Rec style): header ``SessionId ItemId Time``.

    TAB-separated, columns found by name, ``Time`` in (fractional) Unix seconds. ``user`` is the
    session id.
    """
    return _read_recognised(path, _YOOCHOOSE_PREPARED, on_bad_rows)


def read_diginetica(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``.

    ``;``-separated with header ``session_id;user_id;item_id;timeframe;eventdate``. ``user`` is
    the session id (``user_id``, mostly ``NA``, is ignored). ``timeframe`` counts milliseconds
    from the start of the session, so ``timestamp`` = UTC midnight of the session's *first*
    ``eventdate`` + ``timeframe / 1000``: gaps within a session are exact even for the sessions
    that cross midnight (whose later rows carry the next day's date), and events order by
    ``timeframe`` within a session.
    """
    result = _read_recognised(path, _DIGINETICA, on_bad_rows)
    events = result.events
    if "_eventdate" not in events:  # a prepared TSV: its times are already Unix seconds
        return result
    day = events.pop("_eventdate")
    offset = events.pop("_timeframe")
    if len(events):
        first_day = pd.Series(day.to_numpy()).groupby(events["user"].to_numpy()).transform("min")
        events.insert(2, "timestamp", first_day.to_numpy(np.float64) + offset.to_numpy())
    else:
        events.insert(2, "timestamp", np.zeros(0, np.float64))
    return result


def read_kuairec(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read KuaiRec ``small_matrix.csv`` or ``big_matrix.csv``.

    Header ``user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio``
    (columns found by name; ``time`` and ``date`` are ignored). Durations are milliseconds in
    the file and seconds in the result: ``duration`` = ``play_duration / 1000`` (the real
    viewing time), plus extra columns ``video_duration`` (seconds) and ``watch_ratio``
    (missing = NaN). ``timestamp`` (Unix seconds) is required: the rows where KuaiRec left it
    empty are bad rows (use ``on_bad_rows="skip"``), as are negative durations.
    """
    return _read_recognised(path, _KUAIREC, on_bad_rows)


@dataclasses.dataclass(frozen=True)
class _Other:
    """Another known layout of a reader's dataset, recognised from the file's first line:
    read in it (``advice`` empty) or, for a neighbouring dataset, an error with ``advice``."""

    layout: _Layout
    name: str
    advice: str = ""


def _read_recognised(path: str | os.PathLike[str], layout: _Layout, on_bad_rows: str):
    """`_read_layout` in ``layout``, or in the other known layout (`_OTHERS`) that the
    file's first line fits when it does not fit ``layout`` (logged)."""
    file = _resolve_layout_path(path, layout)
    with open(file, "rb") as handle:
        head = handle.read(1 << 16).removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    line = _first_line(head)[0]
    if not line.strip() or _fits(layout, line):
        return _read_layout(file, layout, on_bad_rows)
    for other in _OTHERS.get(layout.fmt, ()):
        if not _fits(other.layout, line):
            continue
        shape = f"{other.name} ({other.layout.shape})"
        if other.advice:
            raise DataFormatError(file, f"is in the layout of {shape}, not of {layout.fmt}: "
                                  f"{other.advice}")  # fmt: skip
        logging.info("%s: the first line fits %s, not the %s layout (%s): read as format %s",
                     file, shape, layout.fmt, layout.shape, other.layout.fmt)  # fmt: skip
        return _read_layout(file, other.layout, on_bad_rows)
    return _read_layout(file, layout, on_bad_rows)  # its own error names the expected layout


_LOOKS = {
    "id": r"-?\d+",
    "code": r"\d+",
    "num": r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?",
    "iso": r"\d{4}-\d\d-\d\dT.*",
    "hour": r"\d{4}-\d\d-\d\d \d\d?",
    "date": r"\d{4}-\d\d-\d\d",
    "text": r".+",
}


def _fits(layout: _Layout, line: str) -> bool:
    """Whether ``line`` (a file's first) is ``layout``'s header, or a data row of it when the
    layout has none (field count and the look of each value)."""
    fields = _split_header(line, layout.sep)
    if layout.header:
        return all(col.name in fields for col in layout.columns if col.kind != "skip")
    return len(fields) == len(layout.columns) and all(
        re.fullmatch(_LOOKS.get(col.kind, _LOOKS["num"]), value) is not None
        for col, value in zip(layout.columns, fields, strict=True)
        if col.kind != "skip"
    )


def read_dataset(
    fmt: str, path: str | os.PathLike[str], on_bad_rows: str = "error", **kwargs: object
) -> ReadResult:
    """Read ``path`` with the reader for ``fmt``.

    ``fmt`` is one of ``movielens``, ``csv`` (:func:`read_interactions`; ``kwargs`` go to it),
    ``taobao``, ``tianchi``, ``yoochoose`` (``yoochoose-clicks.dat``), ``yoochoose_prepared``,
    ``diginetica`` or ``kuairec``.

    Raises:
        ValueError: unknown ``fmt``, or ``kwargs`` for a reader that takes none.
    """
    readers = {
        "movielens": read_movielens,
        "csv": read_interactions,
        "taobao": read_taobao,
        "tianchi": read_tianchi,
        "yoochoose": read_yoochoose_clicks,
        "yoochoose_prepared": read_yoochoose_prepared,
        "diginetica": read_diginetica,
        "kuairec": read_kuairec,
    }
    if fmt not in readers:
        raise ValueError(f"unknown data format {fmt!r}; expected one of {_DATASET_FORMATS}")
    if kwargs and fmt != "csv":
        raise ValueError(
            f"format {fmt!r} takes no options besides on_bad_rows, got {sorted(kwargs)}"
        )
    return readers[fmt](path, on_bad_rows=on_bad_rows, **kwargs)


_TAOBAO = _Layout(
    fmt="taobao",
    sep=",",
    header=False,
    columns=(
        _Col("user", "id"),
        _Col("item", "id"),
        _Col("category", "id"),
        _Col("behavior", "text"),
        _Col("timestamp", "num"),
    ),
    hint=f"download UserBehavior.csv.zip from {_TAOBAO_URL} (Alibaba, Tianchi) and unzip it",
    shape="no header, 5 fields 'user,item,category,behavior,timestamp'",
    folder_names=("UserBehavior.csv",),
    seed_categories=(("behavior", ("pv", "cart", "fav", "buy")),),
)
_TIANCHI = _Layout(
    fmt="tianchi",
    sep=",",
    header=True,
    columns=(
        _Col("user_id", "id", out="user"),
        _Col("item_id", "id", out="item"),
        _Col("behavior_type", "code", out="behavior", choices=("click", "collect", "cart", "buy")),
        _Col("item_category", "id", out="category"),
        _Col("time", "hour", out="timestamp"),
    ),
    hint=(
        f"download tianchi_mobile_recommend_train_user.zip from {_TIANCHI_URL} "
        "(Alibaba Tianchi mobile recommendation, 2015) and unzip it"
    ),
    shape="header 'user_id,item_id,behavior_type,user_geohash,item_category,time'",
    folder_names=("tianchi_mobile_recommend_train_user.csv", "tianchi_fresh_comp_train_user.csv"),
    timestamp_parsers=("%Y-%m-%d %H",),
)
_YOOCHOOSE = _Layout(
    fmt="yoochoose",
    sep=",",
    header=False,
    columns=(
        _Col("session", "id", out="user"),
        _Col("timestamp", "iso"),
        _Col("item", "id"),
        _Col("category", "text"),
    ),
    hint=(
        f"download yoochoose-data.7z (RecSys Challenge 2015) via {_YOOCHOOSE_URL} and extract "
        "yoochoose-clicks.dat"
    ),
    shape="no header, 4 fields 'session,timestamp,item,category'",
    folder_names=("yoochoose-clicks.dat",),
)
_YOOCHOOSE_PREPARED = _Layout(
    fmt="yoochoose_prepared",
    sep="\t",
    header=True,
    columns=(
        _Col("SessionId", "id", out="user"),
        _Col("ItemId", "id", out="item"),
        _Col("Time", "num", out="timestamp"),
    ),
    hint=(
        f"prepare it from yoochoose-clicks.dat (RecSys Challenge 2015, {_YOOCHOOSE_URL}) with "
        "the GRU4Rec preprocessing script, or use format 'yoochoose' on the original file"
    ),
    shape="TAB-separated header 'SessionId ItemId Time'",
)
_DIGINETICA = _Layout(
    fmt="diginetica",
    sep=";",
    header=True,
    columns=(
        _Col("session_id", "id", out="user"),
        _Col("item_id", "id", out="item"),
        _Col("timeframe", "num", out="_timeframe", per=1000.0),
        _Col("eventdate", "date", out="_eventdate"),
    ),
    hint=(
        f"download dataset-train-diginetica.zip (CIKM Cup 2016 track 2) from {_DIGINETICA_URL} "
        "and unzip train-item-views.csv"
    ),
    shape="';'-separated header 'session_id;user_id;item_id;timeframe;eventdate'",
    folder_names=("train-item-views.csv",),
)
_KUAIREC = _Layout(
    fmt="kuairec",
    sep=",",
    header=True,
    columns=(
        _Col("user_id", "id", out="user"),
        _Col("video_id", "id", out="item"),
        _Col("play_duration", "duration", out="duration", per=1000.0),
        _Col("video_duration", "duration", per=1000.0),
        _Col("timestamp", "num"),
        _Col("watch_ratio", "extra_num"),
    ),
    hint=(
        f"download KuaiRec.zip from {_KUAIREC_URL} (https://github.com/chongminggao/KuaiRec) "
        "and unzip KuaiRec/data/small_matrix.csv or big_matrix.csv"
    ),
    shape=(
        "header 'user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio'"
    ),
)
# DIGINETICA with the CIKM Cup's own header spelling, and as a prepared session TSV (GRU4Rec's
# preprocessing writes both datasets in YOOCHOOSE's prepared layout).
_DIGINETICA_CIKM = dataclasses.replace(
    _DIGINETICA,
    columns=(
        _Col("sessionId", "id", out="user"),
        _Col("itemId", "id", out="item"),
        _Col("timeframe", "num", out="_timeframe", per=1000.0),
        _Col("eventdate", "date", out="_eventdate"),
    ),
    shape="';'-separated header 'sessionId;userId;itemId;timeframe;eventdate'",
)
_DIGINETICA_PREPARED = dataclasses.replace(_YOOCHOOSE_PREPARED, fmt="diginetica_prepared")
_OTHERS = {
    "yoochoose": (_Other(_YOOCHOOSE_PREPARED, "the prepared YOOCHOOSE TSV"),),
    "yoochoose_prepared": (_Other(_YOOCHOOSE, "yoochoose-clicks.dat"),),
    "diginetica": (
        _Other(_DIGINETICA_CIKM, "train-item-views.csv as the CIKM Cup spells its header"),
        _Other(_DIGINETICA_PREPARED, "a prepared session TSV"),
    ),
    "taobao": (
        _Other(
            _TIANCHI,
            "the Tianchi 2015 mobile log",
            advice="use configs/tianchi.py (config.data.source='tianchi')",
        ),
    ),
    "tianchi": (
        _Other(
            _TAOBAO,
            "Taobao UserBehavior.csv",
            advice="use configs/taobao.py (config.data.source='taobao')",
        ),
    ),
}
