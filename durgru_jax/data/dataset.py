"""From an event table to training windows and evaluation examples.

Pipeline (`prepare`):

1. Sort events stably by (user, timestamp): equal timestamps keep the file's order.
2. Split: per-user temporal leave-one-out (last event test, second-to-last validation; users
   with fewer than ``min_user_events`` events only train) or a random per-event split.
3. Fit everything that is learned from data on the *training* events only: the item id map
   (ids ``1..n_items``, 0 is padding; an item never seen in training is unknown), behaviour
   vocabulary, time-gap bucket edges, per-user duration statistics, item popularity.
4. Build training windows: each user's training events cut, from the most recent backwards,
   into windows of at most ``max_len + 1`` events (``max_len`` inputs, each predicting the
   next event), each window starting from a zero state.
5. Build evaluation examples: for each held-out event, the input is the last ``max_len``
   *visible* events before it (training events for validation; training and validation
   events for test), and the exclusion history is all of them. `heldout_positions` is the one
   definition of these targets and histories (the evaluation, the export and the baselines).

Column-name legend for arrays: W windows, E evaluation examples, L = ``max_len``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from durgru_jax.data import funnel
from durgru_jax.duration import fit_user_stats, transform_durations

TRAIN, VALID, TEST = 0, 1, 2
SPLITS = {"valid": VALID, "test": TEST}


@dataclasses.dataclass(frozen=True)
class PrepConfig:
    """Preprocessing switches (the ``config.data`` group minus the source fields)."""

    # "leave_one_out" (last test, 2nd-to-last valid) | "random" | "temporal" (global cut-off)
    split: str = "leave_one_out"
    random_test_ratio: float = 0.1  # split="random": share of events held out for test
    random_valid_ratio: float = 0.1  # split="random": share held out for validation
    temporal_test_days: float = 1.0  # split="temporal": the last days are test
    temporal_valid_days: float = 1.0  # ... and the days before them validation
    temporal_by_sequence: bool = True  # a sequence goes whole to the split of its last event
    min_user_events: int = 3  # leave_one_out: users with fewer events only train
    max_len: int = 50  # input events per sequence (training windows and evaluation inputs)
    kcore_users: int = 0  # iteratively drop users (sequences) with fewer events (0: off)
    kcore_items: int = 0  # ... and items with fewer events (0: off)
    session_gap_s: float = 0.0  # cut a user's events into sessions at longer gaps (0: off)
    drop_consecutive_repeats: bool = False  # drop an event repeating the previous item
    duration_transform: str = "log1p"  # transform before the per-user z-score: "log1p" | "none"
    duration_min_events: int = 3  # users with fewer training durations get the neutral factor
    # data without durations: "none" | "prev_gap" (time since the previous event) | "next_gap"
    # (dwell = time to the next event of the sequence, capped at dwell_cap_s)
    duration_proxy: str = "none"
    dwell_cap_s: float = 1800.0  # next_gap dwell is clipped at this many seconds
    dwell_break_s: float = 0.0  # next_gap: a longer gap is a break, no dwell (0: off)
    # inputs of a held-out event: "held_out_hidden" (visible = training events, plus the
    # validation ones for test) | "all_past" (every earlier event of the sequence) | "auto"
    # (all_past for split="temporal", else held_out_hidden)
    eval_history: str = "auto"
    shuffle_durations: bool = False  # control: permute durations within each (user, split)
    pack: bool = True  # training windows share rows (with resets) to avoid padding
    use_behavior: bool = True  # behaviour type (if the data has one) as an aGRU input context
    hour_buckets: int = 4  # hour-of-day input-context buckets (0: off; must divide 24)
    gap_buckets: int = 4  # time-gap transfer-context buckets (0: off)
    # Checked by a run after preparation (`durgru_jax.data.funnel.check_enough`), not used to
    # prepare: fewer training events, or validation / test examples, stop the run naming the
    # filter that removed the most. The dataset configs set values for their full data.
    min_train_events: int = 100
    min_eval_examples: int = 10
    seed: int = 0  # the run's config.seed (not a config.data key)

    def __post_init__(self):
        if self.split not in ("leave_one_out", "random", "temporal"):
            raise ValueError(
                f"config.data.split={self.split!r}: use 'leave_one_out', 'random' or 'temporal'"
            )
        if self.duration_proxy not in ("none", "prev_gap", "next_gap"):
            raise ValueError(
                f"config.data.duration_proxy={self.duration_proxy!r}: use 'none', 'prev_gap' "
                "or 'next_gap'"
            )
        if self.eval_history not in ("auto", "held_out_hidden", "all_past"):
            raise ValueError(
                f"config.data.eval_history={self.eval_history!r}: use 'auto', "
                "'held_out_hidden' or 'all_past'"
            )
        if self.max_len < 1:
            raise ValueError(f"config.data.max_len={self.max_len} must be >= 1")
        if self.hour_buckets < 0 or (self.hour_buckets and 24 % self.hour_buckets):
            raise ValueError(f"config.data.hour_buckets={self.hour_buckets} must divide 24")


@dataclasses.dataclass
class Prepared:
    """A prepared dataset. Event arrays are sorted by (user, time); ``offsets`` is CSR."""

    n_users: int
    n_items: int
    n_input_contexts: int
    n_transfer_contexts: int
    item_ids: np.ndarray  # raw id of item 1..n_items (index 0 unused)
    offsets: np.ndarray  # [n_users + 1]
    user: np.ndarray
    item: np.ndarray  # mapped id, 0 = unknown
    timestamp: np.ndarray
    split: np.ndarray
    in_ctx: np.ndarray
    dur: np.ndarray
    dur_ok: np.ndarray
    rating: np.ndarray
    rating_ok: np.ndarray
    dur_mean: np.ndarray  # per user
    dur_std: np.ndarray
    dur_user_ok: np.ndarray
    gap_edges: np.ndarray
    log_popularity: np.ndarray  # [n_items + 1], log of add-one-smoothed train frequency
    has_durations: bool
    has_ratings: bool
    info: dict[str, Any]
    max_len: int
    all_past_visible: bool = False  # evaluation inputs include earlier held-out events


def train_rating_mean(p: Prepared) -> float | None:
    """Mean of the training ratings (``None`` without ratings): the rating head's starting
    ``mu``. Training events only, so no held-out rating reaches the model."""
    ok = (p.split == TRAIN) & p.rating_ok & (p.item > 0)
    return float(p.rating[ok].mean()) if ok.any() else None


def prepare(events: pd.DataFrame, cfg: PrepConfig) -> Prepared:
    """Runs steps 1-3 of the module docstring; windows and examples are built on demand.

    One function a step: `_clean` (sort, k-core, sessions, repeats), `_split`, `_item_ids`,
    `_raw_durations` and `_durations`, `_input_contexts`, `_gap_edges`, `_ratings`,
    `_log_popularity`; whatever is fitted sees the training events only.
    """
    for col in ("user", "item", "timestamp"):
        if col not in events.columns:
            raise ValueError(f"event table has no {col!r} column (columns: {list(events.columns)})")
    if len(events) == 0:
        raise ValueError("event table is empty")
    info: dict[str, Any] = {"rows_in": int(len(events)), "split": cfg.split}
    events, owner = _clean(events, cfg, info)
    user = events["_seq"].to_numpy(np.int64)
    ts = events["timestamp"].to_numpy(np.float64)
    n_users = int(user.max()) + 1
    counts = np.bincount(user, minlength=n_users)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    pos_in_user = np.arange(len(user)) - offsets[user]
    split = _split(user, ts, counts, offsets, pos_in_user, cfg, info)
    is_train = split == TRAIN
    item, item_ids = _item_ids(events["item"].to_numpy(), is_train)
    n_items = len(item_ids) - 1
    raw_dur = _raw_durations(events, ts, user, counts, pos_in_user, cfg, info)
    dur = _durations(raw_dur, owner, split, offsets, cfg, info)
    in_ctx, n_input_contexts = _input_contexts(events, ts, is_train, cfg, info)
    gap_edges = _gap_edges(ts, user, is_train, cfg)
    rating, rating_ok = _ratings(events)
    info.update(
        n_users=n_users,
        n_items=n_items,
        n_events=int(len(user)),
        n_train=int(is_train.sum()),
        n_valid=int((split == VALID).sum()),
        n_test=int((split == TEST).sum()),
        unknown_valid_targets=int(((split == VALID) & (item == 0)).sum()),
        unknown_test_targets=int(((split == TEST) & (item == 0)).sum()),
    )
    return Prepared(
        n_users=n_users,
        n_items=n_items,
        n_input_contexts=n_input_contexts,
        n_transfer_contexts=1 + (len(gap_edges) + 1 if cfg.gap_buckets > 1 else 0),
        item_ids=item_ids,
        offsets=offsets,
        user=user,
        item=item.astype(np.int32),
        timestamp=ts,
        split=split,
        in_ctx=in_ctx,
        **dur._asdict(),
        rating=rating,
        rating_ok=rating_ok,
        gap_edges=gap_edges,
        log_popularity=_log_popularity(item, is_train, n_items),
        has_durations=bool(dur.dur_ok.any()),
        has_ratings=bool(rating_ok.any()),
        info=info,
        max_len=cfg.max_len,
        all_past_visible=(
            cfg.eval_history == "all_past"
            or (cfg.eval_history == "auto" and cfg.split == "temporal")
        ),
    )


def _split(user, ts, counts, offsets, pos_in_user, cfg: PrepConfig, info: dict) -> np.ndarray:
    """Step 2: TRAIN / VALID / TEST of each event (``cfg.split``): per-sequence leave-one-out
    (sequences with fewer than ``min_user_events`` events only train), a random per-event
    split, or by time (the last days; with ``temporal_by_sequence`` a sequence goes whole to
    the split of its last event)."""
    split = np.full(len(user), TRAIN, np.int8)
    if cfg.split == "leave_one_out":
        eligible = counts[user] >= max(cfg.min_user_events, 3)
        split[eligible & (pos_in_user == counts[user] - 1)] = TEST
        split[eligible & (pos_in_user == counts[user] - 2)] = VALID
    elif cfg.split == "random":
        rng = np.random.default_rng(cfg.seed)
        r = rng.random(len(user))
        split[r < cfg.random_test_ratio] = TEST
        split[
            (r >= cfg.random_test_ratio) & (r < cfg.random_test_ratio + cfg.random_valid_ratio)
        ] = VALID
    else:
        t_test = ts.max() - cfg.temporal_test_days * 86400.0
        t_valid = t_test - cfg.temporal_valid_days * 86400.0
        key = ts[offsets[1:] - 1][user] if cfg.temporal_by_sequence else ts
        split[key > t_valid] = VALID
        split[key > t_test] = TEST
        info.update(temporal_valid_from=float(t_valid), temporal_test_from=float(t_test))
    if not (split == TRAIN).any():
        raise ValueError(f"the {cfg.split} split left no training events")
    return split


def _item_ids(raw_item: np.ndarray, is_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step 3's item vocabulary: ids ``1..n_items`` in order of first training occurrence,
    0 for an item never seen in training. Returns each event's id and the raw id of each id
    (index 0 unused)."""
    train_items = pd.unique(raw_item[is_train])
    item = pd.Index(train_items).get_indexer(raw_item) + 1  # -1 (unknown) -> 0
    item_ids = np.concatenate([np.array([None], dtype=object), np.asarray(train_items, object)])
    return item, item_ids


