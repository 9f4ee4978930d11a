"""Synthetic interaction logs in which dwell time separates genuine interest from noise clicks.

Generative process (all randomness from ``numpy.random.default_rng(seed)``):

1. **Topics.** A random permutation of the items is cut into ``n_topics`` nearly equal parts;
   within a topic the items form a *ring* in that random order (see :func:`synthetic_item_rings`,
   which rebuilds the rings from the same arguments).
2. **Users.** Each user gets a length ``L ~ Uniform{min_len..max_len}``, a reading speed
   ``s ~ LogNormal(0, user_speed_sigma)``, a random initial topic and a random start position
   in its ring.
3. **Events.** At every event, with probability ``drift`` the user switches to another random
   topic (that still has items the user has not seen) and a random position in its ring. Then
   the event is

   * **genuine** with probability ``1 - noise_rate``: the item is the next unseen item of the
     current ring after the last genuine item, taking a step of 1 (probability 0.7) or 2
     (probability 0.3) and skipping items already seen (right after a switch the item at the
     new position itself is eligible). Its dwell is ``s * LogNormal(log(genuine_dwell), 0.5)``.
     A ring with no unseen item left forces a switch first.
   * **noise** with probability ``noise_rate``: an item drawn uniformly from all items the user
     has not seen, ignoring topics; dwell ``s * LogNormal(log(noise_dwell), 0.5)``. Noise does
     not move the ring position.

   No user sees an item twice, so evaluations that exclude seen items lose nothing.
4. **Time.** A user's first event is uniform in the 30 days from 2024-01-01 00:00 UTC; the next
   one starts ``dwell + gap`` later with ``gap ~ Exponential(30 s)``, plus with probability 0.05
   a break of ``1 h + Exponential(6 h)``. ``duration`` is the dwell in seconds.

Because the per-user speed multiplies every dwell, raw durations are confounded across users;
dwell normalised within a user (e.g. z-scored log dwell) separates genuine from noise events far
better. The ground truth is returned in the ``_is_noise`` column; columns starting with ``_``
are for tests and analysis only and ignored by the rest of the system.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

__all__ = ["generate_synthetic", "synthetic_item_rings"]

_START = 1_704_067_200.0  # 2024-01-01 00:00:00 UTC
_WINDOW = 30 * 86_400.0
_MEAN_GAP = 30.0
_BREAK_PROB = 0.05
_BREAK_MIN = 3_600.0
_BREAK_MEAN = 6 * 3_600.0
_STEP_ONE_PROB = 0.7
_DWELL_SIGMA = 0.5


def synthetic_item_rings(n_items: int, n_topics: int, seed: int = 0) -> list[np.ndarray]:
    """Return the item rings (one array of item ids per topic) used by :func:`generate_synthetic`.

    The rings depend only on ``(n_items, n_topics, seed)``.
    """
    _check_int("n_items", n_items, 1)
    _check_int("n_topics", n_topics, 1)
    _check_int("seed", seed, 0)
    if n_topics > n_items:
        raise ValueError(f"n_topics must be <= n_items ({n_items}), got {n_topics}")
    ring_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    return [
        ring.astype(np.int64) for ring in np.array_split(ring_rng.permutation(n_items), n_topics)
    ]


def generate_synthetic(
    n_users: int = 2000,
    n_items: int = 1000,
    n_topics: int = 20,
    min_len: int = 20,
    max_len: int = 60,
    noise_rate: float = 0.3,
    drift: float = 0.1,
    seed: int = 0,
    genuine_dwell: float = 60.0,
    noise_dwell: float = 6.0,
    user_speed_sigma: float = 1.0,
) -> pd.DataFrame:
    """Generate a synthetic log as described in the module docstring.

    Returns:
        A frame grouped by user (ids ``0..n_users-1``), time-sorted within a user, with columns
        ``user`` (int64), ``item`` (int64, ``0..n_items-1``), ``timestamp`` (float64 Unix
        seconds), ``duration`` (float64 seconds, > 0) and ``_is_noise`` (bool ground truth).

    Raises:
        ValueError: an argument is out of range; the message names it.
    """
    _check_int("n_users", n_users, 1)
    _check_int("n_items", n_items, 1)
    _check_int("n_topics", n_topics, 1)
    _check_int("min_len", min_len, 1)
    _check_int("max_len", max_len, 1)
    _check_int("seed", seed, 0)
    if n_topics > n_items:
        raise ValueError(f"n_topics must be <= n_items ({n_items}), got {n_topics}")
    if max_len < min_len:
        raise ValueError(f"max_len must be >= min_len ({min_len}), got {max_len}")
    if max_len > n_items:
        raise ValueError(f"max_len must be <= n_items ({n_items}) as items never repeat")
    _check_real("noise_rate", noise_rate, 0.0, 1.0)
    _check_real("drift", drift, 0.0, 1.0)
    _check_real("genuine_dwell", genuine_dwell, 0.0, np.inf, open_low=True)
    _check_real("noise_dwell", noise_dwell, 0.0, np.inf, open_low=True)
    _check_real("user_speed_sigma", user_speed_sigma, 0.0, np.inf)

    rings = synthetic_item_rings(n_items, n_topics, seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    topic_of = np.empty(n_items, np.int64)
    for t, ring in enumerate(rings):
        topic_of[ring] = t
    ring_lists = [ring.tolist() for ring in rings]
    topic_sizes = np.array([len(r) for r in rings], np.int64)

    lengths = rng.integers(min_len, max_len + 1, size=n_users)
    total = int(lengths.sum())
    speed = rng.lognormal(0.0, user_speed_sigma, size=n_users)
    switch = rng.random(total) < drift
    noise = rng.random(total) < noise_rate
    step = np.where(rng.random(total) < _STEP_ONE_PROB, 1, 2)
    log_dwell = rng.normal(0.0, _DWELL_SIGMA, size=total)

    items = np.empty(total, np.int64)
    offset = 0
    for length in lengths.tolist():
        _user_items(
            rng,
            items[offset : offset + length],
            switch[offset : offset + length],
            noise[offset : offset + length],
            step[offset : offset + length],
            ring_lists,
            topic_of,
            topic_sizes,
        )
        offset += length

    users = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    base = np.where(noise, np.log(noise_dwell), np.log(genuine_dwell))
    dwell = speed[users] * np.exp(base + log_dwell)

    gaps = rng.exponential(_MEAN_GAP, size=total)
    breaks = rng.random(total) < _BREAK_PROB
    gaps += breaks * (_BREAK_MIN + rng.exponential(_BREAK_MEAN, size=total))
    starts = _START + rng.random(n_users) * _WINDOW
    # The time after event k is dwell_k + gap_k; each user's clock restarts at its own start.
    advance = dwell + gaps
    cumulative = np.cumsum(advance) - advance
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    timestamps = np.repeat(starts, lengths) + cumulative - cumulative[first]

    return pd.DataFrame(
        {
            "user": users,
            "item": items,
            "timestamp": timestamps,
            "duration": dwell,
            "_is_noise": noise,
        }
    )


def _user_items(
    rng: np.random.Generator,
    out: np.ndarray,
    switch: np.ndarray,
    noise: np.ndarray,
    step: np.ndarray,
    rings: list[list[int]],
    topic_of: np.ndarray,
    topic_sizes: np.ndarray,
) -> None:
    """Fill ``out`` with one user's items, following the ring walk with noise clicks."""
    n_items = len(topic_of)
    n_topics = len(rings)
    unseen = topic_sizes.copy()
    seen: set[int] = set()
    topic = int(rng.integers(n_topics))
    position = int(rng.integers(len(rings[topic])))
    fresh = True
    for k in range(len(out)):
        if switch[k] or unseen[topic] == 0:
            candidates = np.flatnonzero(unseen > 0)
            others = candidates[candidates != topic]
            if len(others):
                topic = int(others[rng.integers(len(others))])
                position = int(rng.integers(len(rings[topic])))
                fresh = True
        if noise[k]:
            item = int(rng.integers(n_items))
            while item in seen:
                item = int(rng.integers(n_items))
        else:
            ring = rings[topic]
            size = len(ring)
            offset = 0 if fresh else int(step[k])
            item = ring[(position + offset) % size]
            while item in seen:
                offset += 1
                item = ring[(position + offset) % size]
            position = (position + offset) % size
            fresh = False
        out[k] = item
        seen.add(item)
        unseen[topic_of[item]] -= 1


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_real(
    name: str, value: object, low: float, high: float, *, open_low: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or np.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or (open_low and value == low) or value > high:
        interval = f"{'(' if open_low else '['}{low}, {high}{']' if np.isfinite(high) else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
