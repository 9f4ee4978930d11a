"""GRU4Rec's optimiser as an optax transformation: `adagrad_momentum`, Adagrad with momentum
on its update (the ``IndexedAdagradM`` of the official GRU4Rec code, ``gru4rec_pytorch.py``).

Per entry, with gradient ``g``, learning rate ``lr`` and ``eps = 1e-6``:
``acc += g^2``; ``v = momentum * v - lr * g / sqrt(acc + eps)``; ``p += v``
(``eps`` inside the square root, the accumulator updated before it is used).

The official code keeps its item tables (the item embeddings and the output bias) as sparse
embeddings and updates only the rows in the mini-batch: a row the batch does not touch keeps its
momentum and does not move. `adagrad_momentum` does the same for the leaves of `ITEM_TABLES`: a
row whose gradient is all zero is left alone; every other leaf is dense, as in the official code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# Item tables of `durgru_jax.model.init_params` -> their item axis (updated row by row).
ITEM_TABLES = {("item_emb",): 0, ("out", "w"): 1, ("out", "b"): 0}


class AdagradMomentumState(NamedTuple):
    count: jax.Array  # updates made (the schedule's step)
    acc: optax.Updates  # sum of squared gradients
    mom: optax.Updates  # the last parameter change v


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def adagrad_momentum(
    learning_rate: float | Callable[[jax.Array], jax.Array],
    momentum: float = 0.0,
    eps: float = 1e-6,
    item_tables: dict[tuple[str, ...], int] | None = None,
) -> optax.GradientTransformation:
    """Adagrad whose scaled step feeds a momentum (GRU4Rec's ``IndexedAdagradM``), see the
    module docstring. ``learning_rate`` is a number or a schedule of the update count;
    ``item_tables`` maps a leaf's path to its item axis (default `ITEM_TABLES`)."""
    tables = ITEM_TABLES if item_tables is None else item_tables

    def init(params):
        acc, mom = (jax.tree.map(jnp.zeros_like, params) for _ in range(2))  # two buffers
        return AdagradMomentumState(jnp.zeros([], jnp.int32), acc, mom)

    def update(grads, state, params=None):
        del params
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def leaf(path, g, acc, mom):
            acc = acc + g * g
            new_mom = momentum * mom - lr * g / jnp.sqrt(acc + eps)
            axis = tables.get(_names(path))
            if axis is None:
                return acc, new_mom, new_mom
            other = tuple(a for a in range(g.ndim) if a != axis)
            touched = jnp.expand_dims(jnp.any(g != 0, axis=other), other)
            return acc, jnp.where(touched, new_mom, mom), jnp.where(touched, new_mom, 0.0)

        out = jax.tree_util.tree_map_with_path(leaf, grads, state.acc, state.mom)
        pick = lambda i: jax.tree.map(lambda _, t: t[i], grads, out)  # noqa: E731
        count = optax.safe_int32_increment(state.count)
        return pick(2), AdagradMomentumState(count, pick(0), pick(1))

    return optax.GradientTransformation(init, update)