def _raw_durations(events, ts, user, counts, pos_in_user, cfg: PrepConfig, info: dict):
    """Each event's duration in seconds (NaN: none): a real ``duration`` column, else the
    configured proxy (time since the previous event, or dwell until the next), else none."""
    if "duration" in events.columns:
        info["duration_source"] = "column"
        return events["duration"].to_numpy(np.float64)
    if cfg.duration_proxy == "prev_gap":
        prev_ts = np.where(pos_in_user > 0, np.roll(ts, 1), np.nan)
        info["duration_source"] = "prev_gap (time since the user's previous event)"
        return ts - prev_ts
    if cfg.duration_proxy == "next_gap":
        nxt = np.where(pos_in_user < counts[user] - 1, np.roll(ts, -1), np.nan)
        gap = nxt - ts
        if cfg.dwell_break_s > 0:  # a longer pause ends the visit: no dwell for that event
            gap = np.where(gap > cfg.dwell_break_s, np.nan, gap)
        info["duration_source"] = (
            f"next_gap (dwell = time to the next event of the sequence, capped at "
            f"{cfg.dwell_cap_s:g} s; a sequence's last event has none)"
        )
        return np.minimum(gap, cfg.dwell_cap_s)
    info["duration_source"] = "none"
    return np.full(len(user), np.nan)


