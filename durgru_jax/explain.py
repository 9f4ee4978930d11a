"""Why a user got a recommendation: per-event diagnostics of the recurrent model.

```python
from durgru_jax.recommend import Recommender

rec = Recommender.load("runs/default")
ex = rec.explain(events, items=[42], user="u1")  # events: one user's, as for recommend()
ex.events  # one row per event the model sees (the last max_len), oldest first
ex.attribution[:, 0]  # score of item 42 without that event minus with the full history
```

For every event of the visible history (`recommend_inputs`: the last ``max_len`` events of a
known item, in time order) an `Explanation` gives:

* ``duration_factor``: alpha_t of eq. (9) as the model applied it (0.5 x ``duration_scale``
  when the event has no duration or the user no statistics; 1 with ``duration_mode="none"``);
* ``update_gate``: the mean over hidden units of the update gate at that step: for the GRU
  ``z_t`` of eq. (11) as applied (after the factor with ``duration_mode="gate"``: the share of
  new knowledge), for the aGRU ``z_t`` of eq. (7) (the share of the *old* state, before the
  factor), `cells.gru_step_gates` / `cells.agru_step_gates` rerun over the history;
* ``relevance`` (aGRU with ``model.relevance``): the relevance weight a_t of the context
  ``C_A = a_t C_S W_s`` (see `cells.agru_step`);
* occlusion: ``attribution[e, j]`` is the score of ``items[j]`` (as `Recommender.recommend`
  gives it: the logit of eq. (12), with ``model.repeat_head`` the mixture's ``log p``, with
  ``model.seen_bias`` plus the offset where the item is in the window) for the history
  without event ``e`` minus the full history's (negative: the event supports the item), and
  ``rank_change[e, j]`` the item's rank without it minus the full history's (positive: the item
  falls). Each occluded history goes through the same input builder as the full one
  (`recommend_inputs.from_events`: an older event may enter the ``max_len`` window, time-gap
  contexts are recomputed), with the full history's duration statistics so that the other
  events keep their factors; all of them are encoded in ONE batched call. Ranks are among the
  catalogue items outside the full history's seen items (what `Recommender.recommend`
  excludes), 1 = best.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from durgru_jax import cells
from durgru_jax import model as model_lib
from durgru_jax import recommend_inputs as inputs
from durgru_jax.config import ModelConfig
from durgru_jax.evaluate import Factors, dense_scores

NOISE = "_is_noise"  # ground truth of the synthetic generator, kept when the events have it


@dataclasses.dataclass(frozen=True, eq=False)
class Explanation:
    """One user's explanation of ``items`` (original ids); arrays are ``[n_events, n_items]``."""

    user: Any
    items: tuple
    scores: np.ndarray  # [K] logits with the full history
    ranks: np.ndarray  # [K] 1 = best, seen items excluded
    events: pd.DataFrame  # item, timestamp, duration, duration_factor, update_gate, relevance
    attribution: np.ndarray  # score without the event minus the full history's
    rank_change: np.ndarray  # rank without the event minus the full history's

    def to_dict(self) -> dict:
        """JSON-ready: per item its score, rank and per-event attribution / rank change."""
        ev = self.events
        rows = []
        for e in range(len(ev)):
            row = {c: _plain(ev[c].iloc[e]) for c in ev.columns}
            rows.append(row)
        recs = [
            {
                "item": _plain(it),
                "score": float(self.scores[j]),
                "rank": int(self.ranks[j]),
                "attribution": [float(x) for x in self.attribution[:, j]],
                "rank_change": [int(x) for x in self.rank_change[:, j]],
            }
            for j, it in enumerate(self.items)
        ]
        return {"user": _plain(self.user), "events": rows, "recommendations": recs}


def _plain(x):
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


# ---------------------------------------------------------------------- per-step gates


