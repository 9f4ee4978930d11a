"""Small layers shared by the encoders of `durgru_jax.model`, `durgru_jax.attention` and
`durgru_jax.ctr.model`: dropout, layer normalisation and the output of each row's last real
step.

Shape legend: B rows, T time steps, H hidden size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def dropout(x: Array, rate: float, key: Array | None) -> Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by
    ``1 / (1 - rate)``. ``key=None`` (evaluation) or ``rate <= 0`` is the identity."""
    if key is None or rate <= 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def layer_norm(x: Array, g: Array, b: Array, eps: float = 1e-6) -> Array:
    """Layer normalisation over the last axis with gain ``g`` and bias ``b``."""
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def last_step(mask_BxT: Array) -> Array:
    """``[B]``: the index of each row's last real step (-1 for an empty row)."""
    t_1xT = jnp.arange(mask_BxT.shape[1])[None, :]
    return jnp.max(jnp.where(mask_BxT, t_1xT, -1), axis=1)


def last_output(hs_BxTxH: Array, mask_BxT: Array) -> Array:
    """``[B, H]``: the output at each row's last real step (zeros for an empty row), the
    representation that predicts the row's next event."""
    last = last_step(mask_BxT)
    h = jnp.take_along_axis(hs_BxTxH, jnp.maximum(last, 0)[:, None, None], axis=1)[:, 0]
    return jnp.where((last >= 0)[:, None], h, 0.0)
