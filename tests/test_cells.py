"""Tests for durgru_jax.cells: the GRU / aGRU steps of eq. (6)-(11) and the masked scan.

Compilation dominates the run time on CPU, so nearly every array here has the same shape
(B, T) = (3, 7) and goes through a few jitted entry points shared by the tests.
"""

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


@functools.cache
def _gru_params(seed: int = 0):
    p = cells.init_gru(jax.random.PRNGKey(seed), E, H)
    p["b"] = jnp.asarray(np.random.default_rng(seed).normal(scale=0.3, size=3 * H), jnp.float32)
    return p


@functools.cache
def _agru_params(seed: int = 0):
    p = cells.init_agru(jax.random.PRNGKey(seed), E, H, CI, CT)
    rng = np.random.default_rng(seed)
    p["b_k"] = jnp.asarray(rng.normal(scale=0.3, size=H), jnp.float32)
    p["b_c"] = jnp.asarray(rng.normal(scale=0.3, size=H), jnp.float32)
    return p


def _inputs(seed: int = 0, lengths=(7, 4, 1), mid_reset=(0, 3)):
    """Random inputs with right padding; every row but the last resets at step 0, and row
    ``mid_reset[0]`` also resets at step ``mid_reset[1]`` (two packed sequences)."""
    rng = np.random.default_rng(seed)
    b, t = len(lengths), T
    mask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
    reset = np.zeros((b, t), bool)
    reset[:-1, 0] = True  # the last row starts from h0 (no reset)
    if mid_reset is not None:
        reset[mid_reset] = True
    return dict(
        x=rng.normal(size=(b, t, E)).astype(np.float32),
        alpha=rng.uniform(0.05, 0.95, size=(b, t)).astype(np.float32),
        mask=mask,
        reset=reset,
        in_ctx=rng.integers(0, CI, size=(b, t)).astype(np.int32),
        tr_ctx=rng.integers(0, CT, size=(b, t)).astype(np.int32),
        h0=rng.normal(scale=0.5, size=(b, H)).astype(np.float32),
    )


@functools.partial(jax.jit, static_argnums=2)
def _gru_scan(p, d, mode):
    xp = cells.gru_inputs(p, d["x"], d["alpha"], mode)

    def step(h, xp_t, a_t):
        return cells.gru_step(p, h, xp_t, a_t, mode)

    return cells.run_cell(step, d["h0"], (xp, d["alpha"]), d["mask"], d["reset"])


@functools.partial(jax.jit, static_argnums=(2, 3))
def _agru_scan(p, d, mode, relevance=True):
    xc, xz, s, sv = cells.agru_inputs(
        p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, relevance
    )

    def step(h, xc_t, xz_t, s_t, sv_t, tr_t, a_t):
        return cells.agru_step(p, h, xc_t, xz_t, s_t, sv_t, tr_t, a_t, mode, relevance)

    xs = (xc, xz, s, sv, d["tr_ctx"], d["alpha"])
    return cells.run_cell(step, d["h0"], xs, d["mask"], d["reset"])


def _scan(cell, p, d, mode, relevance=True):
    if cell == "gru":
        return _gru_scan(p, d, mode)
    return _agru_scan(p, d, mode, relevance)


_gru_inputs = jax.jit(cells.gru_inputs, static_argnums=3)
_agru_inputs = jax.jit(cells.agru_inputs, static_argnums=(6, 7))
_gru_step = jax.jit(cells.gru_step, static_argnums=4)
_agru_step = jax.jit(cells.agru_step, static_argnums=(8, 9))
_static_interest = jax.jit(cells.static_interest)


def _loop(step_t, d):
    """Reference scan by hand, one step at a time, with the row rules applied in NumPy: a
    reset zeroes the row's state before the step, a padded step keeps (and outputs) it."""
    h = np.array(d["h0"])
    hs = np.zeros(d["mask"].shape + (H,), np.float32)
    for t in range(d["mask"].shape[1]):
        for i in range(h.shape[0]):
            if d["reset"][i, t]:
                h[i] = 0.0
        h_new = np.asarray(step_t(t, h))
        for i in range(h.shape[0]):
            if d["mask"][i, t]:
                h[i] = h_new[i]
            hs[i, t] = h[i]
    return h, hs


@pytest.mark.parametrize("mode", ["input", "gate"])
def test_gru_scan_matches_python_loop(mode):
    d = _inputs(1)
    p = _gru_params()
    xp = _gru_inputs(p, d["x"], d["alpha"], mode)
    ref_last, ref_hs = _loop(lambda t, h: _gru_step(p, h, xp[:, t], d["alpha"][:, t], mode), d)
    h_last, hs = _gru_scan(p, d, mode)
    np.testing.assert_allclose(hs, ref_hs, atol=1e-6)
    np.testing.assert_allclose(h_last, ref_last, atol=1e-6)
    # The reference is not trivial: the reset and the padding both matter.
    assert not np.allclose(ref_hs[0, 3], ref_hs[0, 2])
    np.testing.assert_array_equal(ref_hs[1, 4:], np.broadcast_to(ref_hs[1, 3], (3, H)))


