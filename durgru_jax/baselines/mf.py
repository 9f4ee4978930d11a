"""Biased matrix factorisation for the rating task.

``r(u, i) = mu + b_u + b_i + p_u . q_i`` with ``mu`` the training mean (fixed), trained with
optax (Adam) on the training ratings by minibatch ``MSE + reg * (|p_u|^2 + |q_i|^2 + b_u^2 +
b_i^2)`` (the regulariser of the rows in the batch, averaged per rating, as in Koren's SGD).
Each epoch is one jitted ``lax.scan`` over shuffled fixed-size batches (the last one padded
with zero-weight rows). With ``select_epoch`` the parameters of the epoch with the lowest
validation RMSE are kept (validation only; the test set never decides anything).

Ranking uses the same score over all items: ``p_u . q_i + b_i`` (``mu + b_u`` is constant per
user and changes no ranking). Users without training ratings get ``p_u = 0, b_u = 0``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class MFConfig:
    factors: int = 32  # size of p_u and q_i
    reg: float = 0.1  # L2 weight per rating on the batch's rows (factors and biases)
    lr: float = 5e-3  # Adam learning rate
    epochs: int = 30  # passes over the training ratings
    batch_size: int = 1024  # ratings per step
    init_std: float = 0.1  # std of the normal initialisation of p_u, q_i (biases start at 0)
    select_epoch: bool = True  # keep the epoch with the best validation RMSE
    clip: bool = True  # clip predictions to the training ratings' [min, max]

    def __post_init__(self):
        for key in ("factors", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"config.baseline.mf.{key}={getattr(self, key)} must be >= 1")
        for key in ("reg", "init_std"):
            if getattr(self, key) < 0:
                raise ValueError(f"config.baseline.mf.{key}={getattr(self, key)} must be >= 0")
        if self.lr <= 0:
            raise ValueError(f"config.baseline.mf.lr={self.lr} must be > 0")


@dataclasses.dataclass
class MF:
    mu: float
    bu: np.ndarray  # [n_users]
    bi: np.ndarray  # [n_items + 1] (item 0 = unknown: 0)
    p: np.ndarray  # [n_users, factors]
    q: np.ndarray  # [n_items + 1, factors]
    r_min: float
    r_max: float
    clip: bool
    history: list = dataclasses.field(default_factory=list)  # per epoch: rmse train/valid
    best_epoch: int = -1

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        pred = (
            self.mu
            + self.bu[user]
            + self.bi[item]
            + np.einsum("ef,ef->e", self.p[user], self.q[item])
        ).astype(np.float64)
        return np.clip(pred, self.r_min, self.r_max) if self.clip else pred


def _predict(params, mu, u, i):
    return mu + params["bu"][u] + params["bi"][i] + jnp.sum(params["p"][u] * params["q"][i], -1)


def _loss(params, mu, reg, u, i, r, w):
    err = _predict(params, mu, u, i) - r
    l2 = (
        jnp.sum(params["p"][u] ** 2, -1)
        + jnp.sum(params["q"][i] ** 2, -1)
        + params["bu"][u] ** 2
        + params["bi"][i] ** 2
    )
    n = jnp.maximum(jnp.sum(w), 1.0)
    return jnp.sum(w * (err**2 + reg * l2)) / n


@functools.partial(jax.jit, static_argnames=("lr", "reg"))
def _epoch(params, opt_state, mu, batches, *, lr, reg):
    tx = optax.adam(lr)

    def step(carry, b):
        params, opt_state = carry
        grads = jax.grad(_loss)(params, mu, reg, b["u"], b["i"], b["r"], b["w"])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state


def _rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(true)) ** 2))) if len(true) else 0.0


def fit(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    n_users: int,
    n_items: int,
    cfg: MFConfig,
    seed: int = 0,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> MF:
    """Trains on the given (training) ratings; ``valid = (user, item, rating)`` enables the
    choice of the best epoch."""
    user = np.asarray(user, np.int32)
    item = np.asarray(item, np.int32)
    rating = np.asarray(rating, np.float32)
    if len(rating) == 0:
        raise ValueError("biased MF needs training ratings; the data has none")
    mu = float(rating.mean())
    k_p, k_q = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "bu": jnp.zeros(n_users),
        "bi": jnp.zeros(n_items + 1),
        "p": cfg.init_std * jax.random.normal(k_p, (n_users, cfg.factors)),
        "q": cfg.init_std * jax.random.normal(k_q, (n_items + 1, cfg.factors)),
    }
    tx = optax.adam(cfg.lr)
    opt_state = tx.init(params)
    n = len(rating)
    bs = min(cfg.batch_size, n)
    n_batches = -(-n // bs)
    pad = n_batches * bs - n
    has_train = np.bincount(user, minlength=n_users) > 0
    model = MF(
        mu=mu,
        bu=np.zeros(n_users, np.float32),
        bi=np.zeros(n_items + 1, np.float32),
        p=np.zeros((n_users, cfg.factors), np.float32),
        q=np.zeros((n_items + 1, cfg.factors), np.float32),
        r_min=float(rating.min()),
        r_max=float(rating.max()),
        clip=cfg.clip,
    )
    best = None
    for epoch in range(cfg.epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        perm = np.concatenate([perm, np.zeros(pad, np.int64)])
        w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        batches = {
            "u": user[perm].reshape(n_batches, bs),
            "i": item[perm].reshape(n_batches, bs),
            "r": rating[perm].reshape(n_batches, bs),
            "w": w.reshape(n_batches, bs),
        }
        params, opt_state = _epoch(params, opt_state, mu, batches, lr=cfg.lr, reg=cfg.reg)
        cur = _to_numpy(params, has_train)
        model.bu, model.bi, model.p, model.q = cur
        record = {"epoch": epoch, "train_rmse": _rmse(model.predict(user, item), rating)}
        if valid is not None and len(valid[2]):
            record["valid_rmse"] = _rmse(model.predict(valid[0], valid[1]), valid[2])
        model.history.append(record)
        score = record.get("valid_rmse")
        if not cfg.select_epoch or score is None or best is None or score < best[0]:
            best = (score if score is not None else 0.0, epoch, cur)
    _, model.best_epoch, (model.bu, model.bi, model.p, model.q) = best
    return model


def _to_numpy(params, has_train: np.ndarray):
    bu = np.where(has_train, np.asarray(params["bu"]), 0.0).astype(np.float32)
    p = np.where(has_train[:, None], np.asarray(params["p"]), 0.0).astype(np.float32)
    bi = np.asarray(params["bi"], np.float32).copy()
    q = np.asarray(params["q"], np.float32).copy()
    bi[0] = 0.0
    q[0] = 0.0
    return bu, bi, p, q