class _Durations(NamedTuple):
    dur: np.ndarray  # transformed duration of each event
    dur_ok: np.ndarray
    dur_mean: np.ndarray  # per sequence: its owner's training statistics
    dur_std: np.ndarray
    dur_user_ok: np.ndarray


def _durations(raw_dur, owner, split, offsets, cfg: PrepConfig, info: dict) -> _Durations:
    """Transformed durations and the per-*person* (owner) statistics of the training events,
    shared by that person's sessions (`duration.fit_user_stats`)."""
    if cfg.shuffle_durations:
        raw_dur = _shuffle_within(raw_dur, owner, split, cfg.seed)
        info["duration_source"] += " (shuffled within each user and split: a control)"
    dur, dur_ok = transform_durations(raw_dur, cfg.duration_transform)
    n_owners = int(owner.max()) + 1
    o_mean, o_std, o_ok = fit_user_stats(
        owner, dur, dur_ok, split == TRAIN, n_owners, cfg.duration_min_events
    )
    seq_owner = owner[offsets[:-1]]
    out = _Durations(dur, dur_ok, o_mean[seq_owner], o_std[seq_owner], o_ok[seq_owner])
    info["duration_coverage"] = float(dur_ok.mean())
    info["users_with_duration_stats"] = float(out.dur_user_ok.mean())
    return out