@pytest.mark.parametrize("mode,relevance", [("input", True), ("gate", True), ("gate", False)])
def test_agru_scan_matches_python_loop(mode, relevance):
    d = _inputs(2)
    p = _agru_params()
    xc, xz, s, sv = _agru_inputs(
        p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, relevance
    )

    def step_t(t, h):
        return _agru_step(
            p, h, xc[:, t], xz[:, t], s[:, t], sv[:, t], d["tr_ctx"][:, t], d["alpha"][:, t],
            mode, relevance,
        )  # fmt: skip

    ref_last, ref_hs = _loop(step_t, d)
    h_last, hs = _agru_scan(p, d, mode, relevance)
    np.testing.assert_allclose(hs, ref_hs, atol=1e-6)
    np.testing.assert_allclose(h_last, ref_last, atol=1e-6)
    assert not np.allclose(ref_hs[0, 3], ref_hs[0, 2])
    np.testing.assert_array_equal(ref_hs[1, 4:], np.broadcast_to(ref_hs[1, 3], (3, H)))


def test_scan_without_reset_starts_from_h0():
    d = _inputs(3)
    p = _gru_params()
    _, hs = _gru_scan(p, d, "input")
    _, hs0 = _gru_scan(p, dict(d, h0=np.zeros_like(d["h0"])), "input")
    # Rows 0 and 1 reset at step 0, so h0 is irrelevant; row 2 does not.
    np.testing.assert_array_equal(hs[:2], hs0[:2])
    assert not np.allclose(hs[2, 0], hs0[2, 0])


# --------------------------------------------------------------------------- gradients


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@pytest.mark.parametrize("mode", ["input", "gate"])
def test_gru_step_grads(x64, mode):
    rng = np.random.default_rng(0)
    p = _f64(_gru_params())
    h = jnp.asarray(rng.normal(scale=0.5, size=(2, H)))
    x = jnp.asarray(rng.normal(size=(2, 1, E)))
    alpha = jnp.asarray([[0.3], [0.8]])
    assert h.dtype == jnp.float64 and p["w_x"].dtype == jnp.float64

    @jax.jit
    def f(params, h_):
        xp = cells.gru_inputs(params, x, alpha, mode)[:, 0]
        return cells.gru_step(params, h_, xp, alpha[:, 0], mode)

    check_grads(f, (p, h), order=1, modes=("fwd", "rev"), eps=1e-4, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode,relevance", [("input", True), ("gate", True), ("none", False)])
def test_agru_step_grads(x64, mode, relevance):
    rng = np.random.default_rng(1)
    p = _f64(_agru_params())
    assert p["w_tr"].dtype == jnp.float64
    h = jnp.asarray(rng.normal(scale=0.5, size=(2, H)))
    x = jnp.asarray(rng.normal(size=(2, 3, E)))
    alpha = jnp.asarray([[0.3, 0.6, 0.9], [0.8, 0.1, 0.5]])
    in_ctx = jnp.asarray([[0, 1, 1], [1, 0, 1]])
    tr_ctx = jnp.asarray([2, 1])
    mask = jnp.ones((2, 3), bool)
    reset = jnp.zeros((2, 3), bool)

    @jax.jit
    def f(params, h_):
        xc, xz, s, sv = cells.agru_inputs(params, x, alpha, in_ctx, mask, reset, mode, relevance)
        t = 2
        return cells.agru_step(
            params, h_, xc[:, t], xz[:, t], s[:, t], sv[:, t], tr_ctx, alpha[:, t], mode, relevance
        )

    check_grads(f, (p, h), order=1, modes=("fwd", "rev"), eps=1e-4, atol=1e-6, rtol=1e-6)


# --------------------------------------------------------------------------- static interest


def test_static_interest_is_prefix_mean_restarting_at_resets():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, T, E)).astype(np.float32)
    mask = rng.random((B, T)) < 0.7
    mask[2, :] = False  # an all-padding row ...
    mask[2, 5] = True  # ... but for one event
    reset = rng.random((B, T)) < 0.3
    reset[0] = False  # a row without any reset
    reset[1, [0, 3]] = True
    reset[1, 4] = False
    mask[1, 3] = False  # a reset on a padded step still restarts the mean
    got = np.asarray(_static_interest(x, mask, reset))
    for i in range(B):
        acc, n = np.zeros(E), 0
        for s in range(T):
            if reset[i, s]:
                acc, n = np.zeros(E), 0
            if mask[i, s]:
                acc, n = acc + x[i, s], n + 1
            want = acc / n if n else np.zeros(E)
            np.testing.assert_allclose(got[i, s], want, atol=1e-5, err_msg=f"row {i} step {s}")
    # values at padded steps do not matter
    x2 = np.where(mask[..., None], x, 1e3).astype(np.float32)
    np.testing.assert_allclose(_static_interest(x2, mask, reset), got, atol=1e-6)


