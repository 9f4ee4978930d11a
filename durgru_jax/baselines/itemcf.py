"""Item-based collaborative filtering with paper 001's IUF similarity.

Similarity (paper 001, eq. 1), from *training* events only::

    w_ij = sum_{u in N(i) & N(j)} 1 / log(1 + |N(u)|)  /  sqrt(|N(i)| |N(j)|)

``N(u)`` is the set of distinct items of user (sequence) ``u``, ``N(i)`` the set of users of
item ``i``. The log is natural (its base scales every ``w_ij`` by one constant, which changes no
ranking). ``iuf=False`` replaces the inverse-user-frequency weight by 1 (plain cosine on binary
data); ``alpha`` generalises the square root to ``|N(i)|^alpha |N(j)|^(1 - alpha)`` (row ``i`` is
the history item, column ``j`` the candidate; 0.5 is eq. 1). The diagonal is 0.

Neighbours (eq. 2): each item ``i`` keeps its ``k`` most similar items (``jax.lax.top_k`` over
blocks of rows, the selection that the paper does with a heap); items of similarity 0 are never
neighbours. A user with visible history ``H`` scores candidate ``j`` by
``sum_{i in H, j in topk(i)} w_ij`` (``normalize="max"`` first divides each row by its largest
weight, the "ItemCF-Norm" variant).

Time window ``m`` (eq. 4, ``P(v_n | v_{n-m}, ..., v_{n-1}, v_{n+1}, ..., v_{n+m})``; "when we
calculate the neighbouring items of an item we only refer to the items within the last 2m time
period"). Our reading: the ``v`` are a user's events in time order, so ``m`` counts *events*
(the indices of eq. 4 are event positions; the paper gives no unit in seconds). With ``m > 0``:

* similarity: user ``u`` counts towards ``w_ij`` only if ``u`` has an event on ``i`` and one on
  ``j`` at most ``m`` positions apart in ``u``'s training sequence (the ``2m`` events around
  ``v_n``), instead of anywhere in the history. ``|N(u)|``, ``|N(i)|`` are unchanged;
* scoring: only the last ``m`` visible events of the user (``v_{n-m}..v_{n-1}``) are the
  history ``H``; the ``m`` events *after* ``v_n`` are the future at prediction time and unseen.

Rating prediction (data with ratings): the classic weighted average
``r(u, j) = sum_{i in H} w_ij r_ui / sum_{i in H} |w_ij|`` over the same pruned weights, the
latest rating of ``i`` when ``u`` rated it twice; the user's mean visible rating when no
history item has ``j`` as a neighbour, the global training mean for a user without ratings.

Memory: the co-occurrences are computed ``block_rows`` items at a time (a dense
``block_rows x n_items`` block, at most 2^25 floats, then its top-k), so fitting needs
``O(block_rows x n_items + n_items x k)`` besides the sparse user-item (or windowed
co-occurrence) matrix; the pruned similarity is sparse (``k`` per row). Scoring is a sparse
product ``history [B, n_items] x W`` giving a dense ``[B, n_items + 1]`` score block per
evaluation batch (``eval.batch_size`` bounds it: 512 x 55k items is 112 MB), handed to the
shared ranker as ``u = I_B, v = scores`` (an exact copy: one product by 1, the rest by 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

NORMALIZE = ("none", "max")


@dataclasses.dataclass(frozen=True)
class ItemCFConfig:
    n_neighbors: int = 20  # k of eq. 2: neighbours kept per item
    time_window_m: int = 0  # m of eq. 4 in events (0: off)
    iuf: bool = True  # eq. 1's 1 / log(1 + |N(u)|) user weight (False: 1)
    alpha: float = 0.5  # denominator |N(i)|^alpha |N(j)|^(1 - alpha) (0.5: eq. 1)
    normalize: str = "none"  # "none" | "max": divide each item's neighbour weights by the max
    select_k: tuple = ()  # candidate k values chosen on validation (empty: use n_neighbors)
    select_metric: str = "valid/ndcg@10"  # validation metric of that choice (maximised)
    block_rows: int = 1024  # similarity rows computed at once (memory: rows x n_items floats)

    def __post_init__(self):
        if self.n_neighbors < 1:
            raise ValueError(f"config.baseline.itemcf.n_neighbors={self.n_neighbors} must be >= 1")
        if self.time_window_m < 0:
            raise ValueError(f"config.baseline.itemcf.time_window_m={self.time_window_m} < 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"config.baseline.itemcf.alpha={self.alpha} must be in [0, 1]")
        if self.normalize not in NORMALIZE:
            raise ValueError(
                f"config.baseline.itemcf.normalize={self.normalize!r}: use one of {NORMALIZE}"
            )
        if any(int(k) < 1 for k in self.select_k):
            raise ValueError(f"config.baseline.itemcf.select_k={self.select_k}: each k >= 1")
        if self.block_rows < 1:
            raise ValueError(f"config.baseline.itemcf.block_rows={self.block_rows} must be >= 1")


@dataclasses.dataclass
class ItemCF:
    """A fitted model: per item (row ``0..n_items``, row 0 = padding, empty) its neighbours by
    decreasing similarity (``nbr_idx``, ``nbr_val``; weight 0 = no neighbour)."""

    n_items: int
    nbr_idx: np.ndarray  # [n_items + 1, kmax] int32
    nbr_val: np.ndarray  # [n_items + 1, kmax] float32, sorted in decreasing order
    cfg: ItemCFConfig

    def matrix(self, k: int | None = None) -> sp.csr_matrix:
        """The pruned similarity ``W[i, j]`` (``j`` among the ``k`` first neighbours of ``i``)
        as a sparse ``[n_items + 1, n_items + 1]`` matrix, row-normalised if configured."""
        k = self.nbr_idx.shape[1] if k is None else min(k, self.nbr_idx.shape[1])
        val = self.nbr_val[:, :k].astype(np.float32)
        if self.cfg.normalize == "max":
            top = val[:, :1]
            val = np.divide(val, top, out=np.zeros_like(val), where=top > 0)
        n = self.n_items + 1
        rows = np.repeat(np.arange(n), k)
        keep = val.ravel() > 0
        w = sp.csr_matrix(
            (val.ravel()[keep], (rows[keep], self.nbr_idx[:, :k].ravel()[keep])), shape=(n, n)
        )
        w.sum_duplicates()
        return w

    def dense(self, k: int | None = None) -> np.ndarray:
        """`matrix` as a dense array (small catalogues, tests)."""
        return self.matrix(k).toarray()


def user_item_matrix(user: np.ndarray, item: np.ndarray, n_users: int, n_items: int):
    """Binary CSR ``[n_users, n_items + 1]``: 1 where the user has an event on the item."""
    x = sp.csr_matrix(
        (np.ones(len(user), np.float64), (np.asarray(user), np.asarray(item))),
        shape=(n_users, n_items + 1),
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _user_weights(x, iuf: bool) -> np.ndarray:
    n_u = np.diff(x.indptr).astype(np.float64)
    if not iuf:
        return np.ones_like(n_u)
    with np.errstate(divide="ignore"):
        return np.where(n_u > 0, 1.0 / np.log1p(n_u), 0.0)


def windowed_cooccurrence(
    user: np.ndarray,
    item: np.ndarray,
    d_u: np.ndarray,
    n_items: int,
    m: int,
    chunk_pairs: int = 2_000_000,
) -> sp.csr_matrix:
    """``C[i, j] = sum_u d_u [u has events on i and j at most m positions apart]`` (``i != j``),
    from events sorted by (user, time); each user counts once per pair of items."""
    n = n_items + 1
    n_ev = len(user)
    total = sp.csr_matrix((n, n), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if n_ev else np.zeros(0, int)
    bounds = np.r_[starts, n_ev]
    # Users in chunks of about ``chunk_pairs`` candidate pairs, so the pair lists stay bounded.
    per_chunk = max(1, chunk_pairs // max(1, 2 * m))
    u_lo = 0
    while u_lo < len(starts):
        u_hi = int(np.searchsorted(bounds, bounds[u_lo] + per_chunk, side="right")) - 1
        u_hi = min(max(u_hi, u_lo + 1), len(starts))
        lo, hi = bounds[u_lo], bounds[u_hi]
        us, it = user[lo:hi], item[lo:hi].astype(np.int64)
        local = np.repeat(np.arange(u_hi - u_lo), np.diff(bounds[u_lo : u_hi + 1]))
        keys = []
        for d in range(1, m + 1):
            same = us[d:] == us[:-d]
            a, b, loc = it[:-d][same], it[d:][same], local[d:][same]
            keep = a != b
            a, b, loc = a[keep], b[keep], loc[keep]
            keys.append((loc * n + a) * n + b)
            keys.append((loc * n + b) * n + a)
        if keys:
            k = np.unique(np.concatenate(keys))
            loc, rest = np.divmod(k, n * n)
            a, b = np.divmod(rest, n)
            w = d_u[user[starts[u_lo:u_hi]]]  # the weight of each chunk-local user
            total = total + sp.csr_matrix((w[loc], (a, b)), shape=(n, n))
        u_lo = u_hi
    return total


def similarity_blocks(
    user: np.ndarray,
    item: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    iuf: bool = True,
    alpha: float = 0.5,
    window: int = 0,
    block_rows: int = 1024,
):
    """Yields ``(row_start, W_block)``: rows of eq. 1's similarity, dense ``[rows, n_items+1]``
    (row/column 0 = padding, all 0; diagonal 0). Events must be sorted by (user, time) when
    ``window > 0``."""
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    x = user_item_matrix(user, item, n_users, n_items)
    d_u = _user_weights(x, iuf)
    n_i = np.diff(x.tocsc().indptr).astype(np.float64)  # |N(i)|
    pow_row, pow_col = n_i**alpha, n_i ** (1.0 - alpha)
    if window > 0:
        cooc = windowed_cooccurrence(user, item, d_u, n_items, window)
        xc = None
    else:
        cooc = None
        xc = x.tocsc()
        xd = sp.diags(d_u) @ x
    n = n_items + 1
    block_rows = max(1, min(block_rows, 2**25 // n))
    for lo in range(0, n, block_rows):
        hi = min(lo + block_rows, n)
        if cooc is not None:
            c = cooc[lo:hi].toarray()
        else:
            c = (xc[:, lo:hi].T @ xd).toarray()
        den = pow_row[lo:hi, None] * pow_col[None, :]
        w = np.divide(c, den, out=np.zeros_like(c), where=den > 0)
        w[np.arange(hi - lo), np.arange(lo, hi)] = 0.0
        w[:, 0] = 0.0
        yield lo, w


def similarity(user, item, n_users: int, n_items: int, **kw) -> np.ndarray:
    """The full unpruned similarity as one dense array (small catalogues, tests)."""
    return np.concatenate([w for _, w in similarity_blocks(user, item, n_users, n_items, **kw)])


def fit(
    user: np.ndarray, item: np.ndarray, n_users: int, n_items: int, cfg: ItemCFConfig
) -> ItemCF:
    """Fits the neighbour lists on the given (training) events, sorted by (user, time)."""
    kmax = max([cfg.n_neighbors, *(int(k) for k in cfg.select_k)])
    kmax = max(1, min(kmax, n_items))
    n = n_items + 1
    nbr_idx = np.zeros((n, kmax), np.int32)
    nbr_val = np.zeros((n, kmax), np.float32)
    top_k = jax.jit(jax.lax.top_k, static_argnums=1)
    for lo, w in similarity_blocks(
        user,
        item,
        n_users,
        n_items,
        iuf=cfg.iuf,
        alpha=cfg.alpha,
        window=cfg.time_window_m,
        block_rows=cfg.block_rows,
    ):
        val, idx = top_k(jnp.asarray(w, jnp.float32), kmax)
        val, idx = np.asarray(val), np.asarray(idx)
        nbr_val[lo : lo + len(w)] = np.where(val > 0, val, 0.0)
        nbr_idx[lo : lo + len(w)] = np.where(val > 0, idx, 0)
    return ItemCF(n_items=n_items, nbr_idx=nbr_idx, nbr_val=nbr_val, cfg=cfg)


def history_rows(
    hist_offsets: np.ndarray, rows: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Start/end into the history CSR of each example in ``rows``: the whole visible history,
    or its last ``window`` events (the CSR is in time order)."""
    s, e = hist_offsets[rows], hist_offsets[rows + 1]
    if window > 0:
        s = np.maximum(s, e - window)
    return s, e


