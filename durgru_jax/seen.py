"""Seen-item offset (``model.seen_bias``): one learned score offset ``b`` for the items the user
has already consumed in the input window.

At step t, an item among the inputs ``x_s`` (``s <= t``, real events of t's segment) scores
``l_i + b`` instead of eq. (12)'s logit ``l_i``; every other item keeps ``l_i``, and the softmax
stays over the whole catalogue. ``b < 0`` learns that users do not come back to an item
(MovieLens: each movie is rated once), ``b > 0`` that they do. It is the one-parameter form of
RepeatNet's choice between re-consuming and exploring, whose explore decoder gives the
session's items no mass at all (``b -> -inf``); `durgru_jax.repeat` is the full mixture.

It starts at ``b = 0`` (the plain model). With ``eval.exclude_history`` the evaluator removes
the user's history anyway, so the offset can change a ranking only where seen items stay
rankable (GRU4Rec's protocol, ``configs/ml1m.py:gru4rec``); it still changes training there,
since the softmax no longer needs the state to push the seen items down (MovieLens
leave-one-out gains from it too). Shape legend: B rows, T time steps, M = B x T flattened
steps.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from durgru_jax import attention

Array = jax.Array


def init_params() -> dict[str, Array]:
    """``b []``: the offset, zero at the start."""
    return {"b": jnp.zeros(())}


def first_steps(batch: dict[str, Array]) -> Array:
    """``[B, T]``: step s is a real event whose item does not occur at an earlier step of its
    segment (so that each seen item gets the offset once per step)."""
    items, allowed = batch["items"], attention.allowed_steps(batch)
    t = items.shape[1]
    earlier_TxT = jnp.arange(t)[:, None] > jnp.arange(t)[None, :]
    same = items[:, :, None] == items[:, None, :]
    dup = jnp.any(allowed & earlier_TxT[None] & same, axis=2)
    return batch["mask"] & ~dup


def train_ids(batch: dict[str, Array]) -> Array:
    """``[M, T]``: for each step t (rows of the flattened ``B x T``), the ids of the items seen
    at steps ``s <= t`` of its segment, each once; 0 elsewhere (id 0 never scores)."""
    items = batch["items"]
    seen = attention.allowed_steps(batch) & first_steps(batch)[:, None, :]
    ids_BxTxT = jnp.where(seen, items[:, None, :], 0)
    b, t = items.shape
    return ids_BxTxT.reshape(b * t, t)


def eval_scores(
    params: dict, batch: dict[str, Array], l_window_BxT: Array
) -> tuple[Array, Array, Array]:
    """The evaluator's scores after each row's last real step, as a per-row offset and a
    sparse part (`evaluate.Factors`): ``(0, items_BxT, l_window + b)``, the items of the steps
    that step may use (0 elsewhere); ``l_window`` holds the logits of ``batch["items"]``."""
    allowed_BxT = attention.allowed_at_last(batch)
    items = jnp.where(allowed_BxT, batch["items"], 0)
    scores = jnp.where(allowed_BxT, l_window_BxT + params["seen"]["b"], -jnp.inf)
    return jnp.zeros(items.shape[:1], scores.dtype), items, scores
