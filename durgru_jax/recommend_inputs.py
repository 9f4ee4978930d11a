"""Raw events of users to model inputs, by the code path that builds the evaluation examples.

`from_events` turns an event table (the columns of the training file: ``user``, ``item``,
``timestamp`` and, where the run used them, ``duration``, ``behavior``) into one example per
user, in the layout of `dataset.eval_examples`:

1. the table is checked (missing columns, non-numeric timestamps) and its ids are coerced to
   the dtype of the run's ids;
2. `dataset.prepare` cleans and featurises it exactly as it did the training file (sorting by
   time, sessions and repeats as configured, the duration transform or proxy, hour buckets),
   every event being "training" so nothing is held out;
3. the fitted vocabularies of the run replace those `prepare` just fitted on these events: item
   ids (an item unknown to the run becomes 0, which no input carries), behaviour indexes and
   time-gap edges (`artifacts.Artifacts`);
4. duration statistics (eq. (9)): a user of the training data keeps the statistics fitted on
   their training events; a user unseen in training gets them fitted on the events given
   (`duration.fit_user_stats`, all their events, as training fits them on all of a user's
   training events);
5. one held-out slot is appended after each user's latest sequence (the user, or the user's
   latest session) and `dataset.eval_examples` builds the example of that slot: inputs are the
   last ``max_len`` known events, the exclusion history all of them.

`from_prepared` does steps 3-5 for the users of the run's own prepared data (every event of the
user visible). Either way the evaluator's batching, encoder and ranker then take the examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from durgru_jax.artifacts import Artifacts
from durgru_jax.data import dataset as ds
from durgru_jax.duration import fit_user_stats

_NEVER = 1 << 62  # min_user_events that no user reaches: every event stays "training"
# The example arrays the encoders read (`model.encode`, `attention.encode`), [users, max_len].
MODEL_INPUTS = ds.FIELDS + ds.USER_FIELDS  # ratings too: `model.rating_input` reads them
# Per-event arrays of `dataset.Prepared` (sliced by `from_prepared`, spread by `with_targets`).
_EVENT_FIELDS = (
    "user",
    "item",
    "timestamp",
    "split",
    "in_ctx",
    "dur",
    "dur_ok",
    "rating",
    "rating_ok",
)


@dataclasses.dataclass(frozen=True, eq=False)
class UserInputs:
    """One example per user: ``examples`` in the layout of `dataset.eval_examples` and, per
    example, the original user id, the number of events given, how many had an item unknown
    to the run, and whether they were out of time order."""

    examples: dict[str, np.ndarray]
    users: np.ndarray
    n_events: np.ndarray
    n_unknown: np.ndarray
    resorted: np.ndarray

    @property
    def has_input(self) -> np.ndarray:
        """Whether each example has at least one known event (else: popularity fallback)."""
        return self.examples["mask"].any(axis=1)


def events_frame(events: Any) -> pd.DataFrame:
    """A DataFrame from a DataFrame, a list of dicts (rows) or a dict of columns."""
    if isinstance(events, pd.DataFrame):
        return events
    if isinstance(events, Mapping):
        return pd.DataFrame(dict(events))
    if isinstance(events, Iterable) and not isinstance(events, (str, bytes)):
        rows = list(events)
        if any(not isinstance(r, Mapping) for r in rows):
            raise TypeError("events: expected a DataFrame, a dict of columns or a list of dicts")
        return pd.DataFrame(rows)
    raise TypeError(f"events: expected a DataFrame or a list of dicts, got {type(events)}")


def uses_durations(art: Artifacts) -> bool:
    """Whether the model reads a ``duration`` column (rather than a proxy or nothing)."""
    return art.duration_source.startswith("column") and art.run_config.model.duration_mode != "none"


def uses_behavior(art: Artifacts) -> bool:
    """Whether the model reads a ``behavior`` column (aGRU input contexts)."""
    return bool(art.behaviors) and art.run_config.model.cell == "agru"


def required_columns(art: Artifacts) -> tuple[str, ...]:
    """Columns an event table must have (``user`` too for several users)."""
    cols = ("item", "timestamp")
    cols += ("duration",) * uses_durations(art)
    return cols + ("behavior",) * uses_behavior(art)


def coerce_ids(values: Any, like: np.ndarray) -> np.ndarray:
    """``values`` as ids comparable with the array ``like`` (int64, float64 or text ids), for
    `pd.Index.get_indexer`; a value that cannot be one of them (text for integer ids, a
    missing value) matches nothing."""
    arr = np.asarray(values)
    if like.dtype.kind in "iu" and arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if like.dtype.kind in "iuf":
        out = pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(np.float64)
        if like.dtype.kind in "iu":  # compared by value with the integer ids
            out = np.where(np.isfinite(out) & (out == np.round(out)), out, np.nan)
        return out
    s = pd.Series(arr, dtype=object)
    return np.where(s.isna(), None, s.astype(str)).astype(object)


def _numbers(frame: pd.DataFrame, col: str, allow_missing: bool) -> np.ndarray:
    """A numeric column as float64 (datetimes as Unix seconds); bad values name the row."""
    s = frame[col]
    if pd.api.types.is_datetime64_any_dtype(s):
        out = (s - pd.Timestamp(0, tz=getattr(s.dt, "tz", None))).dt.total_seconds()
        out = out.to_numpy(np.float64)
    else:
        out = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
        bad = np.isnan(out) & s.notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"events: column {col!r} row {row}: {s.iloc[row]!r} is not a number"
                + (" (timestamps are Unix seconds or datetimes)" if col == "timestamp" else "")
            )
    if not allow_missing and np.isnan(out).any():
        row = int(np.flatnonzero(np.isnan(out))[0])
        raise ValueError(f"events: column {col!r} row {row} is missing")
    return out


def check_columns(frame: pd.DataFrame, art: Artifacts, need_user: bool) -> None:
    """Raises naming the first required column that ``frame`` lacks."""
    for col in ("user",) * need_user + required_columns(art):
        if col not in frame.columns:
            why = {
                "user": "several users' events need a 'user' column",
                "duration": f"the run's model reads durations ({art.duration_source})",
                "behavior": f"the run's aGRU reads behaviour contexts {list(art.behaviors)}",
            }.get(col, "every event needs it")
            raise ValueError(
                f"events have no {col!r} column ({why}); columns given: {list(frame.columns)}"
            )


def _model_frame(frame: pd.DataFrame, art: Artifacts, codes: np.ndarray) -> pd.DataFrame:
    """The columns `dataset.prepare` reads, typed as the run's readers type them."""
    out = {
        "user": codes,
        "item": coerce_ids(frame["item"].to_numpy(), art.item_ids),
        "timestamp": _numbers(frame, "timestamp", allow_missing=False),
    }
    if art.duration_source.startswith("column"):  # else prepare derives the proxy, or none
        has = "duration" in frame.columns
        out["duration"] = _numbers(frame, "duration", True) if has else np.full(len(codes), np.nan)
    if uses_behavior(art):
        out["behavior"] = frame["behavior"].to_numpy(dtype=object)
    if "rating" in frame.columns:
        out["rating"] = _numbers(frame, "rating", allow_missing=True)
    return pd.DataFrame(out)


