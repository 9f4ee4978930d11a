"""What a finished run keeps besides its checkpoints: everything fitted on the training data that
scoring needs, so that recommending never reads the raw data file again.

``WORKDIR/artifacts/`` (written atomically by `save_artifacts` at the end of
`train.train_and_evaluate`, before ``results.json``):

* ``manifest.json``: the run config (``RunConfig`` as JSON) and the data config with the seed;
  the behaviour vocabulary (names in index order: behaviour index ``i + 1`` is ``behaviors[i]``,
  0 an unknown or missing behaviour), ``hour_buckets``, the time-gap bucket edges (quantiles
  of ``log1p(gap)``), the context counts, where the durations came from
  (``duration_source``) and the duration transform, proxy and minimum event count used to fit
  a new user's statistics, the training rating mean, ``max_len``, the counts;
* ``items.npz``: ``item_ids`` (the original id of internal item ``i + 1``, in its original
  dtype: int64 or text) and ``log_popularity`` (``[n_items + 1]``, the most-popular fallback);
* ``users.npz``: ``user_ids`` (original id of each person of the training data), their duration
  statistics ``dur_mean``, ``dur_std``, ``dur_ok`` (`duration.fit_user_stats` on their
  training events, eq. (9)), and ``seq_owner`` (the person of each prepared sequence: a user,
  or one of their sessions).

Arrays are ``.npz`` (no pickle), the rest JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from absl import logging

from durgru_jax import parallel
from durgru_jax.config import ModelConfig, RunConfig, from_config, group_defaults
from durgru_jax.data import dataset as ds
from durgru_jax.data import sources
from durgru_jax.run_lib import jsonable

DIRNAME = "artifacts"
FORMAT = 1
MANIFEST = "manifest.json"


class MissingArtifactsError(FileNotFoundError):
    """A run directory without (complete) artifacts."""


@dataclasses.dataclass(frozen=True, eq=False)
class Artifacts:
    """The fitted preprocessing of one run (see the module docstring for each field)."""

    run_config: RunConfig
    data_config: dict[str, Any]
    seed: int
    item_ids: np.ndarray  # [n_items], original ids of internal items 1..n_items
    log_popularity: np.ndarray  # [n_items + 1]
    behaviors: tuple[str, ...]
    hour_buckets: int
    gap_edges: np.ndarray
    n_input_contexts: int
    n_transfer_contexts: int
    duration_source: str
    has_durations: bool
    rating_mean: float | None
    max_len: int
    user_ids: np.ndarray  # [n_people]
    dur_mean: np.ndarray  # [n_people]
    dur_std: np.ndarray
    dur_ok: np.ndarray
    seq_owner: np.ndarray  # [n_sequences] -> index into user_ids

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @functools.cached_property
    def item_index(self) -> pd.Index:
        """Original item id -> internal id - 1 (`pd.Index.get_indexer`; -1: unknown)."""
        return pd.Index(self.item_ids)

    @functools.cached_property
    def user_index(self) -> pd.Index:
        """Original user id -> index into ``user_ids`` (-1: a user unseen in training)."""
        return pd.Index(self.user_ids)

    def prep_config(self) -> ds.PrepConfig:
        """The run's preprocessing switches (``config.data`` without the source fields)."""
        return sources.prep_config(self.data_config, self.seed)


def original_ids(values: np.ndarray) -> np.ndarray:
    """Raw ids as an array that ``.npz`` stores without pickle: int64 when every id is an
    integer, float64 when every id is a number, else text."""
    values = np.asarray(values, dtype=object)
    kind = pd.api.types.infer_dtype(values, skipna=False) if len(values) else "integer"
    if kind == "integer":
        return values.astype(np.int64)
    if kind in ("floating", "mixed-integer-float"):
        return values.astype(np.float64)
    return values.astype(str)


def _sequence_users(config, prepared: ds.Prepared) -> np.ndarray:
    """The original user id of each prepared sequence. `Prepared` keeps only sequence indexes,
    so the events are read again and cleaned exactly as `dataset.prepare` cleaned them."""
    data_cfg = dict(sources._plain(config.data))
    data_cfg["path"] = sources.resolve_path(data_cfg)
    events, _ = sources.load_events(data_cfg)
    events = events[[c for c in events.columns if not str(c).startswith("_")]]
    cleaned, _ = ds._clean(events, sources.prep_config(data_cfg, int(config.seed)), {})
    seq = cleaned["_seq"].to_numpy()
    if len(seq) != len(prepared.user) or not np.array_equal(seq, prepared.user):
        raise RuntimeError(
            f"re-reading {data_cfg.get('path') or data_cfg['source']!r} gave other sequences "
            "than the prepared data: did the file change during training?"
        )
    return cleaned["user"].to_numpy()[prepared.offsets[:-1]]