def history_matrix(
    hist_offsets: np.ndarray,
    hist_items: np.ndarray,
    rows: np.ndarray,
    n_items: int,
    window: int,
    batch: int | None = None,
) -> sp.csr_matrix:
    """Binary sparse ``[batch, n_items + 1]`` indicator of each example's (windowed) history
    items; rows past ``len(rows)`` (padding) are empty. Item 0 (unknown) is never set."""
    s, e = history_rows(hist_offsets, rows, window)
    r = np.repeat(np.arange(len(rows)), e - s)
    pos = np.concatenate([np.arange(a, b) for a, b in zip(s, e, strict=True)] + [np.zeros(0, int)])
    items = hist_items[pos]
    keep = items > 0
    h = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (r[keep], items[keep])),
        shape=(batch or len(rows), n_items + 1),
    )
    h.sum_duplicates()
    h.data[:] = 1.0
    return h


def scores(w: sp.csr_matrix, h: sp.csr_matrix) -> np.ndarray:
    """``[batch, n_items + 1]`` scores ``sum_{i in H} W[i, j]`` (history ``h``, weights ``w``)."""
    return np.asarray((h @ w).toarray(), np.float32)


def predict_ratings(
    w: sp.csr_matrix,
    hist_offsets: np.ndarray,
    hist_items: np.ndarray,
    hist_ratings: np.ndarray,
    rows: np.ndarray,
    targets: np.ndarray,
    window: int,
    global_mean: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted-average rating of ``targets`` for the examples ``rows``; also says which
    predictions came from at least one neighbour (the others are fallbacks)."""
    s, e = history_rows(hist_offsets, rows, window)
    pred = np.full(len(rows), global_mean, np.float64)
    from_nbrs = np.zeros(len(rows), bool)
    for r in range(len(rows)):
        items, ratings = hist_items[s[r] : e[r]], hist_ratings[s[r] : e[r]]
        if len(items) == 0:
            continue
        latest = {}
        for i, x in zip(items.tolist(), ratings.tolist(), strict=True):
            latest[i] = x  # time order: the last rating wins
        it = np.fromiter(latest.keys(), np.int64, len(latest))
        rt = np.fromiter(latest.values(), np.float64, len(latest))
        wt = np.asarray(w[it, int(targets[r])].todense(), np.float64).ravel()
        den = np.abs(wt).sum()
        if den > 0 and targets[r] > 0:
            pred[r] = float((wt * rt).sum() / den)
            from_nbrs[r] = True
        else:
            pred[r] = float(rt.mean())
    return pred, from_nbrs