def featurise_config(art: Artifacts) -> ds.PrepConfig:
    """The run's preprocessing with nothing held out and no filtering across users."""
    return dataclasses.replace(
        art.prep_config(),
        split="leave_one_out",
        min_user_events=_NEVER,
        kcore_users=0,
        kcore_items=0,
        shuffle_durations=False,
        eval_history="held_out_hidden",
    )


def from_events(art: Artifacts, frame: pd.DataFrame, known_users: bool = True) -> UserInputs:
    """Steps 1-5 of the module docstring for the users of ``frame`` (a ``user`` column),
    examples in the order of each user's first row. ``known_users=False``: treat every user as
    unseen in training (an anonymous history)."""
    check_columns(frame, art, need_user=True)
    codes, uniques = pd.factorize(frame["user"], sort=False, use_na_sentinel=False)
    codes = codes.astype(np.int64)
    mf = _model_frame(frame, art, codes)
    n_users = len(uniques)
    known_item = art.item_index.get_indexer(mf["item"].to_numpy()) >= 0
    n_events = np.bincount(codes, minlength=n_users)
    n_unknown = np.bincount(codes[~known_item], minlength=n_users)
    resorted = _out_of_order(codes, mf["timestamp"].to_numpy(), n_users)

    cfg = featurise_config(art)
    if cfg.session_gap_s > 0 or cfg.drop_consecutive_repeats:
        # Sessions and repeats as in training; then one prepared sequence per session, whose
        # person (owner) `prepare` would not tell.
        cleaned, owner = ds._clean(mf, cfg, {})
        flat = dataclasses.replace(cfg, session_gap_s=0.0, drop_consecutive_repeats=False)
        p = ds.prepare(cleaned.drop(columns="_seq").assign(user=cleaned["_seq"]), flat)
    else:  # a sequence per user, numbered by first appearance: the codes
        p = ds.prepare(mf, cfg)
        owner = p.user
    p = _in_run_vocabulary(art, p)
    seq_owner = owner[p.offsets[:-1]]
    if known_users:
        stats_user = coerce_ids(uniques, art.user_ids)
    else:
        stats_user = np.full(n_users, None, dtype=object)
    p = _with_statistics(art, p, owner, seq_owner, stats_user)
    last = np.append(seq_owner[1:] != seq_owner[:-1], True)  # each person's latest sequence
    ex = ds.eval_examples(with_targets(p, last), "test")
    who = seq_owner[last]
    return UserInputs(ex, np.asarray(uniques)[who], n_events[who], n_unknown[who], resorted[who])