def _input_contexts(events, ts, is_train, cfg: PrepConfig, info: dict) -> tuple[np.ndarray, int]:
    """Each event's input context (behaviour type x hour-of-day bucket) and their number.
    Behaviours are those of the training events (0: unseen in training, or missing)."""
    n_beh = 1
    beh_idx = np.zeros(len(ts), np.int64)
    if cfg.use_behavior and "behavior" in events.columns:
        # Work on category codes: an object array would cost 8 bytes a row at 100M rows.
        beh = events["behavior"].astype("category")
        codes = beh.cat.codes.to_numpy()
        seen = np.unique(codes[is_train & (codes >= 0)])
        lookup = np.zeros(len(beh.cat.categories) + 1, np.int64)  # last slot: missing (-1)
        lookup[seen] = np.arange(1, len(seen) + 1)
        beh_idx = lookup[codes]  # 0: a behaviour unseen in training, or missing
        n_beh = len(seen) + 1
        info["behaviors"] = [str(beh.cat.categories[c]) for c in seen]
    n_hours = max(cfg.hour_buckets, 1)
    hour_idx = np.zeros(len(ts), np.int64)
    if cfg.hour_buckets:
        hour = np.floor(np.mod(ts, 86400.0) / 3600.0).astype(np.int64)
        hour_idx = hour // (24 // cfg.hour_buckets)
    return (beh_idx * n_hours + hour_idx).astype(np.int32), int(n_beh * n_hours)


def _gap_edges(ts, user, is_train, cfg: PrepConfig) -> np.ndarray:
    """Transfer-context bucket edges: quantiles of the log time gap between consecutive
    training events of a sequence (none with ``gap_buckets <= 1``)."""
    gap_edges = np.zeros(0)
    if cfg.gap_buckets > 1:
        tr_gaps = _gaps_within(ts[is_train], user[is_train])
        tr_gaps = tr_gaps[np.isfinite(tr_gaps)]
        if len(tr_gaps):
            qs = np.linspace(0, 1, cfg.gap_buckets + 1)[1:-1]
            gap_edges = np.unique(np.quantile(np.log1p(np.maximum(tr_gaps, 0)), qs))
    return gap_edges


