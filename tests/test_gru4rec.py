"""GRU4Rec done right: one test (or more) per known third-party GRU4Rec bug (Hidasi & Czapp
2023, "The effect of third party implementations on reproducibility"), pinning that our GRU
baseline (``configs/gru4rec.py``: ``cell=gru``, ``duration_mode=none``, tied embeddings) does
not have it, plus the BPR-max loss on hand-computed numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax import evaluate as evaluate_lib
from durgru_jax.config import LossConfig, ModelConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data.sources import load_prepared
from durgru_jax.metrics import rank_and_topk
from durgru_jax.model import (
    bpr_max_loss,
    encode,
    full_softmax_loss,
    init_params,
    losses,
    sampled_softmax_loss,
    score_factors,
    user_vector,
)

N_ITEMS, H, E = 12, 5, 6
T = 6


def _cfg(dropout: float = 0.0) -> ModelConfig:
    return ModelConfig(
        cell="gru",
        duration_mode="none",
        embed_dim=E,
        hidden_dim=H,
        dropout=dropout,
        tie_output=True,
        n_items=N_ITEMS,
    )


PARAMS = init_params(_cfg(), 0)
_encode = jax.jit(encode, static_argnums=1)
# One jitted loss-and-gradient shared by every test (one batch shape: fewer compilations).
_vg_losses = jax.jit(jax.value_and_grad(losses, has_aux=True), static_argnums=(1, 2, 6))


def _batch(items_rows, resets_rows, t: int = T) -> dict[str, np.ndarray]:
    """Rows of item ids (right-padded to ``t``) with the given reset positions."""
    b = len(items_rows)
    items = np.zeros((b, t), np.int32)
    reset = np.zeros((b, t), bool)
    for r, (row, rs) in enumerate(zip(items_rows, resets_rows, strict=True)):
        items[r, : len(row)] = row
        reset[r, list(rs)] = True
    mask = items > 0
    zeros_f, zeros_i = np.zeros((b, t), np.float32), np.zeros((b, t), np.int32)
    targets = np.where(mask, (items % N_ITEMS) + 1, 0).astype(np.int32)
    return {
        "items": items,
        "mask": mask,
        "reset": reset,
        "in_ctx": zeros_i,
        "tr_ctx": zeros_i,
        "dur": zeros_f,
        "dur_ok": np.zeros((b, t), bool),
        "dur_mean": zeros_f,
        "dur_std": np.ones((b, t), np.float32),
        "dur_user_ok": np.zeros((b, t), bool),
        "targets": targets,
    }


A, B = [3, 7, 1], [5, 9, 2]  # two sessions


def _batch3():
    """Session A then B packed in one row, B alone, and a two-event row."""
    return _batch([A + B, B, [4, 6]], [(0, 3), (0,), (0,)])


# --------------------------------------------------------------- bug 1: reset mask never cleared


def test_reset_restarts_state_at_its_step_only():
    packed = _batch([A + B], [(0, 3)])
    hs, _ = _encode(PARAMS, _cfg(), packed)
    alone, _ = _encode(PARAMS, _cfg(), _batch([B], [(0,)]))
    # The second session, packed after the first, is exactly the session run alone...
    np.testing.assert_allclose(hs[0, 3:6], alone[0, :3], atol=1e-6)
    # ...and the reset did something: without it, the state carries session A over.
    no_reset, _ = _encode(PARAMS, _cfg(), _batch([A + B], [(0,)]))
    assert not np.allclose(no_reset[0, 3:6], alone[0, :3], atol=1e-3)
    # Steps after the reset are not reset again: step 4 is not item B[1] from a zero state,
    restarted, _ = _encode(PARAMS, _cfg(), _batch([B[1:]], [(0,)]))
    assert not np.allclose(hs[0, 4], restarted[0, 0], atol=1e-3)
    # and the state of step 5 still depends on the item at the reset step (3).
    other = _batch([A + [8] + B[1:]], [(0, 3)])
    hs_other, _ = _encode(PARAMS, _cfg(), other)
    assert not np.allclose(hs_other[0, 5], hs[0, 5], atol=1e-4)
    np.testing.assert_allclose(hs_other[0, :3], hs[0, :3], atol=0)  # before it: unchanged


@pytest.fixture(scope="module")
def tiny_prepared(make_tiny):
    config = make_tiny()
    return load_prepared(config.data, seed=0)


def test_packed_training_rows_reset_exactly_at_window_starts(tiny_prepared):
    """Cutting every packed row at its resets gives back exactly the unpacked windows: a reset
    flag left set (or missing) would cut a window in two (or join two windows)."""
    packed = ds.train_windows(tiny_prepared, pack=True)
    unpacked = ds.train_windows(tiny_prepared, pack=False)
    assert len(packed["items"]) < len(unpacked["items"])  # packing does happen here

    def segments(w):
        out = []
        for items, mask, reset in zip(w["items"], w["mask"], w["reset"], strict=True):
            assert not np.any(reset & ~mask)
            starts = list(np.flatnonzero(reset)) + [int(mask.sum())]
            assert starts[0] == 0 or not mask.any()
            out += [tuple(items[s:e]) for s, e in zip(starts[:-1], starts[1:], strict=True)]
        return sorted(out)

    assert segments(packed) == segments(unpacked)
    assert int(packed["reset"].sum()) == len(unpacked["items"])


# --------------------------------------------------------------- bug 2: no reset at evaluation


def test_evaluation_forward_honours_reset():
    cfg = _cfg()
    packed = _batch([A + B], [(0, 3)])
    alone = _batch([B], [(0,)])
    u_packed, _ = evaluate_lib._eval_forward(PARAMS, cfg, packed)
    u_alone, _ = evaluate_lib._eval_forward(PARAMS, cfg, alone)
    np.testing.assert_allclose(u_packed, u_alone, atol=1e-6)
    u_carried, _ = evaluate_lib._eval_forward(PARAMS, cfg, _batch([A + B], [(0,)]))
    assert not np.allclose(u_carried, u_alone, atol=1e-3)


def test_evaluation_examples_start_from_a_reset(tiny_prepared):
    """Every evaluation row starts from a fresh state (a reset at its first input) and has no
    other reset, so nothing of another user or session is carried into it."""
    for split in ("valid", "test"):
        ex = ds.eval_examples(tiny_prepared, split)
        has_input = ex["mask"].any(axis=1)
        assert has_input.all()
        np.testing.assert_array_equal(ex["reset"][:, 0], has_input)
        assert not ex["reset"][:, 1:].any()


def test_config_is_gru4rec():
    path = Path(__file__).resolve().parents[1] / "configs" / "gru4rec.py"
    spec = importlib.util.spec_from_file_location("cfg_gru4rec_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for arg, target in (("synthetic", "sampled"), ("ml1m,bpr_max", "bpr_max")):
        rc = from_config(module.get_config(arg), n_items=10)
        m = rc.model
        assert (m.cell, m.duration_mode, m.tie_output) == ("gru", "none", True)
        assert m.dropout > 0 and rc.loss.aux_weight == 0.0 and rc.loss.target == target
    assert module.get_config("ml1m").eval.exclude_history is False
    with pytest.raises(ValueError, match="gru4rec variant"):
        module.get_config("ml1m,bpr")


# --------------------------------------------------------------- bug 3: double softmax


def test_cross_entropy_is_one_log_softmax_by_hand():
    # One user vector, three items with logits 2, 1, 0; padding (id 0) scores 50 but is
    # never a candidate. -log softmax = log(e^2 + e + 1) - 2 = 0.40760596; a softmax applied
    # before the cross-entropy (log softmax of the probabilities 0.665, 0.245, 0.090) would
    # give 0.79719033.
    u = jnp.array([[1.0, 0.0]])
    v = np.array([[0.0, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    c = np.array([50.0, 0.0, 0.0, 0.0], np.float32)
    got = float(full_softmax_loss(u, v, c, np.array([1], np.int32))[0])
    np.testing.assert_allclose(got, 0.40760596, rtol=1e-6)
    assert abs(got - 0.79719033) > 0.3


def test_sampled_cross_entropy_with_logq_by_hand():
    """Two rows at one step, targets 1 and 2; one shared sample, always item 4 (q = 1 there).
    Item scores 2, 1, 0.5, -3 (u = 1, D = 1); training frequencies p = .4, .3, .2, .1; n_t = 2.
    Each logit is reduced by log(n_t p_j + S q_j):
    row 0: pos 2 - log .8, in-batch item 2: 1 - log .6, sample: -3 - log(.2 + 1);
    row 1: pos 1 - log .6, in-batch item 1: 2 - log .8, the same sample."""
    u = np.ones((2, 1, 1), np.float32)
    v = np.array([[0.0, 2.0, 1.0, 0.5, -3.0]], np.float32)
    c = np.zeros(5, np.float32)
    tgt = np.array([[1], [2]], np.int32)
    valid = np.ones((2, 1), bool)
    log_q = jnp.asarray([-jnp.inf, -jnp.inf, -jnp.inf, -jnp.inf, 0.0])
    pop = jnp.asarray([0.0, 0.4, 0.3, 0.2, 0.1])
    got = np.asarray(
        sampled_softmax_loss(jax.random.PRNGKey(0), u, v, c, tgt, valid, 1, log_q, pop)
    )

    def by_hand(pos, others):
        return np.log(np.exp(pos) + np.sum(np.exp(others))) - pos

    smp = -3.0 - np.log(1.2)
    want = [
        by_hand(2 - np.log(0.8), [1 - np.log(0.6), smp]),
        by_hand(1 - np.log(0.6), [2 - np.log(0.8), smp]),
    ]
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5)


def test_target_loss_and_ranking_use_raw_scores():
    """The loss of the training path is one log-softmax of the raw scores ``u V + c``; the
    evaluation ranks those same raw scores (a softmax first would also tie items whose
    probabilities underflow to 0 in float32)."""
    cfg = _cfg()
    batch = _batch3()
    lcfg = LossConfig(target="full", aux_weight=0.0)
    (_, parts), _ = _vg_losses(
        PARAMS, cfg, lcfg, batch, jax.random.PRNGKey(2), jnp.zeros(N_ITEMS + 1), True
    )
    hs, _ = _encode(PARAMS, cfg, batch)
    v, c = score_factors(PARAMS, cfg)
    logits = np.asarray(user_vector(PARAMS, cfg, hs) @ v + c, np.float64)[..., 1:]
    valid = batch["mask"] & (batch["targets"] > 0)
    want = [
        np.log(np.exp(logits[b, t]).sum()) - logits[b, t, batch["targets"][b, t] - 1]
        for b, t in np.argwhere(valid)
    ]
    np.testing.assert_allclose(parts["target_loss"], np.mean(want), rtol=1e-5)
    # The evaluation's user vector gives these logits for the last event.
    u_eval, _ = evaluate_lib._eval_forward(PARAMS, cfg, batch)
    last = np.stack([logits[0, 5], logits[1, 2], logits[2, 1]])  # rows of 6, 3, 2 events
    np.testing.assert_allclose(np.asarray(u_eval @ v + c)[:, 1:], last, atol=1e-5)
    # Ranking of raw logits 50, -60, -70, -80: the target (item 3) has rank 2 (0-based).
    # Softmax probabilities of the last three all underflow to 0.0 in float32: a tie, rank 3.
    s = np.array([[0.0, 50.0, -60.0, -70.0, -80.0]], np.float32)
    assert np.all(np.asarray(jax.nn.softmax(jnp.asarray(s[:, 1:]))[0, 1:]) == 0.0)
    rank, top = rank_and_topk(
        jnp.ones((1, 1)),
        jnp.asarray(s),
        jnp.zeros(5),
        jnp.asarray([3]),
        jnp.zeros((1, 1), jnp.int32),
        n_items=4,
        kmax=4,
        item_chunk=5,
        exclude_history=False,
    )
    assert int(rank[0]) == 2
    np.testing.assert_array_equal(np.asarray(top)[0], [1, 2, 3, 4])


# --------------------------------------------------------------- bug 4: wrong BPR-max

# Hand example: rows with targets 1 and 2 (u = 1, D = 1), item scores r = 2, 1, 0.5, -3 for
# items 1..4; one shared sample, always item 4. Negatives of row 0: item 2 (in-batch) and item
# 4, r_j = (1, -3); of row 1: item 1 and item 4, r_j = (2, -3). bpreg = 0.5.
# Row 0: s = softmax(1, -3) = (0.98201379, 0.01798621); sigmoid(r_i - r_j) = sigmoid(1, 5) =
#   (0.73105858, 0.99330715); sum s_j sigmoid = 0.73577544, -log = 0.30683032;
#   sum s_j r_j^2 = 0.98201379 + 9 * 0.01798621 = 1.14388968; L = 0.30683032 + 0.5 * 1.14388968
#   = 0.87877516.
# Row 1: s = softmax(2, -3) = (0.99330715, 0.00669285); sigmoid(-1, 4) = (0.26894142,
#   0.98201379); sum = 0.27371391, -log = 1.29567185; sum s_j r_j^2 = 4.03346425;
#   L = 1.29567185 + 0.5 * 4.03346425 = 3.31240398.
BPR_WANT = np.array([0.87877516, 3.31240398])
# Common wrong variants on row 0: the softmax over all candidates including the positive
# (1.76272500), the regulariser without the softmax weights: mean r_j^2 (2.80683032) or the
# sum (5.30683032).
BPR_WRONG_ROW0 = (1.76272500, 2.80683032, 5.30683032)


def _bpr_inputs(targets, valid):
    b = len(targets)
    u = np.ones((b, 1, 1), np.float32)
    v = np.array([[0.0, 2.0, 1.0, 0.5, -3.0]], np.float32)
    c = np.zeros(5, np.float32)
    log_q = jnp.asarray([-jnp.inf, -jnp.inf, -jnp.inf, -jnp.inf, 0.0])
    tgt = np.array(targets, np.int32)[:, None]
    return u, v, c, tgt, np.array(valid)[:, None], log_q


def _bpr(targets, valid, n_sampled=1, bpreg=0.5):
    u, v, c, tgt, ok, log_q = _bpr_inputs(targets, valid)
    out = bpr_max_loss(jax.random.PRNGKey(0), u, v, c, tgt, ok, n_sampled, log_q, bpreg)
    return np.asarray(out)[:, 0]


def test_bpr_max_by_hand():
    got = _bpr([1, 2], [True, True])
    np.testing.assert_allclose(got, BPR_WANT, rtol=1e-5)
    for wrong in BPR_WRONG_ROW0:
        assert abs(got[0] - wrong) > 0.5
    # bpreg scales only the regulariser: 0.5 -> 0 removes 0.5 * 1.14388968 from row 0.
    np.testing.assert_allclose(_bpr([1, 2], [True, True], bpreg=0.0)[0], 0.30683032, rtol=1e-5)
    # Three draws of the same item are three negatives (candidates are counted, as in the
    # official code): row 0's weights become softmax(1, -3, -3, -3).
    assert abs(_bpr([1, 2], [True, True], n_sampled=3)[0] - BPR_WANT[0]) > 1e-3


def test_bpr_max_removes_accidental_hits_and_padding():
    # A third row with row 1's target: for row 1 it is an accidental hit and removed (its loss
    # is unchanged); for row 0 it is one more negative with score 1.
    got = _bpr([1, 2, 2], [True, True, True])
    np.testing.assert_allclose(got[1], BPR_WANT[1], rtol=1e-5)
    r = np.array([1.0, 1.0, -3.0])
    s = np.exp(r) / np.exp(r).sum()
    want0 = -np.log(np.sum(s / (1 + np.exp(r - 2.0)))) + 0.5 * np.sum(s * r**2)
    np.testing.assert_allclose(got[0], want0, rtol=1e-5)  # 0.84631051
    # A padding row (invalid, target 0) adds no candidate.
    np.testing.assert_allclose(_bpr([1, 2, 0], [True, True, False])[:2], BPR_WANT, rtol=1e-5)
    # The sample equal to the target (row 2: target 4) is removed: only item 1 and 2 remain.
    got = _bpr([1, 2, 4], [True, True, True])
    r = np.array([2.0, 1.0])
    s = np.exp(r) / np.exp(r).sum()
    want2 = -np.log(np.sum(s / (1 + np.exp(r + 3.0)))) + 0.5 * np.sum(s * r**2)
    np.testing.assert_allclose(got[2], want2, rtol=1e-5)


def test_bpr_max_through_losses_and_finite_gradients():
    cfg = _cfg()
    batch = _batch3()
    # GRU4Rec's sample_alpha: the extra negatives are drawn from popularity^0.5.
    lcfg = LossConfig(target="bpr_max", n_sampled=7, bpreg=0.7, aux_weight=0.0, sample_alpha=0.5)
    key = jax.random.PRNGKey(3)
    pop = np.arange(N_ITEMS + 1.0) / np.sum(np.arange(N_ITEMS + 1.0))
    log_pop = jnp.log(jnp.asarray(pop, jnp.float32))
    with np.errstate(divide="ignore"):
        log_q = jnp.asarray(np.log(np.sqrt(pop) / np.sqrt(pop).sum()), jnp.float32)
    (total, parts), g = _vg_losses(PARAMS, cfg, lcfg, batch, key, log_pop, True)
    hs, _ = _encode(PARAMS, cfg, batch)
    v, c = score_factors(PARAMS, cfg)
    u = user_vector(PARAMS, cfg, hs)
    valid = batch["mask"] & (batch["targets"] > 0)
    k_samp = jax.random.split(key, 3)[2]
    per = bpr_max_loss(k_samp, u, v, c, batch["targets"], valid, 7, log_q, 0.7)
    np.testing.assert_allclose(total, np.asarray(per)[valid].mean(), rtol=1e-5)
    assert set(parts) == {"target_loss", "loss"}
    leaves = jax.tree.leaves(g)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves)
    assert np.abs(np.asarray(g["item_emb"])).max() > 0


# --------------------------------------------------------------- bug 5: dropout that does nothing


def test_dropout_acts_in_training_and_keeps_the_expectation():
    rate = 0.3
    batch = _batch3()
    hs_eval, _ = _encode(PARAMS, _cfg(rate), batch)
    hs_eval = np.asarray(hs_eval)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    many = jax.jit(jax.vmap(lambda k: encode(PARAMS, _cfg(rate), batch, k)[0]))(keys)
    many = np.asarray(many)
    mask = batch["mask"]
    one = many[0][mask]
    assert not np.allclose(one, hs_eval[mask], atol=1e-3)
    # Output dropout: a share `rate` of the state entries is exactly zero.
    assert abs(np.mean(many[:, mask] == 0.0) - rate) < 0.02
    # Input dropout too: kept entries are not just the eval state scaled by 1 / (1 - rate).
    kept = one != 0.0
    assert not np.allclose(one[kept], hs_eval[mask][kept] / (1 - rate), atol=1e-3)
    # Inverted dropout keeps the expected activation (up to the GRU's nonlinearity).
    mean = many.mean(0)[mask]
    scale = np.abs(hs_eval[mask]).mean()
    assert np.abs(mean - hs_eval[mask]).mean() < 0.1 * scale
    # Without the key (evaluation) or with rate 0, no dropout at all.
    hs_0, _ = _encode(PARAMS, _cfg(0.0), batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(hs_0, hs_eval, atol=1e-6)


def test_dropout_changes_the_training_gradient_only():
    batch = _batch3()
    lcfg = LossConfig(target="full", aux_weight=0.0)
    key, log_pop = jax.random.PRNGKey(2), jnp.zeros(N_ITEMS + 1)
    _, g_drop = _vg_losses(PARAMS, _cfg(0.3), lcfg, batch, key, log_pop, True)
    _, g_none = _vg_losses(PARAMS, _cfg(0.0), lcfg, batch, key, log_pop, True)
    _, g_eval = _vg_losses(PARAMS, _cfg(0.3), lcfg, batch, key, log_pop, False)
    flat = lambda g: np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])  # noqa: E731
    assert not np.allclose(flat(g_drop), flat(g_none), atol=1e-4)
    np.testing.assert_allclose(flat(g_eval), flat(g_none), atol=1e-6)