def _out_of_order(codes: np.ndarray, ts: np.ndarray, n_users: int) -> np.ndarray:
    """Per user: whether its events (in the given order) go back in time somewhere."""
    order = np.argsort(codes, kind="stable")
    c, t = codes[order], ts[order]
    back = (c[1:] == c[:-1]) & (t[1:] < t[:-1])
    return np.bincount(c[1:][back], minlength=n_users) > 0


def _in_run_vocabulary(art: Artifacts, p: ds.Prepared) -> ds.Prepared:
    """``p`` (prepared from new events) with the run's item ids, behaviour indexes and gap
    edges instead of those fitted on the new events."""
    local_to_run = np.concatenate([[0], art.item_index.get_indexer(p.item_ids[1:]) + 1])
    n_hours = max(art.hour_buckets, 1)
    beh, hour = p.in_ctx // n_hours, p.in_ctx % n_hours
    vocab = {name: i + 1 for i, name in enumerate(art.behaviors)}
    beh_to_run = np.array([0] + [vocab.get(b, 0) for b in p.info.get("behaviors", ())], np.int64)
    return dataclasses.replace(
        p,
        n_items=art.n_items,
        item=local_to_run[p.item].astype(np.int32),
        in_ctx=(beh_to_run[beh] * n_hours + hour).astype(np.int32),
        gap_edges=art.gap_edges,
        n_transfer_contexts=art.n_transfer_contexts,
        n_input_contexts=art.n_input_contexts,
        all_past_visible=False,
    )


def _with_statistics(
    art: Artifacts, p: ds.Prepared, owner: np.ndarray, seq_owner: np.ndarray, users: np.ndarray
) -> ds.Prepared:
    """Per-sequence duration statistics: the run's for a person of the training data, else
    fitted on all the person's given events, as training fits them (step 4)."""
    min_events = art.prep_config().duration_min_events
    everything = np.ones(len(owner), bool)
    mean, std, ok = fit_user_stats(owner, p.dur, p.dur_ok, everything, len(users), min_events)
    run_idx = art.user_index.get_indexer(users)
    known = run_idx >= 0
    ri = np.maximum(run_idx, 0)
    mean = np.where(known, art.dur_mean[ri], mean)
    std = np.where(known, art.dur_std[ri], std)
    ok = np.where(known, art.dur_ok[ri], ok)
    return dataclasses.replace(
        p, dur_mean=mean[seq_owner], dur_std=std[seq_owner], dur_user_ok=ok[seq_owner]
    )


