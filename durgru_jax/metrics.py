"""Full-ranking evaluation: exact ranks over the whole catalogue, in bounded memory.

`rank_and_topk` scores a chunk of users against the catalogue in item chunks of fixed size, so
memory is ``O(users_per_chunk x item_chunk)`` whatever the catalogue size. It returns, per
user, the exact 0-based rank of the target and the top-``K`` items, never sampling.

Ties count against the model: the rank is the number of items scored strictly higher plus the
number of *other* items scored equal, so a model that scores everything equal ranks the target
last, not first. Items of the user's history are removed before ranking when
``exclude_history`` is on; a target that is itself in the history is then a miss (recommending
it was ruled out), and so is a target the model cannot score (never seen in training).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@functools.partial(
    jax.jit, static_argnames=("n_items", "kmax", "item_chunk", "exclude_history", "with_scores")
)
def rank_and_topk(
    u_BxD: Array,
    v_DxN: Array,
    c_N: Array,
    target_B: Array,
    hist_BxM: Array,
    *,
    n_items: int,
    kmax: int,
    item_chunk: int,
    exclude_history: bool,
    with_scores: bool = False,
    offset_B: Array | None = None,
    items_BxL: Array | None = None,
    scores_BxL: Array | None = None,
) -> tuple[Array, ...]:
    """Exact rank of ``target`` among items ``1..n_items`` and the top-``kmax`` item ids
    (with ``with_scores``, also their scores: ``-inf`` where fewer items were rankable).

    ``v_DxN, c_N`` cover ids ``0..n_items`` (id 0 is padding, never ranked); ``hist`` holds
    each user's history item ids padded with 0. A target id of 0 (unknown item) or an excluded
    target gets rank ``n_items`` (a miss at every cutoff).

    Optional sparse part (all three or none): item ``i`` of row ``b`` scores
    ``u_b . v_i + c_i + offset_b``, except the items ``items_BxL[b]`` (0: none), which score
    ``scores_BxL[b]`` (a repeated item must carry one score). Ranks and top-K are computed on
    the scores minus ``offset`` (the same order: the shift is per row), so items outside the
    sparse part keep the exact scores and ties of the plain ``u . v + c``; returned top scores
    include the offset.
    """
    b = u_BxD.shape[0]
    n_cols = v_DxN.shape[1]
    n_chunks = -(-n_cols // item_chunk)
    pad = n_chunks * item_chunk - n_cols
    v = jnp.pad(v_DxN, ((0, 0), (0, pad)))
    c = jnp.pad(c_N, (0, pad))
    t_score = jnp.sum(u_BxD * v_DxN[:, target_B].T, -1) + c_N[target_B]
    rows = jnp.arange(b)[:, None]
    sparse = items_BxL is not None
    if sparse:
        sparse_base = scores_BxL - offset_B[:, None]  # on the scale of u . v + c
        t_hit = (items_BxL == target_B[:, None]) & (items_BxL > 0)
        t_sparse = jnp.max(jnp.where(t_hit, sparse_base, -jnp.inf), axis=1)
        t_score = jnp.where(jnp.any(t_hit, axis=1), t_sparse, t_score)
    if exclude_history:
        target_in_hist = jnp.any((hist_BxM == target_B[:, None]) & (hist_BxM > 0), axis=1)
    else:
        target_in_hist = jnp.zeros((b,), bool)

    def body(carry, i):
        greater, equal, top_v, top_i = carry
        off = i * item_chunk
        vc = jax.lax.dynamic_slice_in_dim(v, off, item_chunk, axis=1)
        cc = jax.lax.dynamic_slice_in_dim(c, off, item_chunk)
        s = u_BxD @ vc + cc
        if sparse:
            s = s.at[rows, _chunk_local(items_BxL, off, item_chunk)].set(sparse_base, mode="drop")
        ids = off + jnp.arange(item_chunk)
        s = jnp.where((ids == 0) | (ids > n_items), -jnp.inf, s)
        if exclude_history:
            s = s.at[rows, _chunk_local(hist_BxM, off, item_chunk)].set(-jnp.inf, mode="drop")
        # The target's own column never counts: its chunked score may differ from t_score in
        # the last bit (another summation order), which would rank it below itself.
        other = ids != target_B[:, None]
        greater = greater + jnp.sum((s > t_score[:, None]) & other, axis=1)
        equal = equal + jnp.sum((s == t_score[:, None]) & other, axis=1)
        cv, ci = jax.lax.top_k(s, min(kmax, item_chunk))
        mv, mi = jax.lax.top_k(jnp.concatenate([top_v, cv], 1), kmax)
        top_i = jnp.take_along_axis(jnp.concatenate([top_i, ci + off], 1), mi, axis=1)
        return (greater, equal, mv, top_i), None

    init = (
        jnp.zeros((b,), jnp.int32),
        jnp.zeros((b,), jnp.int32),
        jnp.full((b, kmax), -jnp.inf, u_BxD.dtype),
        jnp.zeros((b, kmax), jnp.int32),
    )
    (greater, equal, top_v, top_i), _ = jax.lax.scan(body, init, jnp.arange(n_chunks))
    rank = greater + equal
    miss = (target_B == 0) | target_in_hist | ~jnp.isfinite(t_score)
    rank = jnp.where(miss, n_items, rank)
    if not with_scores:
        return rank, top_i
    return rank, top_i, (top_v + offset_B[:, None] if sparse else top_v)


def _chunk_local(ids_BxL: Array, off: int | Array, item_chunk: int) -> Array:
    """Column of each id in the chunk starting at ``off``; ids outside it go to an index past
    the end (dropped by a ``mode="drop"`` scatter; a negative index would wrap around)."""
    local = ids_BxL - off
    return jnp.where((local >= 0) & (local < item_chunk), local, item_chunk)


def ranking_metrics(
    rank_E: np.ndarray,
    topk_ExK: np.ndarray,
    user_E: np.ndarray,
    ks: tuple[int, ...],
    n_items: int,
    prefix: str,
) -> dict[str, float]:
    """Metrics at each cutoff K from exact 0-based ranks of one held-out item per example.

    * ``hr@K``: share of examples whose target ranks in the top K;
    * ``ndcg@K``: mean of ``1 / log2(rank + 2)`` over hits (one relevant item, so IDCG = 1);
    * ``mrr@K``: mean of ``1 / (rank + 1)`` over hits (0 beyond K);
    * ``precision@K``: hits / K (one relevant item per list); ``recall@K``: hits / 1;
    * ``user_coverage@K``: share of evaluated users with at least one hit;
    * ``item_coverage@K``: share of the catalogue that appears in at least one top-K list.
    """
    rank = np.asarray(rank_E, np.int64)
    out: dict[str, float] = {f"{prefix}/n_examples": float(len(rank))}
    if len(rank) == 0:
        return out
    users = np.asarray(user_E)
    uniq_users, inv = np.unique(users, return_inverse=True)
    for k in ks:
        hit = rank < k
        out[f"{prefix}/hr@{k}"] = float(hit.mean())
        out[f"{prefix}/ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).mean())
        out[f"{prefix}/mrr@{k}"] = float(np.where(hit, 1.0 / (rank + 1.0), 0.0).mean())
        out[f"{prefix}/precision@{k}"] = float(hit.mean() / k)
        out[f"{prefix}/recall@{k}"] = float(hit.mean())
        user_hit = np.zeros(len(uniq_users), bool)
        np.logical_or.at(user_hit, inv, hit)
        out[f"{prefix}/user_coverage@{k}"] = float(user_hit.mean())
        recommended = np.unique(np.asarray(topk_ExK)[:, :k])
        recommended = recommended[(recommended > 0) & (recommended <= n_items)]
        out[f"{prefix}/item_coverage@{k}"] = float(len(recommended) / n_items)
    return out


def rating_metrics(pred_E: np.ndarray, true_E: np.ndarray, prefix: str) -> dict[str, float]:
    """RMSE and MAE of rating predictions."""
    pred, true = np.asarray(pred_E, np.float64), np.asarray(true_E, np.float64)
    if len(pred) == 0:
        return {}
    err = pred - true
    return {
        f"{prefix}/rmse": float(np.sqrt(np.mean(err**2))),
        f"{prefix}/mae": float(np.mean(np.abs(err))),
    }


def user_topn_metrics(
    topk_ExK: np.ndarray,
    user_E: np.ndarray,
    target_E: np.ndarray,
    ks: tuple[int, ...],
    n_items: int,
    prefix: str,
) -> dict[str, float]:
    """Paper 001's top-N protocol: one list per user against the *set* of items the user
    interacts with in the held-out period (Table 1's precision, recall and coverage).

    Each user's list is the top-N of its earliest held-out example (whose inputs are the
    events before the held-out period only), ``T_u`` the distinct items of all the user's
    held-out examples (items unknown to training count in ``T_u`` and are never hit). Sums
    over users, as in the item-CF literature paper 001 follows:

    * ``topn_precision@N = sum_u |R_u & T_u| / (N * #users)``;
    * ``topn_recall@N = sum_u |R_u & T_u| / sum_u |T_u|``;
    * ``topn_user_coverage@N``: share of users with at least one hit;
    * ``topn_item_coverage@N``: share of the catalogue in at least one user's list.
    """
    users = np.asarray(user_E)
    out: dict[str, float] = {}
    if len(users) == 0:
        return out
    uniq, first = np.unique(users, return_index=True)
    targets = np.asarray(target_E)
    n_users = len(uniq)
    # The distinct (user, item) pairs of the held-out period, item 0 (unknown) kept per event
    # so every unknown interaction counts once in |T_u| (they are distinct unseen items).
    known = targets > 0
    pairs = np.unique(np.stack([users[known], targets[known]], 1), axis=0)
    n_unknown = np.bincount(np.searchsorted(uniq, users[~known]), minlength=n_users)
    set_size = np.bincount(np.searchsorted(uniq, pairs[:, 0]), minlength=n_users) + n_unknown
    lists = np.asarray(topk_ExK)[first]
    for k in ks:
        top = lists[:, :k]
        rows = np.repeat(np.arange(n_users), k)
        cand = np.stack([uniq[rows], top.reshape(-1)], 1)
        # A hit is a listed (user, item) pair among the held-out pairs (sorted by np.unique).
        key_p = pairs[:, 0].astype(np.int64) * (n_items + 2) + pairs[:, 1]
        key_c = cand[:, 0].astype(np.int64) * (n_items + 2) + cand[:, 1]
        pos = np.clip(np.searchsorted(key_p, key_c), 0, max(len(key_p) - 1, 0))
        hit = (len(key_p) > 0) & (key_p[pos] == key_c) & (cand[:, 1] > 0)
        hits_u = np.bincount(rows[hit], minlength=n_users)
        out[f"{prefix}/topn_precision@{k}"] = float(hits_u.sum() / (k * n_users))
        out[f"{prefix}/topn_recall@{k}"] = float(hits_u.sum() / max(set_size.sum(), 1))
        out[f"{prefix}/topn_user_coverage@{k}"] = float(np.mean(hits_u > 0))
        rec = np.unique(top)
        rec = rec[(rec > 0) & (rec <= n_items)]
        out[f"{prefix}/topn_item_coverage@{k}"] = float(len(rec) / n_items)
    out[f"{prefix}/topn_users"] = float(n_users)
    return out