@functools.partial(jax.jit, static_argnames=("cfg",))
def step_diagnostics(params, cfg: ModelConfig, batch) -> dict[str, jax.Array]:
    """``{"alpha", "update_gate", "relevance"}``, each ``[B, T]``: the duration factor (eq. 9),
    the mean update gate and the aGRU's relevance weight at every step, by rerunning the cell's
    scan of `model.encode` (evaluation: no dropout; with ``duration_delay=1`` the carried
    state's pass, which uses the event's own factor). Padded steps hold zeros."""
    mask, reset = batch["mask"], batch["reset"]
    p = params["cell"]
    x = params["item_emb"][batch["items"]] * mask[..., None]
    mode = cfg.duration_mode
    alpha = model_lib.duration_alpha(cfg, batch, x.dtype)
    if cfg.cell == "gru":
        gap = batch["tr_ctx"] if cfg.gap_input else None  # model.gap_input's bucket rows
        dev = model_lib.rating_deviation(params, batch) if cfg.rating_input else None
        xs = (cells.gru_inputs(p, x, alpha, mode, gap, dev), alpha)

        def gates(h, xp, a):
            h_new, z = cells.gru_step_gates(p, h, xp, a, mode)
            return h_new, z, jnp.ones(h.shape[:1], h.dtype)
    else:
        xc, xz, s, sv = cells.agru_inputs(
            p, x, alpha, batch["in_ctx"], mask, reset, mode, cfg.relevance
        )
        xs = (xc, xz, s, sv, batch["tr_ctx"], alpha)

        def gates(h, *xt):
            return cells.agru_step_gates(p, h, *xt, mode, cfg.relevance)

    def body(h, inp):
        m, r, *xt = inp
        h = jnp.where(r[:, None], jnp.zeros_like(h), h)
        h_new, z, a = gates(h, *xt)
        zm = jnp.mean(z[:, : h.shape[1]], axis=-1)  # (the reset-gate ablation's z has 2H)
        return jnp.where(m[:, None], h_new, h), (jnp.where(m, zm, 0.0), jnp.where(m, a, 0.0))

    tm = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    h0 = jnp.zeros((mask.shape[0], cfg.hidden_dim), x.dtype)
    _, (z_TxB, a_TxB) = jax.lax.scan(body, h0, (tm(mask), tm(reset)) + tuple(map(tm, xs)))
    return {"alpha": alpha * mask, "update_gate": tm(z_TxB), "relevance": tm(a_TxB)}


# ---------------------------------------------------------------------- occlusion


def _visible_rows(rec, frame: pd.DataFrame, ex_row: dict[str, np.ndarray]) -> np.ndarray:
    """Positions in ``frame`` of the events the example row holds, oldest first (the known
    items' events in time order, the last ``mask.sum()`` of them)."""
    order = np.argsort(frame["timestamp"].to_numpy(np.float64), kind="stable")
    known = rec._internal(frame["item"].to_numpy()[order]) > 0
    n = int(ex_row["mask"].sum())
    rows = order[known][-n:] if n else order[:0]
    got = ex_row["items"][ex_row["mask"]]
    if len(rows) != n or not np.array_equal(rec._internal(frame["item"].to_numpy()[rows]), got):
        raise ValueError(
            "explain: the model's inputs are not the last events of the history in time order "
            "(a run that splits sessions or drops repeats is not supported)"
        )
    return rows


def _occluded_examples(rec, frame: pd.DataFrame, rows: np.ndarray, full: dict) -> dict:
    """``[len(rows), max_len]`` inputs: the history without ``rows[e]`` in row ``e``, built by
    `recommend_inputs.from_events`, with the full history's duration statistics. A history
    left without events is an empty row (the model's state before any event)."""
    keep = np.ones((len(rows), len(frame)), bool)
    keep[np.arange(len(rows)), rows] = False
    which, pos = np.nonzero(keep)  # row-major: each occluded history's events in order
    ex = {k: np.zeros((len(rows),) + full[k].shape[1:], full[k].dtype) for k in full}
    if len(pos):
        ui = inputs.from_events(rec.artifacts, frame.iloc[pos].assign(user=which), False)
        at = ui.users.astype(np.int64)  # each example's occluded event
        for k in inputs.MODEL_INPUTS:
            ex[k][at] = ui.examples[k]
    for k in ("dur_mean", "dur_std", "dur_user_ok"):
        ex[k] = np.repeat(full[k][:1], len(rows), axis=0)
    return ex