# --------------------------------------------------------------------------- padding and packing


@pytest.mark.parametrize("cell", ["gru", "agru"])
def test_appending_padding_leaves_state_unchanged(cell):
    d = _inputs(6, lengths=(7, 5, 3))
    rng = np.random.default_rng(7)
    extra = 4
    d2 = {"h0": d["h0"]}
    for k, v in d.items():
        if k == "h0":
            continue
        shape = (v.shape[0], extra) + v.shape[2:]
        if v.dtype == bool:
            pad = np.zeros(shape, bool)
        elif k == "in_ctx":
            pad = rng.integers(0, CI, shape).astype(v.dtype)
        elif k == "tr_ctx":
            pad = rng.integers(0, CT, shape).astype(v.dtype)
        else:  # garbage values at padded steps
            pad = rng.normal(scale=10.0, size=shape).astype(v.dtype)
        d2[k] = np.concatenate([v, pad], axis=1)
    p = _gru_params() if cell == "gru" else _agru_params()
    last1, hs1 = _scan(cell, p, d, "gate")
    last2, hs2 = _scan(cell, p, d2, "gate")
    np.testing.assert_allclose(last2, last1, atol=1e-6)
    np.testing.assert_allclose(hs2[:, :T], hs1, atol=1e-6)
    # padded steps output the last state
    want = np.broadcast_to(np.asarray(last1)[:, None], (3, extra, H))
    np.testing.assert_allclose(hs2[:, T:], want, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "agru"])
@pytest.mark.parametrize("mode", ["input", "gate"])
def test_packed_row_equals_separate_sequences(cell, mode):
    """Row 0 packs ``A`` (3 events) and ``B`` (4 events) with a reset at B's start; rows 1 and
    2 hold A and B alone (right-padded). The packed row's states are A's then B's (including
    the static interest, which restarts at the reset)."""
    d = _inputs(8, lengths=(7, 3, 4), mid_reset=(0, 3))
    la = 3
    for k in ("x", "alpha", "in_ctx", "tr_ctx"):
        d[k][1, :la] = d[k][0, :la]
        d[k][2, : T - la] = d[k][0, la:]
    d["reset"][2, 0] = True
    p = _gru_params(1) if cell == "gru" else _agru_params(1)
    last, hs = _scan(cell, p, d, mode)
    np.testing.assert_allclose(hs[0, :la], hs[1, :la], atol=1e-6)
    np.testing.assert_allclose(hs[0, la:], hs[2, : T - la], atol=1e-6)
    np.testing.assert_allclose(last[0], last[2], atol=1e-6)
    if cell == "agru":
        # without the reset the static interest (and the states) of B's steps would differ
        d_nores = dict(d, reset=np.eye(B, T, dtype=bool))
        _, _, s, _ = _agru_inputs(
            p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, True
        )
        _, _, s2, _ = _agru_inputs(
            p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d_nores["reset"], mode, True
        )
        np.testing.assert_allclose(s[0, la:], s[2, : T - la], atol=1e-6)
        assert not np.allclose(s2[0, la:], s[0, la:], atol=1e-4)


# --------------------------------------------------------------------------- aGRU specifics


def test_agru_without_relevance_ignores_static_interest_params():
    d = _inputs(9)
    p = _agru_params(2)

    @functools.partial(jax.jit, static_argnums=1)
    def grad(params, relevance):
        return jax.grad(lambda q: jnp.sum(_agru_scan(q, d, "input", relevance)[1] ** 2))(params)

    g_off = grad(p, False)
    assert np.all(np.asarray(g_off["w_s"]) == 0.0)
    assert np.all(np.asarray(g_off["v_k"]) == 0.0)
    assert np.abs(np.asarray(g_off["w_k"])).max() > 1e-6
    g_on = grad(p, True)
    assert np.abs(np.asarray(g_on["w_s"])).max() > 1e-6
    assert np.abs(np.asarray(g_on["v_k"])).max() > 1e-6


