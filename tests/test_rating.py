"""The rating head's user offset: hand-computed values, causality, and the data it reads.

``r = mu + b_i + w_u * offset + <h W_r, p_i>`` where ``offset`` is the user's shrunk mean
deviation from ``mu`` over the ratings already given (``model.user_rating_offset``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from durgru_jax import model as model_lib
from durgru_jax.data.dataset import (
    TRAIN,
    PrepConfig,
    eval_examples,
    prepare,
    train_rating_mean,
    train_windows,
)

SHRINK = 5.0  # model._RATING_SHRINK


def _params(mu: float) -> dict:
    return {"rating": {"mu": jnp.asarray(mu, jnp.float32)}}


def _batch(rating_in, ok, mask, reset) -> dict:
    return {
        "rating_in": jnp.asarray(rating_in, jnp.float32),
        "rating_in_ok": jnp.asarray(ok, bool),
        "mask": jnp.asarray(mask, bool),
        "reset": jnp.asarray(reset, bool),
    }


def test_user_offset_by_hand_with_a_reset_and_a_missing_rating():
    # Row 0: two sequences packed (reset at 3); the rating at step 1 is unknown.
    # Row 1: padding after step 1.
    batch = _batch(
        rating_in=[[5.0, 9.0, 1.0, 4.0, 2.0], [3.0, 5.0, 0.0, 0.0, 0.0]],
        ok=[[1, 0, 1, 1, 1], [1, 1, 0, 0, 0]],
        mask=[[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]],
        reset=[[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]],
    )
    mu = 3.0
    got = np.asarray(model_lib.user_rating_offset(_params(mu), batch))
    want = np.array(
        [
            [2 / 6, 2 / 6, (2 - 2) / 7, 1 / 6, (1 - 1) / 7],
            [0 / 6, 2 / 7, 2 / 7, 2 / 7, 2 / 7],
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_user_offset_is_causal():
    rng = np.random.default_rng(0)
    t = 7
    batch = _batch(
        rating_in=rng.integers(1, 6, (2, t)).astype(np.float32),
        ok=np.ones((2, t)),
        mask=np.ones((2, t)),
        reset=np.eye(1, t, 0, dtype=bool).repeat(2, 0) | (np.arange(t) == 4)[None],
    )

    def offsets(r):
        return model_lib.user_rating_offset(_params(3.5), batch | {"rating_in": r})

    jac = np.asarray(jax.jacobian(offsets)(batch["rating_in"]))  # [B, T, B, T]
    for b in range(2):
        for step in range(t):
            later = jac[b, step, b, step + 1 :]
            assert np.all(later == 0), f"offset at step {step} reads later ratings"
            assert np.all(jac[b, step, 1 - b] == 0)  # other rows never leak in
        assert np.all(jac[b, 5, b, :4] == 0)  # nor steps before the row's last reset
        assert np.all(jac[b, 5, b, 4:6] > 0)


def _ratings_frame() -> pd.DataFrame:
    rows = []
    for u in range(6):
        for k in range(8):
            rows.append((u, 1 + (u + k) % 9, float(k), float(1 + (u * 3 + k) % 5)))
    return pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])


def test_inputs_carry_their_own_rating_never_the_targets():
    df = _ratings_frame()
    p = prepare(df, PrepConfig(duration_transform="none", max_len=4))
    w = train_windows(p)
    # Inputs and targets are consecutive training events of one user: the target's rating is
    # the next input's rating, never the same step's.
    m = w["mask"]
    assert w["rating_in_ok"][m].all() and not w["rating_in_ok"][~m].any()
    np.testing.assert_array_equal(
        w["rating_in"][:, 1:][m[:, 1:]], w["rating_target"][:, :-1][m[:, 1:]]
    )
    for split in ("valid", "test"):
        ex = eval_examples(p, split)
        for e in range(len(ex["target"])):
            n = ex["mask"][e].sum()
            # every input rating is one of the user's earlier ratings
            u = ex["user"][e]
            own = p.rating[(p.user == u)]
            assert set(ex["rating_in"][e][:n].tolist()) <= set(own.tolist())
    mean = train_rating_mean(p)
    assert abs(mean - p.rating[p.split == TRAIN].mean()) < 1e-6


def test_offset_moves_the_prediction_of_a_harsh_and_a_generous_rater():
    # Same items, same state: the user who rated higher before gets the higher prediction.
    params = {
        "rating": {
            "mu": jnp.asarray(3.0),
            "b_item": jnp.zeros(4),
            "w_user": jnp.asarray(1.0),
            "w": jnp.zeros((2, 3)),
        },
        "item_emb": jnp.zeros((4, 3)),
    }
    batch = _batch(
        rating_in=[[5.0, 5.0, 5.0], [1.0, 1.0, 1.0]],
        ok=np.ones((2, 3)),
        mask=np.ones((2, 3)),
        reset=[[1, 0, 0], [1, 0, 0]],
    )
    off = model_lib.user_rating_offset(params, batch)[:, -1]
    pred = model_lib.predict_rating(params, jnp.zeros((2, 2)), jnp.array([2, 2]), off)
    np.testing.assert_allclose(pred, [3.0 + 6 / 8, 3.0 - 6 / 8], rtol=1e-6)


def test_evaluation_reads_the_offset_at_each_rows_last_real_step():
    from durgru_jax.config import ModelConfig
    from durgru_jax.evaluate import _eval_forward

    cfg = ModelConfig(
        cell="gru", duration_mode="none", embed_dim=4, hidden_dim=3, dropout=0.0, n_items=6,
        rating_head=True,
    )  # fmt: skip
    params = model_lib.init_params(cfg, seed=0, rating_mean=3.0)
    assert float(params["rating"]["mu"]) == 3.0
    params["rating"]["w_user"] = jnp.asarray(2.0)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    batch = {
        "items": np.where(mask, [[1, 2, 3, 4], [5, 6, 1, 2]], 0).astype(np.int32),
        "mask": mask,
        "reset": np.eye(1, 4, 0, dtype=bool).repeat(2, 0),
        "rating_in": np.where(mask, [[5.0, 5.0, 5.0, 1.0], [1.0, 1.0, 1.0, 1.0]], 0.0),
        "rating_in_ok": mask,
        "target": np.array([4, 3], np.int32),
    }
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    _, rating = _eval_forward(params, cfg, batch)
    without = dict(batch, rating_in_ok=jnp.zeros_like(batch["rating_in_ok"]))
    _, base = _eval_forward(params, cfg, without)
    # Row 0: three 5s after mu 3 -> 6 / 8; row 1: one 1 -> -2 / 6; the padded 1 never counts.
    np.testing.assert_allclose(np.asarray(rating - base), [2 * 6 / 8, 2 * -2 / 6], rtol=1e-5)