def _scores_and_ranks(rec, batch, items_K, seen_N):
    """Scores of ``items`` for every row (what `Recommender.recommend` returns: the logits of
    eq. (12), the repeat-aware mixture's ``log p``, or the seen-item offset's) and their rank
    among the unseen catalogue items."""
    f = Factors(*rec._scorer.factors(np.arange(len(batch["items"])), batch))
    all_s = dense_scores(f)
    s = all_s[:, items_K]
    rankable = (~seen_N).at[0].set(False)
    above = (all_s[:, None, :] > s[:, :, None]) & rankable[None, None, :]
    return s, 1 + jnp.sum(above, axis=-1)


def _pad_rows(ex: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Rows padded with empty histories to ``n`` (fewer distinct shapes to compile)."""
    return {
        k: np.concatenate([a, np.zeros((n - len(a),) + a.shape[1:], a.dtype)])
        for k, a in ex.items()
    }


def explain(rec, events, items, user=None) -> Explanation:
    """Explains ``items`` (original ids, e.g. the top of `Recommender.recommend`) for ONE
    user's ``events`` (as `Recommender.recommend` takes them); see the module docstring."""
    cfg = rec.rc.model
    if cfg.cell not in ("gru", "agru"):
        raise ValueError(f"explain: needs a recurrent model, got cell={cfg.cell!r}")
    frame, who = rec._one_user(events, user)
    ui = rec._user_inputs(frame, who)
    if ui is None or not ui.has_input[0]:
        raise ValueError("explain: no event of an item known to the run (nothing to explain)")
    ids = rec._internal(items)
    if (ids <= 0).any():
        raise ValueError(f"explain: items unknown to the run: {list(np.asarray(items)[ids <= 0])}")
    full = {k: ui.examples[k][:1] for k in inputs.MODEL_INPUTS}
    rows = _visible_rows(rec, frame, {k: full[k][0] for k in ("items", "mask")})
    occ = _occluded_examples(rec, frame, rows, full)
    batch = {k: np.concatenate([full[k], occ[k]]) for k in full}
    size = max(8, 1 << (len(rows)).bit_length())  # rows + 1, rounded up to a power of two
    seen = np.zeros(rec.n_items + 1, bool)
    seen[ui.examples["hist_items"]] = True  # (CSR of the one example: all of it)
    s, r = _scores_and_ranks(rec, _pad_rows(batch, size), jnp.asarray(ids), jnp.asarray(seen))
    s, r = np.asarray(s)[: len(rows) + 1], np.asarray(r)[: len(rows) + 1]
    diag = jax.tree.map(np.asarray, step_diagnostics(rec.params, cfg, full))
    m = full["mask"][0]
    table = {
        "item": frame["item"].to_numpy()[rows],
        "timestamp": frame["timestamp"].to_numpy()[rows],
        "duration": (
            frame["duration"].to_numpy(np.float64)[rows]
            if "duration" in frame.columns
            else np.full(len(rows), np.nan)
        ),
        "duration_factor": diag["alpha"][0][m],
        "update_gate": diag["update_gate"][0][m],
        "relevance": (
            diag["relevance"][0][m]
            if cfg.cell == "agru" and cfg.relevance
            else np.full(len(rows), np.nan)
        ),
    }
    if NOISE in frame.columns:
        table["is_noise"] = frame[NOISE].to_numpy(bool)[rows]
    return Explanation(
        user=who,
        items=tuple(rec.item_ids[ids - 1].tolist()),
        scores=s[0],
        ranks=r[0],
        events=pd.DataFrame(table),
        attribution=s[1:] - s[:1],
        rank_change=r[1:] - r[:1],
    )


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the ``positive`` labels (Mann-Whitney U; ties count half)."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"roc_auc: needs both classes, got {n_pos} positives, {n_neg} negatives")
    ranks = pd.Series(np.asarray(score, np.float64)).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