def _one_agru_step(p, mode):
    """One step from a random state at t=0 of `_inputs`; returns (h, h_new, candidate)."""
    d = _inputs(10)
    h = d["h0"]
    xc, xz, s, sv = _agru_inputs(
        p, d["x"], d["alpha"], d["in_ctx"], d["mask"], d["reset"], mode, True
    )
    a = d["alpha"][:, 0]
    h_new = _agru_step(
        p, h, xc[:, 0], xz[:, 0], s[:, 0], sv[:, 0], d["tr_ctx"][:, 0], a, mode, True
    )
    # the candidate of eq. (6) by hand: tanh(alpha p_i I_c + b_c + h T_c)
    w_in, w_tr, b_c = (np.asarray(p[k]) for k in ("w_in", "w_tr", "b_c"))
    cand = np.zeros((B, H), np.float32)
    for i in range(B):
        ci, ct = d["in_ctx"][i, 0], d["tr_ctx"][i, 0]
        scale = a[i] if mode == "input" else 1.0
        cand[i] = np.tanh(
            scale * d["x"][i, 0] @ w_in[ci] + b_c + h[i] @ w_tr[:, ct * H : (ct + 1) * H]
        )
    return h, np.asarray(h_new), cand, a[:, None]


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_agru_eq8_convention_z_is_share_of_old_state(mode):
    p = _agru_params(3)
    # z -> 1: the state does not move
    h, h_new, _, _ = _one_agru_step(dict(p, b_k=jnp.full((H,), 50.0)), mode)
    np.testing.assert_allclose(h_new, h, atol=1e-6)
    # z -> 0: the state is the candidate (or alpha of it in gate mode)
    h, h_new, cand, a = _one_agru_step(dict(p, b_k=jnp.full((H,), -50.0)), mode)
    want = a * cand + (1 - a) * h if mode == "gate" else cand
    np.testing.assert_allclose(h_new, want, atol=1e-5)
    assert not np.allclose(cand, h, atol=1e-2)


@pytest.mark.parametrize("mode", ["none", "input", "gate"])
def test_gru_eq11_convention_z_is_share_of_candidate(mode):
    d = _inputs(11)
    h, a = d["h0"], d["alpha"][:, 0]
    p0 = _gru_params(4)

    def run(bz):
        b = np.concatenate([np.full(H, bz), np.asarray(p0["b"])[H:]]).astype(np.float32)
        p = dict(p0, b=jnp.asarray(b))
        xp = _gru_inputs(p, d["x"], d["alpha"], mode)[:, 0]
        out = np.asarray(_gru_step(p, h, xp, a, mode))
        # the candidate of eq. (10) by hand, with U applied to (r * h)
        scale = a[:, None] if mode == "input" else 1.0
        w, uzr, un = (np.asarray(p[k]) for k in ("w_x", "u_zr", "u_n"))
        pre = scale * (d["x"][:, 0] @ w) + b
        r = 1 / (1 + np.exp(-(pre[:, H : 2 * H] + h @ uzr[:, H:])))
        return out, np.tanh(pre[:, 2 * H :] + (r * h) @ un)

    out, _ = run(-50.0)  # z -> 0: keep the old state
    np.testing.assert_allclose(out, h, atol=1e-6)
    out, cand = run(50.0)  # z -> 1: take the candidate (alpha z in gate mode)
    want = a[:, None] * cand + (1 - a[:, None]) * h if mode == "gate" else cand
    np.testing.assert_allclose(out, want, atol=1e-5)
    assert not np.allclose(cand, h, atol=1e-2)


def test_learned_reset_gate_ablation_matches_its_equations():
    """reset_gate=True: r = sigmoid(x W_r + h U_r + b_r); candidate from (r * h) T_c."""
    from durgru_jax import cells as C

    e, h, b = 3, 4, 2
    p = C.init_agru(jax.random.key(3), e, h, 1, 2, reset_gate=True)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(b, 1, e)), jnp.float32)
    h0 = jnp.asarray(rng.normal(size=(b, h)), jnp.float32) * 0.5
    alpha = jnp.ones((b, 1))
    ctx = jnp.zeros((b, 1), jnp.int32)
    mask = jnp.ones((b, 1), bool)
    xc, xz, s, sv = C.agru_inputs(p, x, alpha, ctx, mask, mask, "none", relevance=False)
    tr = jnp.array([0, 1])
    got = C.agru_step(p, h0, xc[:, 0], xz[:, 0], s[:, 0], sv[:, 0], tr, alpha[:, 0], "none", False)
    r = jax.nn.sigmoid(x[:, 0] @ p["w_r"] + h0 @ p["u_r"] + p["b_r"])
    t_all = ((r * h0) @ p["w_tr"]).reshape(b, 2, h)
    cand = jnp.tanh(x[:, 0] @ p["w_in"][0] + p["b_c"] + t_all[jnp.arange(b), tr])
    z = jax.nn.sigmoid(x[:, 0] @ p["w_k"] + p["b_k"] + h0 @ p["u_k"])
    np.testing.assert_allclose(got, (1 - z) * cand + z * h0, rtol=1e-5, atol=1e-6)