def with_targets(p: ds.Prepared, chosen: np.ndarray) -> ds.Prepared:
    """``p`` with every event visible (split TRAIN) and one empty held-out event (split TEST,
    item 0) after the last event of each ``chosen`` sequence, so that `dataset.eval_examples`
    (``"test"``) builds, for each chosen sequence, the example that predicts its next event."""
    add = np.asarray(chosen, np.int64)
    lengths = np.diff(p.offsets)
    offsets = np.concatenate([[0], np.cumsum(lengths + add)])
    old = np.arange(len(p.item)) + (offsets[:-1] - p.offsets[:-1])[p.user]
    slot = offsets[1:][add > 0] - 1  # the held-out events; their other fields stay 0

    def spread(a):
        out = np.zeros(int(offsets[-1]), np.asarray(a).dtype)
        out[old] = a
        return out

    fields = {f: spread(getattr(p, f)) for f in _EVENT_FIELDS if f not in ("user", "split")}
    fields["split"] = spread(np.full(len(p.item), ds.TRAIN, np.int8))
    fields["split"][slot] = ds.TEST
    fields["timestamp"][slot] = fields["timestamp"][np.maximum(slot - 1, 0)]  # never read
    fields["user"] = np.repeat(np.arange(p.n_users), lengths + add)
    return dataclasses.replace(p, offsets=offsets, all_past_visible=False, **fields)


def from_prepared(art: Artifacts, p: ds.Prepared, lo: int, hi: int) -> UserInputs:
    """Steps 3-5 for the people whose sequences are ``lo..hi-1`` of the run's prepared data
    (``lo``/``hi`` on person boundaries, `person_chunks`): every event of theirs visible, their
    training statistics, one example after each person's latest sequence."""
    a, b = int(p.offsets[lo]), int(p.offsets[hi])
    sub = dataclasses.replace(
        p,
        n_users=hi - lo,
        offsets=np.asarray(p.offsets[lo : hi + 1]) - a,
        **{f: np.asarray(getattr(p, f)[a:b]) for f in _EVENT_FIELDS},
        **{f: np.asarray(getattr(p, f)[lo:hi]) for f in ds.USER_FIELDS},
    )
    sub = dataclasses.replace(sub, user=sub.user - lo)
    seq_owner = np.asarray(art.seq_owner[lo:hi])
    new_person = np.append(True, seq_owner[1:] != seq_owner[:-1])
    last = np.append(new_person[1:], True)
    ex = ds.eval_examples(with_targets(sub, last), "test")
    person = (np.cumsum(new_person) - 1)[sub.user]  # per event, 0.. within the chunk
    n = int(last.sum())
    return UserInputs(
        ex,
        art.user_ids[seq_owner[last]],
        np.bincount(person, minlength=n),
        np.bincount(person[sub.item == 0], minlength=n),
        np.zeros(n, bool),
    )


def person_chunks(seq_owner: np.ndarray, size: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` ranges of at most ``size`` sequences (more only for a person who has more)
    that never split a person's sequences, which `dataset.prepare` keeps together."""
    n = len(seq_owner)
    starts = np.flatnonzero(np.append(True, seq_owner[1:] != seq_owner[:-1]))
    bounds, lo = [], 0
    while lo < n:
        hi = n
        if lo + size < n:
            fit = starts[(starts > lo) & (starts <= lo + size)]
            after = starts[starts > lo]
            hi = int(fit[-1]) if len(fit) else int(after[0]) if len(after) else n
        bounds.append((lo, hi))
        lo = hi
    return bounds
