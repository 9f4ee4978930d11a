"""Turns the ``config.data`` group into a prepared dataset."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
from absl import logging

from durgru_jax import shared_data
from durgru_jax.data import cache, download, readers, synthetic
from durgru_jax.data.dataset import Prepared, PrepConfig, prepare

FORMATS = ("taobao", "tianchi", "yoochoose", "yoochoose_prepared", "diginetica", "kuairec")
SOURCES = ("synthetic", "movielens", "csv") + FORMATS
_SOURCE_KEYS = {
    "source",
    "path",
    "columns",
    "sep",
    "timestamp_unit",
    "on_bad_rows",
    "synthetic",
    "dataset",
    "download",
    "cache",
    "cache_dir",
}


def _plain(x: Any) -> Any:
    return x.to_dict() if hasattr(x, "to_dict") else x


def load_events(data_cfg: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Reads the event table named by ``data_cfg``; returns it with facts about the read."""
    source = data_cfg["source"]
    on_bad = data_cfg.get("on_bad_rows", "error")
    if source == "synthetic":
        kwargs = dict(_plain(data_cfg.get("synthetic", {})) or {})
        events = synthetic.generate_synthetic(**kwargs)
        return events, {"source": "synthetic", "generator": kwargs}
    path = shared_data.expand(data_cfg.get("path"))
    if not path:
        raise ValueError(f"config.data.path is empty; source {source!r} needs a file")
    if source == "movielens":
        res = readers.read_movielens(path, on_bad_rows=on_bad)
    elif source == "csv":
        columns = {k: v for k, v in (_plain(data_cfg.get("columns")) or {}).items() if v}
        res = readers.read_interactions(
            path,
            columns=columns or None,
            sep=data_cfg.get("sep") or None,
            on_bad_rows=on_bad,
            timestamp_unit=data_cfg.get("timestamp_unit", "s"),
        )
    elif source in FORMATS:
        res = readers.read_dataset(source, path, on_bad_rows=on_bad)
    else:
        raise ValueError(f"config.data.source={source!r} is not one of {list(SOURCES)}")
    if res.n_bad_rows_skipped:
        logging.warning(
            "%s: skipped %d bad rows (on_bad_rows=skip), e.g. %s",
            res.path,
            res.n_bad_rows_skipped,
            "; ".join(res.bad_row_examples[:3]),
        )
    info = {
        "source": source,
        "path": str(res.path),
        "format": res.format,
        "rows_read": res.n_rows_read,
        "bad_rows_skipped": res.n_bad_rows_skipped,
    }
    return res.events, info


def prep_config(data_cfg: Mapping[str, Any], seed: int) -> PrepConfig:
    names = {f.name for f in dataclasses.fields(PrepConfig)}
    kwargs = {k: v for k, v in _plain(data_cfg).items() if k not in _SOURCE_KEYS}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(f"unknown key(s) in config.data: {', '.join(unknown)}")
    return PrepConfig(**kwargs, seed=seed)


def resolve_path(data_cfg: Mapping[str, Any]) -> str | None:
    """The input file: ``data.path`` if it exists; else, for a registered ``data.dataset``,
    the file fetched (checksum-verified) from the official source, or an error that says
    exactly which file to put where."""
    path = shared_data.expand(data_cfg.get("path")) or None
    name = data_cfg.get("dataset") or ""
    if data_cfg["source"] == "synthetic" or (path and os.path.exists(path)) or not name:
        return path
    return str(
        download.ensure_file(name, path=path, allow_download=bool(data_cfg.get("download", True)))
    )


def load_prepared(data_cfg: Mapping[str, Any], seed: int) -> Prepared:
    """Reads and prepares the data, or loads it from the cache (keyed by the data config,
    the seed and the source file's size and modification time)."""
    data_cfg = dict(_plain(data_cfg))
    data_cfg["path"] = resolve_path(data_cfg)
    prep_cfg = prep_config(data_cfg, seed)

    def build() -> Prepared:
        events, read_info = load_events(data_cfg)
        events = events[[c for c in events.columns if not str(c).startswith("_")]]
        prepared = prepare(events, prep_cfg)
        prepared.info = {**read_info, **prepared.info}
        return prepared

    if not data_cfg.get("cache", True):
        return build()
    sources = [data_cfg["path"]] if data_cfg["source"] != "synthetic" else []
    prepared, hit = cache.cached_prepare(
        data_cfg, sources, data_cfg.get("cache_dir") or None, build, extra={"seed": seed}
    )
    prepared.info = {**prepared.info, "cache_hit": hit}
    return prepared