def _ratings(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each event's rating and whether it has one (a ``rating`` column, finite values)."""
    if "rating" in events.columns:
        rating = events["rating"].to_numpy(np.float32)
        return rating, np.isfinite(rating)
    return np.zeros(len(events), np.float32), np.zeros(len(events), bool)


def _log_popularity(item, is_train, n_items: int) -> np.ndarray:
    """``[n_items + 1]``: log of the add-one-smoothed training frequency (-inf for id 0)."""
    pop = np.bincount(item[is_train], minlength=n_items + 1).astype(np.float64)
    pop[1:] += 1.0
    pop[0] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(pop / pop.sum()).astype(np.float32)


def _clean(events: pd.DataFrame, cfg: PrepConfig, info: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """Sorts stably by (user, time), then k-core filtering, sessionisation and removal of
    consecutive repeats, as configured. Returns the events with a ``_seq`` column (the
    sequence id: the user, or the user's session) and each event's owner (user) code."""
    user_codes, _ = pd.factorize(events["user"], sort=False)
    ts = events["timestamp"].to_numpy(np.float64)
    order = np.lexsort((ts, user_codes))  # stable: equal keys keep file order
    events = events.iloc[order].reset_index(drop=True)
    owner = user_codes[order].astype(np.int64)
    item_codes, _ = pd.factorize(events["item"], sort=False)
    funnel.record(info, "read", len(events), owner.max() + 1, item_codes.max() + 1)
    if cfg.kcore_users or cfg.kcore_items:
        keep = np.ones(len(events), bool)
        for _ in range(100):
            u_cnt = np.bincount(owner[keep], minlength=owner.max() + 1)
            i_cnt = np.bincount(item_codes[keep], minlength=item_codes.max() + 1)
            bad = keep & ((u_cnt[owner] < cfg.kcore_users) | (i_cnt[item_codes] < cfg.kcore_items))
            if not bad.any():
                break
            keep &= ~bad
        info["kcore_dropped"] = int((~keep).sum())
        events, owner = events[keep].reset_index(drop=True), owner[keep]
        name = f"k-core (users >= {cfg.kcore_users}, items >= {cfg.kcore_items})"
        kept_items = np.count_nonzero(np.bincount(item_codes[keep]))
        funnel.record(info, name, len(events), np.count_nonzero(np.bincount(owner)), kept_items)
    if len(events) == 0:
        raise funnel.NotEnoughDataError(
            "no events left after k-core filtering: " + funnel.summary(info)
            + "; lower config.data.kcore_users / kcore_items"
        )  # fmt: skip
    ts = events["timestamp"].to_numpy(np.float64)
    new_owner = np.concatenate([[True], owner[1:] != owner[:-1]])
    if cfg.session_gap_s > 0:
        boundary = new_owner | np.concatenate([[True], np.diff(ts) > cfg.session_gap_s])
    else:
        boundary = new_owner
    seq = np.cumsum(boundary) - 1
    n_items = info["funnel"][-1]["items"]
    if cfg.session_gap_s > 0:
        name = f"sessions (gap > {cfg.session_gap_s:g} s)"
        funnel.record(info, name, len(seq), seq[-1] + 1, n_items)
    if cfg.drop_consecutive_repeats:
        items = events["item"].to_numpy()
        repeat = ~boundary & np.concatenate([[False], items[1:] == items[:-1]])
        info["consecutive_repeats_dropped"] = int(repeat.sum())
        events, owner, seq = events[~repeat].reset_index(drop=True), owner[~repeat], seq[~repeat]
        seq = np.unique(seq, return_inverse=True)[1]
        # A repeat is never a sequence's first event, and its item stays: only events go.
        funnel.record(info, "consecutive repeats", len(seq), seq[-1] + 1, n_items)
    events = events.assign(_seq=seq)
    info["n_sequences"] = int(seq.max()) + 1
    return events, owner


def _shuffle_within(values: np.ndarray, owner: np.ndarray, split: np.ndarray, seed: int):
    """``values`` permuted at random within each (owner, split) group: each user keeps the
    same durations (and statistics) but they no longer belong to their events."""
    rng = np.random.default_rng([seed, 7])
    group = owner * 3 + split
    order = np.lexsort((rng.random(len(values)), group))  # random order inside each group
    sorted_idx = np.argsort(group, kind="stable")
    out = np.empty_like(values)
    out[sorted_idx] = values[order]
    return out


def _gaps_within(ts: np.ndarray, user: np.ndarray) -> np.ndarray:
    """Time since the previous event of the same user in the given (sorted) sequence."""
    gaps = np.full(len(ts), np.nan)
    if len(ts) > 1:
        same = user[1:] == user[:-1]
        gaps[1:] = np.where(same, ts[1:] - ts[:-1], np.nan)
    return gaps


def _gap_buckets(gaps: np.ndarray, edges: np.ndarray, enabled: bool) -> np.ndarray:
    """0 for a first event (no previous one), else 1 + the bucket of log1p(gap)."""
    if not enabled:
        return np.zeros(len(gaps), np.int32)
    b = 1 + np.searchsorted(edges, np.log1p(np.maximum(np.nan_to_num(gaps, nan=0.0), 0)))
    return np.where(np.isfinite(gaps), b, 0).astype(np.int32)


FIELDS = (
    "items",
    "mask",
    "reset",
    "in_ctx",
    "tr_ctx",
    "dur",
    "dur_ok",
    "rating_in",
    "rating_in_ok",
)
USER_FIELDS = ("dur_mean", "dur_std", "dur_user_ok")


def _empty(n: int, length: int, with_targets: bool) -> dict[str, np.ndarray]:
    a = {
        "items": np.zeros((n, length), np.int32),
        "mask": np.zeros((n, length), bool),
        "reset": np.zeros((n, length), bool),
        "in_ctx": np.zeros((n, length), np.int32),
        "tr_ctx": np.zeros((n, length), np.int32),
        "dur": np.zeros((n, length), np.float32),
        "dur_ok": np.zeros((n, length), bool),
        "dur_mean": np.zeros((n, length), np.float32),
        "dur_std": np.ones((n, length), np.float32),
        "dur_user_ok": np.zeros((n, length), bool),
        "rating_in": np.zeros((n, length), np.float32),  # the input event's own rating
        "rating_in_ok": np.zeros((n, length), bool),
    }
    if with_targets:
        a["targets"] = np.zeros((n, length), np.int32)
        a["rating_target"] = np.zeros((n, length), np.float32)
        a["rating_ok"] = np.zeros((n, length), bool)
    return a


def train_windows(p: Prepared, pack: bool = False) -> dict[str, np.ndarray]:
    """All training windows as arrays ``[R, L]`` (inputs) with next-event targets.

    Unknown items cannot occur here (the vocabulary is the training items). Each user's
    training events are cut from the most recent backwards into windows of at most ``L + 1``
    consecutive events (``L`` inputs, each with the next as target; consecutive windows share
    one event, so every training transition is a target exactly once). With ``pack``,
    consecutive windows share a row while they fit (next fit), each starting with a ``reset``
    (the cell restarts from zeros there), so short sequences do not pay for padding; otherwise
    each window has its own row. Vectorised: no Python loop over users or windows' events.
    """
    L = p.max_len
    tp = np.flatnonzero(p.split == TRAIN)  # training positions, sorted by (user, time)
    tu = p.user[tp]
    n_u = np.bincount(tu, minlength=p.n_users)
    t_off = np.concatenate([[0], np.cumsum(n_u)])
    i_all = np.arange(len(tp)) - t_off[tu]  # index in the user's list of training events
    g = np.flatnonzero(i_all <= n_u[tu] - 2)  # inputs: training events with a successor
    u, i, n = tu[g], i_all[g], n_u[tu[g]]
    k = (n - 2 - i) // L  # window of each input, 0 = the most recent
    start = np.maximum(0, n - k * L - L - 1)
    col = i - start
    n_win_u = np.where(n_u >= 2, (n_u - 2) // L + 1, 0)
    w_off = np.concatenate([[0], np.cumsum(n_win_u)])
    wid = w_off[u] + k
    n_win = int(w_off[-1])
    wlen = np.bincount(wid, minlength=n_win)
    wuser = np.repeat(np.arange(p.n_users), n_win_u)
    rows, cols = _place(wlen, L, pack)
    r, c = rows[wid], cols[wid] + col
    a = _empty(int(rows.max(initial=-1)) + 1, L, with_targets=True)
    inp, tgt = tp[g], tp[g + 1]
    gaps = np.where(i > 0, p.timestamp[inp] - p.timestamp[tp[np.maximum(g - 1, 0)]], np.nan)
    _scatter(a, p, r, c, inp, gaps, u)
    first = col == 0
    a["reset"][r[first], c[first]] = True
    a["targets"][r, c] = p.item[tgt]
    a["rating_target"][r, c] = p.rating[tgt]
    a["rating_ok"][r, c] = p.rating_ok[tgt]
    a["user"] = np.zeros(len(a["items"]), np.int64)
    lead = cols == 0
    a["user"][rows[lead]] = wuser[lead]
    return a


def _place(lengths: np.ndarray, width: int, pack: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row and starting column of each window: its own row, or next fit in order."""
    if not pack:
        return np.arange(len(lengths)), np.zeros(len(lengths), np.int64)
    rows = np.empty(len(lengths), np.int64)
    cols = np.empty(len(lengths), np.int64)
    row, col = -1, width
    for w, n in enumerate(lengths.tolist()):
        if col + n > width:
            row, col = row + 1, 0
        rows[w], cols[w] = row, col
        col += n
    return rows, cols


def _scatter(a, p: Prepared, r, c, pos, gaps, u) -> None:
    """Writes events ``pos`` as inputs at ``(r, c)`` (per-event user ``u`` for statistics)."""
    a["items"][r, c] = p.item[pos]
    a["mask"][r, c] = p.item[pos] > 0
    a["in_ctx"][r, c] = p.in_ctx[pos]
    a["tr_ctx"][r, c] = _gap_buckets(gaps, p.gap_edges, p.n_transfer_contexts > 1)
    a["dur"][r, c] = p.dur[pos]
    a["dur_ok"][r, c] = p.dur_ok[pos]
    a["dur_mean"][r, c] = p.dur_mean[u]
    a["dur_std"][r, c] = p.dur_std[u]
    a["dur_user_ok"][r, c] = p.dur_user_ok[u]
    ok = p.rating_ok[pos]
    a["rating_in"][r, c] = np.where(ok, p.rating[pos], 0.0)
    a["rating_in_ok"][r, c] = ok


class HeldOut(NamedTuple):
    """`heldout_positions`' selection, as event positions into a `Prepared`'s arrays."""

    target_pos: np.ndarray  # [E] the held-out events, in event order
    hist_offsets: np.ndarray  # [E + 1] CSR into hist_pos
    hist_pos: np.ndarray  # each target's visible history: earlier events, in time order


def heldout_positions(p: Prepared, split: str, drop_unknown: bool = False) -> HeldOut:
    """The evaluation protocol's one definition of what a model may see: which events are the
    targets of ``split`` ("valid" or "test") and which earlier events are visible to each.

    Targets: every event of ``split`` (known items only with ``drop_unknown``; with
    ``all_past_visible``, not a sequence's first event, which nothing precedes). History: the
    user's visible events before the target, in time order: known items of training events
    (and of validation events for test), or of all earlier events with ``all_past_visible``
    (e.g. the earlier clicks of a test session). `eval_examples`, the GRU4Rec export and the
    baselines' rating inputs all select through here.
    """
    code = SPLITS[split]
    visible = {VALID: (TRAIN,), TEST: (TRAIN, VALID)}[code]
    if p.all_past_visible:
        visible = (TRAIN, VALID, TEST)
    tgt_pos = np.flatnonzero(p.split == code)
    if drop_unknown:
        tgt_pos = tgt_pos[p.item[tgt_pos] > 0]
    if p.all_past_visible:
        tgt_pos = tgt_pos[tgt_pos > p.offsets[p.user[tgt_pos]]]
    vpos = np.flatnonzero(np.isin(p.split, visible) & (p.item > 0))
    first = np.searchsorted(vpos, p.offsets[p.user[tgt_pos]])  # the user's first visible event
    n_before = np.searchsorted(vpos, tgt_pos) - first  # visible events before the target
    hist_offsets = np.concatenate([[0], np.cumsum(n_before)]).astype(np.int64)
    h_idx = np.repeat(first - hist_offsets[:-1], n_before) + np.arange(hist_offsets[-1])
    return HeldOut(tgt_pos, hist_offsets, vpos[h_idx])


def eval_examples(p: Prepared, split: str, drop_unknown: bool = False) -> dict[str, np.ndarray]:
    """Evaluation examples of ``split`` ("valid" or "test"), one per target of
    `heldout_positions`.

    Returns window arrays ``[E, L]`` (the last ``L`` visible events before the target),
    ``target``/``target_rating``/``target_rating_ok``/``user`` ``[E]`` and the exclusion
    history as CSR (``hist_offsets [E+1]``, ``hist_items``): every visible event before the
    target, not only the last ``L``.
    """
    h = heldout_positions(p, split, drop_unknown)
    tgt_pos, hist_pos = h.target_pos, h.hist_pos
    L = p.max_len
    n_in = np.minimum(np.diff(h.hist_offsets), L)
    q = (h.hist_offsets[1:] - n_in)[:, None] + np.arange(L)[None, :]
    valid = np.arange(L)[None, :] < n_in[:, None]
    e_idx, col = np.nonzero(valid)
    q = q[e_idx, col]  # index into hist_pos of each input
    prev = hist_pos[np.maximum(q - 1, 0)]  # the visible event before it, if the user's own
    gaps = np.where(q > h.hist_offsets[e_idx], p.timestamp[hist_pos[q]] - p.timestamp[prev], np.nan)
    tu = p.user[tgt_pos]
    a = _empty(len(tgt_pos), L, with_targets=False)
    _scatter(a, p, e_idx, col, hist_pos[q], gaps, tu[e_idx])
    a["reset"][:, 0] = n_in > 0
    a["target"] = p.item[tgt_pos].astype(np.int32)
    a["target_rating"] = p.rating[tgt_pos]
    a["target_rating_ok"] = p.rating_ok[tgt_pos] & (p.item[tgt_pos] > 0)
    a["user"] = tu
    a["hist_offsets"] = h.hist_offsets
    a["hist_items"] = p.item[hist_pos].astype(np.int32)
    return a


def iterate_train_batches(
    windows: Mapping[str, np.ndarray], batch_size: int, seed: int, epoch: int, start_batch: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled fixed-size batches of one epoch; the order depends only on (seed, epoch), so a
    resumed run sees exactly the batches the uninterrupted run would have seen. The last
    batch is padded with empty rows (all masked) to keep one compiled shape."""
    n = len(windows["items"])
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    n_batches = -(-n // batch_size)
    for b in range(start_batch, n_batches):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        yield {k: _take_pad(v, idx, batch_size) for k, v in windows.items() if k != "user"}


def n_train_batches(windows: Mapping[str, np.ndarray], batch_size: int) -> int:
    return -(-len(windows["items"]) // batch_size)


def _take_pad(v: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    out = v[idx]
    if len(idx) < size:
        pad = np.zeros((size - len(idx),) + v.shape[1:], v.dtype)
        out = np.concatenate([out, pad])
    return out


def iterate_eval_batches(
    ex: Mapping[str, np.ndarray], batch_size: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, int]]:
    """Fixed-size chunks of evaluation examples, in order: ``(inputs, hist_BxM, n_real)``;
    the history width M is rounded up to a power of two so few shapes are compiled."""
    for batch, hist, idx in iterate_eval_batches_by_length(
        ex, batch_size, trim_time=False, sort=False
    ):
        yield batch, hist, len(idx)


def _history(ex: Mapping[str, np.ndarray], idx: np.ndarray, batch_size: int) -> np.ndarray:
    """Exclusion histories of examples ``idx`` as ``[batch_size, M]`` (0-padded), M the
    longest rounded up to a power of two (at least 16)."""
    starts, ends = ex["hist_offsets"][idx], ex["hist_offsets"][idx + 1]
    lens = ends - starts
    width = int(max(1, lens.max(initial=1)))
    width = 1 << (width - 1).bit_length()
    hist = np.zeros((batch_size, max(width, 16)), np.int32)
    row = np.repeat(np.arange(len(idx)), lens)
    col = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    hist[row, col] = ex["hist_items"][np.repeat(starts, lens) + col]
    return hist


def iterate_eval_batches_by_length(
    ex: Mapping[str, np.ndarray],
    batch_size: int,
    trim_time: bool = True,
    n_shapes: int = 8,
    sort: bool = True,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Fixed-size chunks of evaluation examples ordered by input length (longest first; in
    the examples' order without ``sort``): ``(inputs, hist_BxM, idx)``, ``idx`` the positions
    in ``ex`` of the batch's real rows (the padding rows after them are empty).

    With ``trim_time`` each batch keeps only its first ``T'`` time steps, ``T'`` one past its
    latest real step rounded up to a multiple of ``ceil(T / n_shapes)`` (at most ``n_shapes``
    shapes to compile). Only trailing padding is cut, which never changes a recurrent cell's
    state: the outputs are those of the full width, at a cost that follows the real lengths
    instead of ``T``.
    """
    n = len(ex["target"])
    order = np.arange(n)
    if sort or trim_time:
        t = ex["mask"].shape[1]
        mask = ex["mask"]
        lengths = np.where(mask.any(1), t - np.argmax(mask[:, ::-1], axis=1), 0)  # last real + 1
        step = -(-t // n_shapes)
        if sort:
            order = np.argsort(-lengths, kind="stable")
    keys = [k for k in FIELDS + USER_FIELDS + ("target",) if k in ex]
    for lo in range(0, n, batch_size):
        idx = order[lo : lo + batch_size]
        cut = slice(None)
        if trim_time:
            cut = slice(min(t, max(step, -(-int(lengths[idx].max(initial=1)) // step) * step)))
        batch = {
            k: _take_pad(ex[k][:, cut] if ex[k].ndim == 2 else ex[k], idx, batch_size) for k in keys
        }
        yield batch, _history(ex, idx, batch_size), idx
