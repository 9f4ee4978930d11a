"""The speed paths compute what the plain code computes: the fused chunked softmax, the
catalogue-lookup input projections, the length-sorted and time-trimmed evaluation, the
inverse-CDF sampler; and the benchmark's FLOP count and JSON."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax import bench, cells
from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax.config import from_config
from durgru_jax.data import dataset as ds
from durgru_jax.evaluate import evaluate, evaluate_scorer, model_scorer


@pytest.mark.parametrize("chunk_elements", [64, 1 << 20])  # many padded chunks / one chunk
def test_fused_softmax_sum_matches_plain_loss_and_gradients(monkeypatch, chunk_elements):
    monkeypatch.setattr(loss_lib, "_SOFTMAX_CHUNK_ELEMENTS", chunk_elements)
    m, d, n = 37, 5, 11
    k = jax.random.split(jax.random.key(0), 4)
    u = jax.random.normal(k[0], (m, d))
    v = jax.random.normal(k[1], (d, n))
    c = jax.random.normal(k[2], (n,))
    tgt = jax.random.randint(k[3], (m,), 0, n)  # some targets are padding (0) ...
    valid = tgt > 0  # ... and get weight 0, as in `losses`
    w = valid / jnp.sum(valid)

    def plain(u, v, c):
        per = loss_lib.full_softmax_loss(u, v, c, tgt)
        return jnp.sum(jnp.where(valid, per, 0.0)) / jnp.sum(valid)

    def fused(u, v, c):
        return loss_lib.full_softmax_loss_sum(u, v, c, tgt, w)

    want, want_g = jax.value_and_grad(plain, argnums=(0, 1, 2))(u, v, c)
    got, got_g = jax.value_and_grad(fused, argnums=(0, 1, 2))(u, v, c)
    assert np.isfinite(float(got))
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    np.testing.assert_allclose(float(jax.jit(fused)(u, v, c)), float(want), rtol=1e-6)
    for a, b in zip(got_g, want_g, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # The gradient is the softmax minus the one-hot target, scaled by w: a hand check of c.
    p = jax.nn.softmax((u @ v + c).at[:, 0].set(-jnp.inf), axis=1)
    g_c = jnp.sum(w[:, None] * (p - jax.nn.one_hot(tgt, n)), axis=0)
    np.testing.assert_allclose(np.asarray(got_g[2]), np.asarray(g_c), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n_in", [1, 3])
def test_agru_inputs_catalogue_lookup_equals_projecting_events(n_in):
    b, t, e, h, n = 3, 6, 4, 5, 9
    p = cells.init_agru(jax.random.key(1), e, h, n_in, 2)
    emb = jax.random.normal(jax.random.key(2), (n + 1, e))
    rng = np.random.default_rng(0)
    items = jnp.asarray(rng.integers(0, n + 1, (b, t)))
    mask = jnp.asarray(rng.random((b, t)) < 0.8)
    reset = jnp.zeros((b, t), bool).at[:, 0].set(True)
    ctx = jnp.asarray(rng.integers(0, n_in, (b, t)))
    alpha = jnp.asarray(rng.uniform(0.5, 1.5, (b, t)), jnp.float32)
    x = emb[items] * mask[..., None]
    plain = cells.agru_inputs(p, x, alpha, ctx, mask, reset, "input")
    looked = cells.agru_inputs(
        p, x, alpha, ctx, mask, reset, "input", items_BxT=items, item_emb_NxE=emb
    )
    for a, b_ in zip(plain, looked, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b_), rtol=1e-5, atol=1e-6)
    # Context selection by hand: row 0, step 1 uses I_{ctx} of its own event.
    want = alpha[0, 1] * (x[0, 1] @ p["w_in"][ctx[0, 1]]) + p["b_c"]
    np.testing.assert_allclose(np.asarray(plain[0][0, 1]), np.asarray(want), rtol=1e-5)


def _examples(rng, n_users, t, n_items):
    return bench.eval_examples(rng, n_users, t, n_items, 2, 3)


def test_eval_batches_by_length_cover_every_example_once_and_cut_only_padding():
    rng = np.random.default_rng(0)
    ex = _examples(rng, 23, 16, 30)
    seen = []
    for batch, hist, idx in ds.iterate_eval_batches_by_length(ex, 5, n_shapes=4):
        width = batch["items"].shape[1]
        lengths = ex["mask"][idx].sum(1)
        assert width % 4 == 0 and width >= lengths.max() and width - lengths.max() < 4
        assert batch["mask"].shape == (5, width)
        np.testing.assert_array_equal(batch["items"][: len(idx)], ex["items"][idx, :width])
        assert not ex["mask"][idx, width:].any()  # only padding was cut
        np.testing.assert_array_equal(batch["target"][: len(idx)], ex["target"][idx])
        for r, e in enumerate(idx):
            row = ex["hist_items"][ex["hist_offsets"][e] : ex["hist_offsets"][e + 1]]
            assert hist[r, : len(row)].tolist() == row.tolist() and not hist[r, len(row) :].any()
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(23))
    lens = ex["mask"].sum(1)[seen]
    assert all(np.diff(lens) <= 0)  # longest first


def test_sorted_trimmed_evaluation_equals_plain_batches(tiny_config):
    n_items, t = 40, 12
    tiny_config.eval.batch_size = 7
    tiny_config.model.dropout = 0.0
    rc = from_config(tiny_config, n_items=n_items, n_input_contexts=2, n_transfer_contexts=3)
    params = model_lib.init_params(rc.model, 0)
    ex = _examples(np.random.default_rng(1), 30, t, n_items)
    got = evaluate(params, rc, ex, n_items, "e")
    # The plain way: examples in order, full width, one batch at a time.
    plain = dataclasses.replace(model_scorer(params, rc), by_length=False, trim_time=False)
    want = evaluate_scorer(plain, ex, rc.eval, n_items, "e")
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-9), k


def test_inverse_cdf_draws_follow_q_and_skip_zero_probability(monkeypatch):
    monkeypatch.setattr(loss_lib, "_GUMBEL_MAX_ELEMENTS", 0)  # force the inverse CDF
    q = np.array([0.0, 0.5, 0.0, 0.3, 0.2])
    with np.errstate(divide="ignore"):
        log_q = jnp.asarray(np.log(q), jnp.float32)
    draws = np.asarray(loss_lib._draw(jax.random.key(0), log_q, 20000))
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[0] == 0 and freq[2] == 0
    np.testing.assert_allclose(freq, q, atol=0.015)


def test_matmul_flops_counts_every_scan_iteration():
    def f(x, w):
        def body(h, _):
            return jnp.tanh(h @ w), None

        h, _ = jax.lax.scan(body, x, None, length=7)
        return jnp.sum(h @ w.T)

    x, w = jnp.ones((4, 3)), jnp.ones((3, 3))
    assert bench.matmul_flops(f, x, w) == 8 * 2 * 4 * 3 * 3  # 7 in the scan + 1 after
    # The gradient in both operands: each product has two more (one per operand).
    assert bench.matmul_flops(jax.grad(f, argnums=(0, 1)), x, w) == 3 * 8 * 2 * 4 * 3 * 3


def test_bench_run_writes_every_figure(tmp_path, tiny_config):
    c = tiny_config
    import ml_collections

    c.bench = b = ml_collections.ConfigDict()
    b.n_items, b.max_len, b.full_rows = 30, 8, True
    b.n_input_contexts, b.n_transfer_contexts = 2, 3
    b.n_batches, b.train_steps, b.n_eval_users, b.eval_repeats, b.matmul_n = 1, 2, 20, 1, 64
    out = bench.run(c, str(tmp_path))
    saved = json.loads((tmp_path / "bench.json").read_text())
    for key in (
        "train_events_per_second",
        "train_step_flops",
        "train_flops_fraction_of_peak",
        "matmul_peak_flops_per_second",
        "eval_users_per_second",
        "compile_seconds",
        "peak_rss_bytes",
        "final_loss",
    ):
        assert saved[key] == out[key] and saved[key] > 0, key
    assert set(saved["compile_seconds_by_function"]) >= {"train_step", "rank_and_topk"}
    assert saved["train_events_per_second"] == pytest.approx(
        c.train.batch_size * 8 * 2 / saved["train_step_seconds"] / 2, rel=1e-6
    )
    if jax.devices()[0].platform == "cpu":
        assert saved["device_memory"] is None and "CPU" in saved["device_memory_note"]
    assert saved["memory_bounds_bytes"]["eval_score_block"] == c.eval.batch_size * 31 * 4
