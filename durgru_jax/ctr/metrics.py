"""Click-prediction metrics: exact AUC, log loss, and RMSE/MAE of the predicted probability.

RMSE and MAE are what paper 000 reports on Criteo (its Table 3). Here they are computed on
the predicted click *probability* against the 0/1 label, so they lie in [0, 1] and a
constant prediction of the click rate p already scores RMSE ``sqrt(p (1 - p))`` (about 0.44 on
Criteo, p ~ 0.26). The paper's 0.7257 RMSE cannot be an error of probabilities against 0/1
labels (it exceeds that of predicting 0.5 everywhere, 0.5); the paper does not say what
it was computed on, so compare our numbers with each other and with AUC/log loss, not with
its table.
"""

from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney U) with tied scores counted as half; NaN when only one
    class is present."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    # Average 1-based rank of each run of equal scores.
    bounds = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(s)]])
    avg_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(s), np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def ctr_metrics(labels: np.ndarray, probs: np.ndarray, prefix: str, eps: float = 1e-7) -> dict:
    """``{prefix}/auc``, ``/logloss`` (probabilities clipped to ``[eps, 1 - eps]``),
    ``/rmse``, ``/mae`` (of the probability against the 0/1 label), ``/n`` and ``/click_rate``,
    ``/mean_prediction``."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probs, np.float64).ravel()
    if len(y) == 0:
        return {f"{prefix}/n": 0}
    pc = np.clip(p, eps, 1 - eps)
    err = p - y
    return {
        f"{prefix}/auc": auc(y, p),
        f"{prefix}/logloss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        f"{prefix}/rmse": float(np.sqrt(np.mean(err**2))),
        f"{prefix}/mae": float(np.mean(np.abs(err))),
        f"{prefix}/n": len(y),
        f"{prefix}/click_rate": float(y.mean()),
        f"{prefix}/mean_prediction": float(p.mean()),
    }
