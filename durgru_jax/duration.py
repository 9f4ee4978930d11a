"""Duration attention factor, eq. (9) of paper 000.

``alpha_{u,i} = sigmoid(z_{u,i})`` where ``z_{u,i}`` is the z-score of the (log1p by default)
browsing duration of event i against user u's own duration statistics. The statistics come
from the user's *training* events only (`fit_user_stats`, NumPy, once per dataset); the
z-score and sigmoid run inside the jitted model (`duration_factor`).

Neutral value: when an event has no duration (missing, the last click of a session, a dataset
without durations) or its user has fewer than ``min_events`` training durations or a zero
spread, we use ``z = 0``, i.e. ``alpha = sigmoid(0) = 0.5``, the factor of an event of exactly
average length.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

NEUTRAL_Z = 0.0


def transform_durations(duration: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(value, valid)``: the transformed duration and whether it exists."""
    duration = np.asarray(duration, dtype=np.float64)
    valid = np.isfinite(duration) & (duration >= 0)
    safe = np.where(valid, duration, 0.0)
    if transform == "log1p":
        value = np.log1p(safe)
    elif transform == "none":
        value = safe
    else:
        raise ValueError(f"unknown duration transform {transform!r}; use 'log1p' or 'none'")
    return value.astype(np.float32), valid


def fit_user_stats(
    user: np.ndarray,
    value: np.ndarray,
    valid: np.ndarray,
    is_train: np.ndarray,
    n_users: int,
    min_events: int,
    min_std: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user mean and standard deviation of ``value`` over the user's training events.

    Returns ``(mean_U, std_U, ok_U)``; ``ok`` is false for users with fewer than
    ``min_events`` valid training durations or a std below ``min_std`` (their factor is
    neutral). Only rows with ``is_train & valid`` contribute, so nothing from a validation or
    test event (nor from any future event) reaches the statistics.
    """
    use = np.asarray(is_train, bool) & np.asarray(valid, bool)
    u = np.asarray(user)[use]
    v = np.asarray(value, np.float64)[use]
    count = np.bincount(u, minlength=n_users).astype(np.float64)
    total = np.bincount(u, weights=v, minlength=n_users)
    mean = np.divide(total, count, out=np.zeros(n_users), where=count > 0)
    sq = np.bincount(u, weights=(v - mean[u]) ** 2, minlength=n_users)
    std = np.sqrt(np.divide(sq, count, out=np.zeros(n_users), where=count > 0))
    ok = (count >= max(min_events, 2)) & (std >= min_std)
    return mean.astype(np.float32), np.where(ok, std, 1.0).astype(np.float32), ok


@functools.partial(jax.jit, static_argnames=("scale",))
def duration_factor(
    value_BxT: jax.Array,
    valid_BxT: jax.Array,
    mean_B: jax.Array,
    std_B: jax.Array,
    ok_B: jax.Array,
    scale: float = 1.0,
) -> jax.Array:
    """Eq. (9): ``scale * sigmoid((value - mean_u) / std_u)``, neutral ``scale / 2`` where
    undefined. ``scale=1`` is the paper's factor; ``scale=2`` makes an average-length (or
    unknown) event's factor exactly 1, so ``duration_mode="none"`` is the special case z = 0.

    The user statistics may be given per row (``[B]``) or per step (``[B, T]``, for rows that
    pack several users).
    """
    if mean_B.ndim == 1:
        mean_B, std_B, ok_B = mean_B[:, None], std_B[:, None], ok_B[:, None]
    ok = valid_BxT & ok_B
    z = (value_BxT - mean_B) / jnp.where(ok, std_B, 1.0)
    z = jnp.where(ok, z, NEUTRAL_Z)
    return scale * jax.nn.sigmoid(z)