def build_artifacts(
    prepared: ds.Prepared,
    rc: RunConfig,
    data_config: Mapping[str, Any],
    seed: int,
    sequence_users: np.ndarray,
) -> Artifacts:
    """The artifacts of a run from its prepared data and the original user id of each
    sequence (``sequence_users``, `_sequence_users`)."""
    p = prepared
    seq_users = original_ids(np.asarray(sequence_users, dtype=object))
    # A person's sessions (sequences) share the statistics: keep them once per person.
    user_ids, first, seq_owner = np.unique(seq_users, return_index=True, return_inverse=True)
    return Artifacts(
        run_config=rc,
        data_config=dict(sources._plain(data_config)),
        seed=int(seed),
        item_ids=original_ids(p.item_ids[1:]),
        log_popularity=np.asarray(p.log_popularity, np.float32),
        behaviors=tuple(p.info.get("behaviors", ())),
        hour_buckets=int(sources.prep_config(data_config, seed).hour_buckets),
        gap_edges=np.asarray(p.gap_edges, np.float64),
        n_input_contexts=int(p.n_input_contexts),
        n_transfer_contexts=int(p.n_transfer_contexts),
        duration_source=str(p.info.get("duration_source", "none")),
        has_durations=bool(p.has_durations),
        rating_mean=ds.train_rating_mean(p),
        max_len=int(p.max_len),
        user_ids=user_ids,
        dur_mean=np.asarray(p.dur_mean[first], np.float32),
        dur_std=np.asarray(p.dur_std[first], np.float32),
        dur_ok=np.asarray(p.dur_user_ok[first], bool),
        seq_owner=seq_owner.astype(np.int64),
    )


_SCALARS = (
    "seed",
    "behaviors",
    "hour_buckets",
    "n_input_contexts",
    "n_transfer_contexts",
    "duration_source",
    "has_durations",
    "rating_mean",
    "max_len",
)


def write_artifacts(workdir: str, art: Artifacts) -> str:
    """Writes ``workdir/artifacts/`` atomically (a temporary folder renamed into place)."""
    final = os.path.join(workdir, DIRNAME)
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    np.savez(
        os.path.join(tmp, "items.npz"), item_ids=art.item_ids, log_popularity=art.log_popularity
    )
    np.savez(
        os.path.join(tmp, "users.npz"),
        user_ids=art.user_ids,
        dur_mean=art.dur_mean,
        dur_std=art.dur_std,
        dur_ok=art.dur_ok,
        seq_owner=art.seq_owner,
    )
    prep = art.prep_config()
    manifest = {
        "format": FORMAT,
        "run_config": dataclasses.asdict(art.run_config),
        "data_config": art.data_config,
        "gap_edges": art.gap_edges.tolist(),
        "n_items": art.n_items,
        "n_users": len(art.user_ids),
        "n_sequences": len(art.seq_owner),
        "item_id_dtype": str(art.item_ids.dtype),
        "user_id_dtype": str(art.user_ids.dtype),
        "duration_fit": {  # how a user unseen in training gets statistics
            "transform": prep.duration_transform,
            "min_events": prep.duration_min_events,
            "proxy": prep.duration_proxy,
            "dwell_cap_s": prep.dwell_cap_s,
            "dwell_break_s": prep.dwell_break_s,
        },
    } | {k: getattr(art, k) for k in _SCALARS}
    with open(os.path.join(tmp, MANIFEST), "w") as f:
        json.dump(jsonable(manifest), f, indent=2, sort_keys=True)
    old = f"{final}.old-{os.getpid()}"
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def save_artifacts(workdir: str, config, prepared: ds.Prepared, rc: RunConfig) -> str | None:
    """`build_artifacts` + `write_artifacts` for a run that just finished (process 0 only).
    A failure (the data file changed or vanished during training) is logged, not raised: the
    run's results stand, only recommending from it is not possible."""
    if not parallel.is_primary():
        return None
    t0 = time.time()
    try:
        users = _sequence_users(config, prepared)
    except (OSError, ValueError, RuntimeError) as e:
        logging.warning("no artifacts for recommending in %s: %s", workdir, e)
        return None
    art = build_artifacts(prepared, rc, config.data, int(config.seed), users)
    path = write_artifacts(workdir, art)
    logging.info("artifacts for recommending written to %s (%.1f s)", path, time.time() - t0)
    return path


def _saved_run_config(saved: dict) -> RunConfig:
    """The typed config of a manifest: its model's data-filled fields become overrides."""
    model = dict(saved["model"])
    keys = set(group_defaults(ModelConfig))
    from_data = {k: model.pop(k) for k in list(model) if k not in keys}
    return from_config({**saved, "model": model}, **from_data)


def load_artifacts(workdir: str) -> Artifacts:
    """Reads ``workdir/artifacts/``; `MissingArtifactsError` says which file is missing."""
    root = os.path.join(workdir, DIRNAME)
    for name in (MANIFEST, "items.npz", "users.npz"):
        if not os.path.exists(os.path.join(root, name)):
            raise MissingArtifactsError(
                f"{workdir}: no {DIRNAME}/{name}: the run did not finish, or was trained before "
                "runs saved their artifacts (train it again to recommend with it)"
            )
    with open(os.path.join(root, MANIFEST)) as f:
        m = json.load(f)
    if m.get("format") != FORMAT:
        raise MissingArtifactsError(
            f"{root}/{MANIFEST}: format {m.get('format')!r}, this code reads format {FORMAT}"
        )
    items = np.load(os.path.join(root, "items.npz"), allow_pickle=False)
    users = np.load(os.path.join(root, "users.npz"), allow_pickle=False)
    return Artifacts(
        run_config=_saved_run_config(m["run_config"]),
        data_config=m["data_config"],
        item_ids=items["item_ids"],
        log_popularity=items["log_popularity"],
        gap_edges=np.asarray(m["gap_edges"], np.float64),
        user_ids=users["user_ids"],
        dur_mean=users["dur_mean"],
        dur_std=users["dur_std"],
        dur_ok=users["dur_ok"],
        seq_owner=users["seq_owner"],
        **{k: tuple(m[k]) if k == "behaviors" else m[k] for k in _SCALARS},
    )
