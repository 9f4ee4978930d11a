"""Tests for durgru_jax.attention: SASRec and the ADPR-style encoder behind `model.encode`.

Block-causality (exact zero gradients), packed rows equal their segments run alone, padding
on either side changes nothing, hand-written NumPy references, h_last, one training step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from durgru_jax import attention
from durgru_jax.config import ConfigError, LossConfig, ModelConfig
from durgru_jax.loss import losses
from durgru_jax.model import encode, init_params

N_ITEMS = 40
# Jitted once per (config, shape): eager dispatch of every small op costs more CPU here.
_encode = jax.jit(encode, static_argnums=1)
CELLS = ("sasrec", "adpr")


def _cfg(cell: str, **kw) -> ModelConfig:
    base = dict(
        cell=cell,
        duration_mode="none",
        embed_dim=8,
        hidden_dim=8,
        dropout=0.0,
        n_items=N_ITEMS,
        n_layers=2,
        n_heads=2,
        max_len=12,
    )
    base.update(kw)
    return ModelConfig(**base)


@functools.cache
def _params(cfg: ModelConfig, seed: int = 0):
    return init_params(cfg, seed)


def _row(segments, t: int, lead: int = 0, reset_lead: bool = False):
    """One row: ``lead`` padded steps, then the segments back to back, right padding to t."""
    items = np.zeros(t, np.int32)
    mask = np.zeros(t, bool)
    reset = np.zeros(t, bool)
    col = lead
    for seg in segments:
        reset[col] = True
        items[col : col + len(seg)] = seg
        mask[col : col + len(seg)] = True
        col += len(seg)
    if reset_lead and lead:
        reset[0], reset[lead] = True, False
    return items, mask, reset


def _batch(rows) -> dict[str, jax.Array]:
    items, mask, reset = (np.stack(a) for a in zip(*rows, strict=True))
    return {"items": jnp.asarray(items), "mask": jnp.asarray(mask), "reset": jnp.asarray(reset)}


SEG_A, SEG_B = [3, 7, 11], [5, 9, 2, 14]


def test_segment_layout_positions_and_mask_by_hand():
    b = _batch([_row([SEG_A, SEG_B], 9)])
    allowed, pos, src = attention.segment_layout(b["mask"], b["reset"])
    np.testing.assert_array_equal(pos[0, :7], [0, 1, 2, 0, 1, 2, 3])
    np.testing.assert_array_equal(src[0], [0, 1, 2, 3, 4, 5, 6, 6, 6])
    a = np.asarray(allowed[0]).astype(int)
    np.testing.assert_array_equal(a[2], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(a[4], [0, 0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(a[8], [0, 0, 0, 1, 1, 1, 1, 0, 1])  # padded: itself only
    # Left padding: the first event still has position 0.
    b = _batch([_row([SEG_A], 6, lead=2, reset_lead=True)])
    _, pos, src = attention.segment_layout(b["mask"], b["reset"])
    np.testing.assert_array_equal(pos[0, 2:5], [0, 1, 2])
    np.testing.assert_array_equal(src[0], [-1, -1, 2, 3, 4, 4])


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_and_h_last(cell):
    cfg = _cfg(cell, embed_dim=6, hidden_dim=10)  # E != H: SASRec's input projection
    b = _batch([_row([SEG_A], 8), _row([SEG_A, SEG_B], 8), _row([], 8)])
    hs, h_last = _encode(_params(cfg), cfg, b)
    assert hs.shape == (3, 8, 10) and h_last.shape == (3, 10)
    np.testing.assert_array_equal(h_last[0], hs[0, 2])
    np.testing.assert_array_equal(h_last[1], hs[1, 6])
    np.testing.assert_array_equal(h_last[2], np.zeros(10))
    # Padded steps repeat the last output of their segment, zeros before any (as the RNN).
    np.testing.assert_array_equal(hs[0, 3:], np.broadcast_to(hs[0, 2], (5, 10)))
    np.testing.assert_array_equal(hs[2], np.zeros((8, 10)))
    assert np.all(np.isfinite(hs))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("with_dropout", [False, True])
def test_block_causal_gradients_are_exactly_zero(cell, with_dropout):
    """d hs[t] / d input[s] == 0 exactly for s > t and across a reset; != 0 within."""
    cfg = _cfg(cell, dropout=0.3 if with_dropout else 0.0)
    params = _params(cfg)
    seg_a, seg_b = [1, 2, 3, 4], [5, 6, 7]  # distinct items: item_emb row i <-> its step
    b = _batch([_row([seg_a, seg_b], 8)])
    key = jax.random.key(1) if with_dropout else None

    def out(emb):
        return _encode({**params, "item_emb": emb}, cfg, b, key)[0][0]

    jac = np.asarray(jax.jit(jax.jacobian(out))(params["item_emb"]))  # [T, H, N, E]
    g_TxN = np.abs(jac).sum(axis=(1, 3))
    items = np.asarray(b["items"][0])
    for t in range(7):
        seg_start = 0 if t < 4 else 4
        for s in range(7):
            if seg_start <= s <= t:
                assert g_TxN[t, items[s]] > 0, (t, s)
            else:
                assert g_TxN[t, items[s]] == 0.0, (t, s)


@pytest.mark.parametrize("cell", CELLS)
def test_packed_row_equals_segments_alone(cell):
    cfg = _cfg(cell)
    params = _params(cfg)
    packed = _encode(params, cfg, _batch([_row([SEG_A, SEG_B], 8)]))[0][0]
    alone = _encode(params, cfg, _batch([_row([SEG_A], 8), _row([SEG_B], 8)]))[0]
    np.testing.assert_allclose(packed[:3], alone[0, :3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(packed[3:7], alone[1, :4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_padding_invariance(cell):
    cfg = _cfg(cell)
    params = _params(cfg)
    hs8, last8 = _encode(params, cfg, _batch([_row([SEG_A, SEG_B], 8)]))
    hs13, last13 = _encode(params, cfg, _batch([_row([SEG_A, SEG_B], 13)]))
    np.testing.assert_allclose(hs13[0, :7], hs8[0, :7], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last13, last8, rtol=1e-5, atol=1e-6)
    # Left padding (reset on the first padded column or on the first event): same outputs.
    for reset_lead in (False, True):
        hs_l, last_l = _encode(
            params, cfg, _batch([_row([SEG_B], 8, lead=3, reset_lead=reset_lead)])
        )
        hs_r, last_r = _encode(params, cfg, _batch([_row([SEG_B], 8)]))
        np.testing.assert_allclose(hs_l[0, 3:7], hs_r[0, :4], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(last_l, last_r, rtol=1e-5, atol=1e-6)


def _ln(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_sasrec_matches_a_numpy_reference():
    """Loop-by-loop SASRec (pre-LN, 2 heads, 2 blocks) on one sequence, float64."""
    cfg = _cfg("sasrec")
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), _params(cfg))
    # Random LayerNorm gains/biases so that they are exercised too.
    rng = np.random.default_rng(0)
    for k in ("ln1_g", "ln1_b", "ln2_g", "ln2_b", "ln_g", "ln_b", "bqkv", "b1", "bo"):
        params["cell"][k] = params["cell"][k] + rng.normal(0, 0.3, params["cell"][k].shape)
    p = params["cell"]
    seq = [4, 8, 15, 16, 23]
    hs = _encode(jax.tree.map(jnp.asarray, params), cfg, _batch([_row([seq], 8)]))[0][0]
    h, nh = 8, 2
    dh = h // nh
    x = np.stack([params["item_emb"][i] + p["pos"][t] for t, i in enumerate(seq)])
    for l in range(2):
        y = _ln(x) * p["ln1_g"][l] + p["ln1_b"][l]
        qkv = y @ p["wqkv"][l] + p["bqkv"][l]
        q, k, v = qkv[:, :h], qkv[:, h : 2 * h], qkv[:, 2 * h :]
        att = np.zeros_like(x)
        for t in range(len(seq)):
            for n in range(nh):
                sl = slice(n * dh, (n + 1) * dh)
                w = _softmax(np.array([q[t, sl] @ k[s, sl] / np.sqrt(dh) for s in range(t + 1)]))
                att[t, sl] = sum(w[s] * v[s, sl] for s in range(t + 1))
        x = x + att @ p["wo"][l] + p["bo"][l]
        y = _ln(x) * p["ln2_g"][l] + p["ln2_b"][l]
        x = x + np.maximum(y @ p["w1"][l] + p["b1"][l], 0) @ p["w2"][l] + p["b2"][l]
    ref = _ln(x) * p["ln_g"] + p["ln_b"]
    np.testing.assert_allclose(np.asarray(hs[:5]), ref, rtol=1e-4, atol=1e-5)


def test_adpr_matches_a_numpy_reference():
    cfg = _cfg("adpr", embed_dim=6, hidden_dim=5)
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), _params(cfg))
    p = params["cell"]
    p["q0"] = np.random.default_rng(1).normal(0, 1.0, p["q0"].shape)
    seq = [2, 30, 7, 19]
    hs = _encode(jax.tree.map(jnp.asarray, params), cfg, _batch([_row([seq], 8)]))[0][0]
    e = params["item_emb"][seq]
    ref = []
    for t in range(len(seq)):
        q = e[t] @ p["wq"] + p["q0"]
        w = _softmax(np.array([q @ (e[s] @ p["wk"]) / np.sqrt(5) for s in range(t + 1)]))
        c = (w[:, None] * e[: t + 1]).sum(0)
        hid = np.maximum(np.concatenate([c, e[t]]) @ p["w1"] + p["b1"], 0)
        ref.append(hid @ p["w2"] + p["b2"])
    np.testing.assert_allclose(np.asarray(hs[:4]), np.stack(ref), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_dropout_only_with_a_key(cell):
    cfg = _cfg(cell, dropout=0.5)
    params = _params(cfg)
    b = _batch([_row([SEG_A, SEG_B], 8)])
    h0 = _encode(params, cfg, b)[0]
    np.testing.assert_array_equal(h0, _encode(params, cfg, b)[0])
    h1 = _encode(params, cfg, b, jax.random.key(0))[0]
    h2 = _encode(params, cfg, b, jax.random.key(1))[0]
    assert not np.allclose(h1, h0) and not np.allclose(h1, h2)


@pytest.mark.parametrize("cell", CELLS)
def test_one_training_step_decreases_the_full_loss(cell):
    cfg = _cfg(cell, tie_output=cell == "sasrec")
    loss_cfg = LossConfig(target="full", aux_weight=0.0)
    rng = np.random.default_rng(0)
    rows = [
        _row([list(rng.integers(1, N_ITEMS + 1, 5)), list(rng.integers(1, N_ITEMS + 1, 4))], 10)
    ]
    rows += [_row([list(rng.integers(1, N_ITEMS + 1, 9))], 10) for _ in range(3)]
    b = _batch(rows)
    b["targets"] = jnp.where(b["mask"], jnp.asarray(rng.integers(1, N_ITEMS + 1, (4, 10))), 0)
    log_pop = jnp.full((N_ITEMS + 1,), -np.log(N_ITEMS)).at[0].set(-jnp.inf)
    params = _params(cfg)

    def loss(p):
        return losses(p, cfg, loss_cfg, b, jax.random.key(0), log_pop, train=False)[0]

    tx = optax.adam(1e-2)

    @jax.jit
    def step(p):
        before, grads = jax.value_and_grad(loss)(p)
        updates, _ = tx.update(grads, tx.init(p), p)
        return before, loss(optax.apply_updates(p, updates)), grads

    before, after, grads = step(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["cell"]["w1"]).sum()) > 0  # the encoder is trained
    assert float(after) < float(before) - 1e-3


def test_config_checks():
    with pytest.raises(ConfigError, match="duration_mode=none"):
        _cfg("sasrec", duration_mode="input")
    with pytest.raises(ConfigError, match="duration_mode=none"):
        _cfg("adpr", duration_mode="gate")
    with pytest.raises(ConfigError, match="max_len"):
        _cfg("sasrec", max_len=0)
    with pytest.raises(ConfigError, match="n_heads"):
        _cfg("sasrec", n_heads=3)
    with pytest.raises(ConfigError, match="model.cell"):
        _cfg("transformer")
    assert ModelConfig().cell == "agru"  # the default path is untouched
    _cfg("adpr", max_len=0)  # ADPR has no positions


def test_train_and_evaluate_end_to_end(tmp_path, tiny_config):
    """The training loop fills model.max_len from data.max_len and trains SASRec."""
    from durgru_jax.train import train_and_evaluate

    c = tiny_config
    c.model.cell = "sasrec"
    c.model.duration_mode = "none"
    c.model.embed_dim = c.model.hidden_dim = 8
    c.loss.aux_weight = 0.0
    c.train.epochs = 1
    res = train_and_evaluate(c, str(tmp_path))
    assert res["model"]["max_len"] == c.data.max_len
    assert 0.0 <= res["metrics"]["test/hr@10"] <= 1.0
    assert np.isfinite(res["metrics"]["test/ndcg@10"])
