"""Truncated backpropagation through time (``config.train.bptt = k``): each training batch's
windows are cut into chunks of ``k`` steps and the optimizer updates once per chunk, the GRU
state carried from one chunk into the next with its gradient stopped.

``k = 1`` is GRU4Rec's session-parallel training (Hidasi et al. 2016, Section 3.1.1): at every
update each row advances by one event, the state it reached is the next update's starting
state (detached), a row's sequence boundary (``reset``) restarts it from zeros, and the other
rows' targets at the same step are the negatives. What stays of the windows: a row's state
starts from zeros at the first step of each window (`durgru_jax.data.dataset.train_windows`),
where the official code carries it over a whole session of any length.

A row's padding comes only after its last real step (as `train_windows` writes rows), so the
state passed on by a row without a real step in a chunk (zeros, `model.encode`'s ``h_last``)
is never used.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
# (params, chunk, key, h0_BxH) -> (loss, (parts, h_last_BxH)), as `loss.carried_losses`
CarriedLoss = Callable[..., tuple[Array, tuple[dict[str, Array], Array]]]


def chunk_batch(batch: dict[str, Array], k: int) -> dict[str, Array]:
    """``[B, T, ...]`` arrays -> ``[ceil(T / k), B, k, ...]``; the last chunk is padded with
    copies of the last step marked as padding (``mask`` and ``reset`` False), so padded steps
    see finite inputs and add nothing."""
    t = batch["mask"].shape[1]
    n = -(-t // k)

    def cut(name, x):
        if n * k > t:
            widths = [(0, 0), (0, n * k - t)] + [(0, 0)] * (x.ndim - 2)
            x = jnp.pad(x, widths, mode="constant" if name in ("mask", "reset") else "edge")
        return jnp.moveaxis(x.reshape(x.shape[0], n, k, *x.shape[2:]), 1, 0)

    return {name: cut(name, x) for name, x in batch.items()}


def chunked_updates(
    loss_fn: CarriedLoss,
    tx: optax.GradientTransformation,
    params,
    opt_state,
    batch: dict[str, Array],
    k: int,
    hidden_dim: int,
    key: Array,
):
    """One optimizer update per chunk of ``k`` steps of ``batch`` (`chunk_batch`), in order;
    returns ``(params, opt_state, parts)``, ``parts`` the chunks' loss parts averaged with
    weights their numbers of valid steps. Chunk ``i`` draws its randomness from
    ``fold_in(key, i)``; a chunk without a valid step changes nothing."""
    chunks = chunk_batch(batch, k)
    n = chunks["mask"].shape[0]
    h0 = jnp.zeros((batch["mask"].shape[0], hidden_dim), jnp.float32)

    def body(carry, xs):
        params, opt_state, h = carry
        i, chunk = xs
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (parts, h_last)), grads = grad_fn(params, chunk, jax.random.fold_in(key, i), h)
        updates, new_opt_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        n_valid = jnp.sum(chunk["mask"] & (chunk["targets"] > 0))
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(n_valid > 0, new, old),
            (new_params, new_opt_state),
            (params, opt_state),
        )
        h = jax.lax.stop_gradient(h_last).astype(h.dtype)
        return (params, opt_state, h), (parts, n_valid)

    (params, opt_state, _), (parts, n_valid) = jax.lax.scan(
        body, (params, opt_state, h0), (jnp.arange(n), chunks)
    )
    w = n_valid / jnp.maximum(jnp.sum(n_valid), 1)
    return params, opt_state, {name: jnp.sum(v * w) for name, v in parts.items()}
