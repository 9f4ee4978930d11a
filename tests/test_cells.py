"""Tests for durgru_jax.cells: the GRU / aGRU steps of eq. (6)-(11) and the masked scan."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from durgru_jax import cells

B, T, E, H, CI, CT = 3, 7, 4, 5, 2, 3


@pytest.fixture
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _inputs(seed: int = 0, lengths=(7, 4, 1), mid_reset=(0, 3)):
    """Random inputs with right padding; every row but the last resets at step 0, and row
    ``mid_reset[0]`` also resets at step ``mid_reset[1]`` (two packed sequences)."""
    rng = np.random.default_rng(seed)
    b, t = len(lengths), T
    x = rng.normal(size=(b, t, E)).astype(np.float32)
    alpha = rng.uniform(0.05, 0.95, size=(b, t)).astype(np.float32)
    mask = np.zeros((b, t), bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    reset = np.zeros((b, t), bool)
    reset[:-1, 0] = True  # the last row starts from h0 (no reset)
    reset[mid_reset[0], mid_reset[1]] = True
    in_ctx = rng.integers(0, CI, size=(b, t)).astype(np.int32)
    tr_ctx = rng.integers(0, CT, size=(b, t)).astype(np.int32)
    h0 = rng.normal(scale=0.5, size=(b, H)).astype(np.float32)
    return dict(x=x, alpha=alpha, mask=mask, reset=reset, in_ctx=in_ctx, tr_ctx=tr_ctx, h0=h0)


@functools.partial(jax.jit, static_argnums=2)
def _gru_scan(p, d, mode):
    xp = cells.gru_inputs(p, jnp.asarray(d["x"]), jnp.asarray(d["alpha"]), mode)

    def step(h, xp_t, a_t):
        return cells.gru_step(p, h, xp_t, a_t, mode)

    return cells.run_cell(
        step, jnp.asarray(d["h0"]), (xp, jnp.asarray(d["alpha"])), d["mask"], d["reset"]
    )


@functools.partial(jax.jit, static_argnums=(2, 3))
def _agru_scan(p, d, mode, relevance=True):
    xc, xz, s, sv = cells.agru_inputs(
        p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, relevance
    )

    def step(h, xc_t, xz_t, s_t, sv_t, tr_t, a_t):
        return cells.agru_step(p, h, xc_t, xz_t, s_t, sv_t, tr_t, a_t, mode, relevance)

    xs = (xc, xz, s, sv, jnp.asarray(d["tr_ctx"]), jnp.asarray(d["alpha"]))
    return cells.run_cell(step, jnp.asarray(d["h0"]), xs, d["mask"], d["reset"])


_gru_inputs = jax.jit(cells.gru_inputs, static_argnums=3)
_agru_inputs = jax.jit(cells.agru_inputs, static_argnums=(6, 7))
_gru_step = jax.jit(cells.gru_step, static_argnums=4)
_agru_step = jax.jit(cells.agru_step, static_argnums=(8, 9))


def _loop(step_one, d):
    """Reference scan by hand, one row and one step at a time: a reset zeroes the state
    before the step, a padded step keeps (and outputs) the previous state."""
    b, t = d["mask"].shape
    hs = np.zeros((b, t, H), np.float32)
    h_last = np.zeros((b, H), np.float32)
    for i in range(b):
        h = np.asarray(d["h0"][i])
        for s in range(t):
            if d["reset"][i, s]:
                h = np.zeros(H, np.float32)
            if d["mask"][i, s]:
                h = np.asarray(step_one(i, s, h))
            hs[i, s] = h
        h_last[i] = h
    return h_last, hs


@pytest.mark.parametrize("mode", ["input", "gate"])
def test_gru_scan_matches_python_loop(mode):
    d = _inputs(1)
    p = cells.init_gru(jax.random.PRNGKey(0), E, H)
    xp = np.asarray(_gru_inputs(p, d["x"], d["alpha"], mode))

    def one(i, s, h):
        return _gru_step(p, h[None], xp[i : i + 1, s], d["alpha"][i : i + 1, s], mode)[0]

    ref_last, ref_hs = _loop(one, d)
    h_last, hs = _gru_scan(p, d, mode)
    np.testing.assert_allclose(hs, ref_hs, atol=1e-6)
    np.testing.assert_allclose(h_last, ref_last, atol=1e-6)
    # The reference is not trivial: the reset and the padding both matter.
    assert not np.allclose(ref_hs[0, 3], ref_hs[0, 2])
    np.testing.assert_array_equal(ref_hs[1, 4:], np.broadcast_to(ref_hs[1, 3], (3, H)))


@pytest.mark.parametrize("mode", ["input", "gate"])
@pytest.mark.parametrize("relevance", [True, False])
def test_agru_scan_matches_python_loop(mode, relevance):
    d = _inputs(2)
    p = cells.init_agru(jax.random.PRNGKey(1), E, H, CI, CT)
    p["b_k"] = jnp.full((H,), 0.3)
    p["b_c"] = jnp.full((H,), -0.2)
    xc, xz, s_, sv = (
        np.asarray(a)
        for a in _agru_inputs(
            p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, relevance
        )
    )

    def one(i, s, h):
        sl = (slice(i, i + 1), s)
        return _agru_step(
            p, h[None], xc[sl], xz[sl], s_[sl], sv[sl], d["tr_ctx"][sl], d["alpha"][sl], mode,
            relevance,
        )[0]  # fmt: skip

    ref_last, ref_hs = _loop(one, d)
    h_last, hs = _agru_scan(p, d, mode, relevance)
    np.testing.assert_allclose(hs, ref_hs, atol=1e-6)
    np.testing.assert_allclose(h_last, ref_last, atol=1e-6)
    assert not np.allclose(ref_hs[0, 3], ref_hs[0, 2])


def test_scan_without_reset_starts_from_h0():
    d = _inputs(3)
    p = cells.init_gru(jax.random.PRNGKey(0), E, H)
    _, hs = _gru_scan(p, d, "input")
    d0 = dict(d, h0=np.zeros_like(d["h0"]))
    _, hs0 = _gru_scan(p, d0, "input")
    # Rows 0 and 1 reset at step 0, so h0 is irrelevant; row 2 does not.
    np.testing.assert_array_equal(hs[:2], hs0[:2])
    assert not np.allclose(hs[2, 0], hs0[2, 0])


# --------------------------------------------------------------------------- gradients


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_gru_step_grads(x64, mode):
    rng = np.random.default_rng(0)
    p = _f64(cells.init_gru(jax.random.PRNGKey(0), E, H))
    p["b"] = jnp.asarray(rng.normal(size=3 * H))
    h = jnp.asarray(rng.normal(scale=0.5, size=(2, H)))
    x = jnp.asarray(rng.normal(size=(2, 1, E)))
    alpha = jnp.asarray([[0.3], [0.8]])
    assert h.dtype == jnp.float64 and p["w_x"].dtype == jnp.float64

    def f(params, h_):
        xp = cells.gru_inputs(params, x, alpha, mode)[:, 0]
        return cells.gru_step(params, h_, xp, alpha[:, 0], mode)

    check_grads(jax.jit(f), (p, h), order=1, modes=("fwd", "rev"), eps=1e-4, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
@pytest.mark.parametrize("relevance", [True, False])
def test_agru_step_grads(x64, mode, relevance):
    rng = np.random.default_rng(1)
    p = _f64(cells.init_agru(jax.random.PRNGKey(0), E, H, CI, CT))
    p["b_k"] = jnp.asarray(rng.normal(size=H))
    p["b_c"] = jnp.asarray(rng.normal(size=H))
    assert p["w_tr"].dtype == jnp.float64
    h = jnp.asarray(rng.normal(scale=0.5, size=(2, H)))
    x = jnp.asarray(rng.normal(size=(2, 3, E)))
    alpha = jnp.asarray([[0.3, 0.6, 0.9], [0.8, 0.1, 0.5]])
    in_ctx = jnp.asarray([[0, 1, 1], [1, 0, 1]])
    tr_ctx = jnp.asarray([2, 1])
    mask = jnp.ones((2, 3), bool)
    reset = jnp.zeros((2, 3), bool)

    def f(params, h_):
        xc, xz, s, sv = cells.agru_inputs(params, x, alpha, in_ctx, mask, reset, mode, relevance)
        t = 2
        return cells.agru_step(
            params, h_, xc[:, t], xz[:, t], s[:, t], sv[:, t], tr_ctx, alpha[:, t], mode, relevance
        )

    check_grads(jax.jit(f), (p, h), order=1, modes=("fwd", "rev"), eps=1e-4, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- static interest


def test_static_interest_is_prefix_mean_restarting_at_resets():
    rng = np.random.default_rng(4)
    b, t = 4, 9
    x = rng.normal(size=(b, t, E)).astype(np.float32)
    mask = rng.random((b, t)) < 0.7
    mask[3] = False  # an all-padding row
    reset = rng.random((b, t)) < 0.25
    reset[0] = False  # a row without any reset
    reset[1, 0] = True
    got = np.asarray(cells.static_interest(jnp.asarray(x), jnp.asarray(mask), jnp.asarray(reset)))
    for i in range(b):
        acc, n = np.zeros(E), 0
        for s in range(t):
            if reset[i, s]:
                acc, n = np.zeros(E), 0
            if mask[i, s]:
                acc, n = acc + x[i, s], n + 1
            want = acc / n if n else np.zeros(E)
            np.testing.assert_allclose(got[i, s], want, atol=1e-5, err_msg=f"row {i} step {s}")


def test_static_interest_ignores_values_at_padded_steps():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 6, E)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 0, 0], [1, 0, 1, 1, 1, 0]], bool)
    reset = np.zeros((2, 6), bool)
    x2 = np.where(mask[..., None], x, 1e3)
    a = cells.static_interest(jnp.asarray(x), mask, reset)
    b = cells.static_interest(jnp.asarray(x2), mask, reset)
    np.testing.assert_allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------- padding and packing


@pytest.mark.parametrize("cell", ["gru", "agru"])
def test_appending_padding_leaves_state_unchanged(cell):
    d = _inputs(6, lengths=(7, 5, 3))
    rng = np.random.default_rng(7)
    extra = 4
    d2 = {}
    for k, v in d.items():
        if k == "h0":
            d2[k] = v
            continue
        pad_shape = (v.shape[0], extra) + v.shape[2:]
        if k == "mask" or k == "reset":
            pad = np.zeros(pad_shape, bool)
        elif k in ("in_ctx",):
            pad = rng.integers(0, CI, pad_shape).astype(v.dtype)
        elif k in ("tr_ctx",):
            pad = rng.integers(0, CT, pad_shape).astype(v.dtype)
        else:  # garbage values at padded steps
            pad = rng.normal(scale=10.0, size=pad_shape).astype(v.dtype)
        d2[k] = np.concatenate([v, pad], axis=1)
    if cell == "gru":
        p = cells.init_gru(jax.random.PRNGKey(0), E, H)
        run = lambda dd: _gru_scan(p, dd, "input")  # noqa: E731
    else:
        p = cells.init_agru(jax.random.PRNGKey(0), E, H, CI, CT)
        run = lambda dd: _agru_scan(p, dd, "gate")  # noqa: E731
    last1, hs1 = run(d)
    last2, hs2 = run(d2)
    np.testing.assert_allclose(last2, last1, atol=1e-6)
    np.testing.assert_allclose(hs2[:, :T], hs1, atol=1e-6)
    # padded steps output the last state
    np.testing.assert_allclose(hs2[:, T:], np.broadcast_to(last1[:, None], (3, extra, H)), atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "agru"])
@pytest.mark.parametrize("mode", ["input", "gate"])
def test_packed_row_equals_separate_sequences(cell, mode):
    """A row ``[A (3 events), B (4 events)]`` with a reset at B's start gives, on B's steps, the
    states of B run alone (including the static interest, which restarts at the reset)."""
    rng = np.random.default_rng(8)
    la, lb = 3, 4
    n = la + lb
    x = rng.normal(size=(1, n, E)).astype(np.float32)
    alpha = rng.uniform(0.1, 0.9, (1, n)).astype(np.float32)
    in_ctx = rng.integers(0, CI, (1, n)).astype(np.int32)
    tr_ctx = rng.integers(0, CT, (1, n)).astype(np.int32)
    reset = np.zeros((1, n), bool)
    reset[0, [0, la]] = True
    packed = dict(
        x=x,
        alpha=alpha,
        in_ctx=in_ctx,
        tr_ctx=tr_ctx,
        mask=np.ones((1, n), bool),
        reset=reset,
        h0=np.zeros((1, H), np.float32),
    )

    def part(lo, hi):
        r = np.zeros((1, hi - lo), bool)
        r[0, 0] = True
        out = {k: v[:, lo:hi] for k, v in packed.items() if k not in ("h0", "reset", "mask")}
        return dict(out, reset=r, mask=np.ones((1, hi - lo), bool), h0=packed["h0"])

    if cell == "gru":
        p = cells.init_gru(jax.random.PRNGKey(3), E, H)
        run = lambda dd: _gru_scan(p, dd, mode)  # noqa: E731
    else:
        p = cells.init_agru(jax.random.PRNGKey(3), E, H, CI, CT)
        run = lambda dd: _agru_scan(p, dd, mode)  # noqa: E731
    last_p, hs_p = run(packed)
    _, hs_a = run(part(0, la))
    last_b, hs_b = run(part(la, n))
    np.testing.assert_allclose(hs_p[:, :la], hs_a, atol=1e-6)
    np.testing.assert_allclose(hs_p[:, la:], hs_b, atol=1e-6)
    np.testing.assert_allclose(last_p, last_b, atol=1e-6)
    if cell == "agru":
        # Without the reset of the static interest the packed row would differ.
        xc, xz, s, sv = cells.agru_inputs(
            p, x, alpha, in_ctx, packed["mask"], np.eye(1, n, dtype=bool), mode
        )
        _, _, s_b, _ = cells.agru_inputs(
            p, x[:, la:], alpha[:, la:], in_ctx[:, la:], np.ones((1, lb), bool),
            np.eye(1, lb, dtype=bool), mode,
        )  # fmt: skip
        assert not np.allclose(s[:, la:], s_b, atol=1e-4)


# --------------------------------------------------------------------------- aGRU specifics


def test_agru_without_relevance_ignores_static_interest_params():
    d = _inputs(9)
    p = cells.init_agru(jax.random.PRNGKey(4), E, H, CI, CT)

    def loss(params, relevance):
        _, hs = _agru_scan(params, d, "input", relevance)
        return jnp.sum(hs**2)

    g_off = jax.grad(loss)(p, False)
    assert np.all(np.asarray(g_off["w_s"]) == 0.0)
    assert np.all(np.asarray(g_off["v_k"]) == 0.0)
    assert np.any(np.asarray(g_off["w_k"]) != 0.0)
    g_on = jax.grad(loss)(p, True)
    assert np.abs(np.asarray(g_on["w_s"])).max() > 1e-6
    assert np.abs(np.asarray(g_on["v_k"])).max() > 1e-6


def _agru_one_step(p, mode, alpha_val):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 1, E)).astype(np.float32)
    alpha = np.full((2, 1), alpha_val, np.float32)
    in_ctx = np.array([[1], [0]], np.int32)
    tr_ctx = np.array([2, 1], np.int32)
    mask, reset = np.ones((2, 1), bool), np.zeros((2, 1), bool)
    h = rng.normal(scale=0.5, size=(2, H)).astype(np.float32)
    xc, xz, s, sv = cells.agru_inputs(p, x, alpha, in_ctx, mask, reset, mode)
    h_new = cells.agru_step(p, h, xc[:, 0], xz[:, 0], s[:, 0], sv[:, 0], tr_ctx, alpha[:, 0], mode)
    # candidate of eq. (6) by hand: tanh(alpha x I_c + b_c + h T_c)
    cand = np.stack(
        [
            np.tanh(
                (alpha_val if mode == "input" else 1.0) * x[i, 0] @ np.asarray(p["w_in"])[in_ctx[i, 0]]
                + np.asarray(p["b_c"])
                + h[i] @ np.asarray(p["w_tr"])[:, tr_ctx[i] * H : (tr_ctx[i] + 1) * H]
            )
            for i in range(2)
        ]
    )
    return h, np.asarray(h_new), cand


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_agru_eq8_convention_z_is_share_of_old_state(mode):
    p = cells.init_agru(jax.random.PRNGKey(5), E, H, CI, CT)
    p["b_c"] = jnp.full((H,), 0.1)
    # z -> 1: the state does not move
    h, h_new, _ = _agru_one_step(dict(p, b_k=jnp.full((H,), 50.0)), mode, 0.7)
    np.testing.assert_allclose(h_new, h, atol=1e-6)
    # z -> 0: the state is the candidate (scaled by alpha in gate mode)
    h, h_new, cand = _agru_one_step(dict(p, b_k=jnp.full((H,), -50.0)), mode, 0.7)
    if mode == "gate":
        np.testing.assert_allclose(h_new, 0.7 * cand + 0.3 * h, atol=1e-5)
    else:
        np.testing.assert_allclose(h_new, cand, atol=1e-5)
    assert not np.allclose(cand, h, atol=1e-2)


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_gru_eq11_convention_z_is_share_of_candidate(mode):
    rng = np.random.default_rng(11)
    p = cells.init_gru(jax.random.PRNGKey(6), E, H)
    x = rng.normal(size=(2, 1, E)).astype(np.float32)
    alpha = np.full((2, 1), 0.4, np.float32)
    h = rng.normal(scale=0.5, size=(2, H)).astype(np.float32)

    def run(bz):
        b = np.concatenate([np.full(H, bz), rng.normal(size=2 * H)]).astype(np.float32)
        pp = dict(p, b=jnp.asarray(b))
        xp = cells.gru_inputs(pp, x, alpha, mode)[:, 0]
        out = np.asarray(cells.gru_step(pp, h, xp, alpha[:, 0], mode))
        # candidate of eq. (10) by hand, with U applied to (r * h)
        a = 0.4 if mode == "input" else 1.0
        w = np.asarray(pp["w_x"])
        uzr, un = np.asarray(pp["u_zr"]), np.asarray(pp["u_n"])
        pre = a * x[:, 0] @ w + b
        r = 1 / (1 + np.exp(-(pre[:, H : 2 * H] + h @ uzr[:, H:])))
        cand = np.tanh(pre[:, 2 * H :] + (r * h) @ un)
        return out, cand

    out, _ = run(-50.0)  # z -> 0: keep the old state
    np.testing.assert_allclose(out, h, atol=1e-6)
    out, cand = run(50.0)  # z -> 1: take the candidate (alpha z in gate mode)
    want = 0.4 * cand + 0.6 * h if mode == "gate" else cand
    np.testing.assert_allclose(out, want, atol=1e-5)
