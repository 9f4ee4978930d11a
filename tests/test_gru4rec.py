"""GRU4Rec done right: one test (or more) per known third-party GRU4Rec bug (Hidasi & Czapp
2023, "The effect of third party implementations on reproducibility"), pinning that our GRU
baseline (``configs/gru4rec.py``: ``cell=gru``, ``duration_mode=none``, tied embeddings) does
not have it, plus the BPR-max loss on hand-computed numbers."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from durgru_jax import layers
from durgru_jax.base_config import get_base_config
from durgru_jax.bptt import chunked_updates
from durgru_jax.config import ConfigError, LossConfig, ModelConfig, OptimConfig, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data.sources import load_prepared
from durgru_jax.evaluate import _eval_forward
from durgru_jax.loss import (
    bpr_max_loss,
    carried_losses,
    full_softmax_loss,
    losses,
    sampled_softmax_loss,
)
from durgru_jax.metrics import rank_and_topk
from durgru_jax.model import encode, init_params, score_factors, user_vector
from durgru_jax.optim import adagrad_momentum
from durgru_jax.train import make_optimizer

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
# Jitted: run eagerly, the scans and their gradients dispatch op by op (a minute per test).
_chunked_updates = jax.jit(chunked_updates, static_argnums=(0, 1, 5, 6))


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
    u_packed, _ = _eval_forward(PARAMS, cfg, packed)
    u_alone, _ = _eval_forward(PARAMS, cfg, alone)
    np.testing.assert_allclose(u_packed, u_alone, atol=1e-6)
    u_carried, _ = _eval_forward(PARAMS, cfg, _batch([A + B], [(0,)]))
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
    # `official`: every switch on, with retailrocket_bprmax_shared_best's values.
    rc = from_config(module.get_config("ml1m,bpr_max,official"), n_items=10)
    m, lo, o, t = rc.model, rc.loss, rc.optim, rc.train
    assert (m.hidden_dim, m.embed_dim, m.embed_rate, m.hidden_rate) == (224, 224, 0.5, 0.05)
    assert (lo.bpreg, lo.bpr_elu, lo.n_sampled, lo.sample_alpha) == (1.95, 0.5, 2048, 0.4)
    assert (o.name, o.learning_rate, o.momentum, o.clip_norm) == ("adagrad_momentum", 0.05, 0.4, 0)
    assert (t.batch_size, t.bptt, t.epochs, m.init_bias_from_popularity) == (80, 1, 10, False)
    # Without `official` (or with `ours`, the same config), none of them: the switches are off.
    assert module.get_config("ml1m,bpr_max") == module.get_config("ml1m,bpr_max,ours")
    rc = from_config(module.get_config("ml1m,bpr_max"), n_items=10)
    assert (rc.loss.bpr_elu, rc.train.bptt, rc.optim.name) == (0.0, 0, "adam")
    assert rc.model.embed_rate == rc.model.hidden_rate == rc.model.dropout


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
    u_eval, _ = _eval_forward(PARAMS, cfg, batch)
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


# --------------------------------------------------------------- the official code's training
# (configs/gru4rec.py:...,official): ELU before BPR-max, two dropout rates, Adagrad with
# momentum, one-step session-parallel updates.


def test_bpr_max_elu_by_hand():
    """GRU4Rec's ``bpr_max_loss_with_elu``: every score, the target's included, goes through
    ELU(0.5) first. The scores 2, 1, 0.5, -3 become 2, 1, 0.5, 0.5 (e^-3 - 1) = -0.47510647.
    Row 0 (target 1; negatives item 2 and the sample, item 4): r_i = 2, r_j = (1, -0.47510647);
    row 1 (target 2): r_i = 1, r_j = (2, -0.47510647); bpreg 0.5:
    L0 = 0.69361847, L1 = 3.02071803 (raw scores: 0.87877516, 3.31240398)."""

    def elu(x):
        return np.where(x > 0, x, 0.5 * (np.exp(x) - 1.0))

    def by_hand(pos, negs):  # the BPR-max of `test_bpr_max_by_hand`'s comment
        s = np.exp(negs) / np.exp(negs).sum()
        return -np.log(np.sum(s / (1 + np.exp(negs - pos)))) + 0.5 * np.sum(s * negs**2)

    u, v, c, tgt, ok, log_q = _bpr_inputs([1, 2, 4], [True, True, True])
    got = bpr_max_loss(jax.random.PRNGKey(0), u, v, c, tgt, ok, 1, log_q, 0.5, elu=0.5)
    r = elu(np.array([2.0, 1.0, 0.5, -3.0]))
    want = [
        by_hand(r[0], r[[1, 3, 3]]),  # negatives: item 2, item 4 (row 2's target), the sample
        by_hand(r[1], r[[0, 3, 3]]),
        by_hand(r[3], r[[0, 1]]),  # target item 4: its own score is ELU'd; the sample is a hit
    ]
    np.testing.assert_allclose(np.asarray(got)[:, 0], want, rtol=1e-5)
    u2, v2, c2, tgt2, ok2, _ = _bpr_inputs([1, 2], [True, True])
    got2 = bpr_max_loss(jax.random.PRNGKey(0), u2, v2, c2, tgt2, ok2, 1, log_q, 0.5, elu=0.5)
    np.testing.assert_allclose(np.asarray(got2)[:, 0], [0.69361847, 3.02071803], rtol=1e-5)
    # elu=0 is the raw-score loss.
    np.testing.assert_allclose(_bpr([1, 2], [True, True]), BPR_WANT, rtol=1e-5)


def test_bpr_elu_switch_reaches_the_loss():
    batch, key, log_pop = _batch3(), jax.random.PRNGKey(3), jnp.zeros(N_ITEMS + 1)
    key_samp = jax.random.split(key, 3)[2]
    hs, _ = _encode(PARAMS, _cfg(), batch)
    v, c = score_factors(PARAMS, _cfg())
    valid = batch["mask"] & (batch["targets"] > 0)
    log_q = jnp.log(jnp.full(N_ITEMS + 1, 1.0 / N_ITEMS)).at[0].set(-jnp.inf)
    for elu in (0.0, 0.5):
        lcfg = LossConfig(target="bpr_max", n_sampled=5, aux_weight=0.0, bpr_elu=elu)
        (total, _), _ = _vg_losses(PARAMS, _cfg(), lcfg, batch, key, log_pop, True)
        u = user_vector(PARAMS, _cfg(), hs)
        per = bpr_max_loss(key_samp, u, v, c, batch["targets"], valid, 5, log_q, 1.0, elu=elu)
        np.testing.assert_allclose(total, np.asarray(per)[valid].mean(), rtol=1e-5)
    with pytest.raises(ConfigError, match="loss.bpr_elu"):
        LossConfig(bpr_elu=-0.5)


def test_separate_dropout_rates_act_on_embeddings_and_hidden_states(monkeypatch):
    """``model.dropout_embed`` on the item embeddings entering the cell (width E = 6),
    ``model.dropout_hidden`` on the states leaving it (width H = 5); -1: ``model.dropout``."""
    rng = np.random.default_rng(0)
    batch = _batch([list(rng.integers(1, N_ITEMS + 1, 40)) for _ in range(64)], [(0,)] * 64, 40)
    key = jax.random.PRNGKey(7)
    seen = []
    real = layers.dropout

    def spy(x, rate, k):
        out = real(x, rate, k)
        live = np.asarray(x) != 0
        seen.append((x.shape[-1], rate, float(np.mean(np.asarray(out)[live] == 0))))
        return out

    monkeypatch.setattr(layers, "dropout", spy)
    cfg = dataclasses.replace(_cfg(0.2), dropout_embed=0.5, dropout_hidden=0.05)
    encode(PARAMS, cfg, batch, key)
    assert [(w, r) for w, r, _ in seen] == [(E, 0.5), (H, 0.05)]
    assert abs(seen[0][2] - 0.5) < 0.02 and abs(seen[1][2] - 0.05) < 0.01  # the masks' rates
    monkeypatch.setattr(layers, "dropout", real)
    # -1 (the default) takes model.dropout: the same masks as before the switch existed.
    both = dataclasses.replace(_cfg(0.3), dropout_embed=0.3, dropout_hidden=0.3)
    default = encode(PARAMS, _cfg(0.3), batch, key)[0]
    np.testing.assert_array_equal(default, encode(PARAMS, both, batch, key)[0])
    # Hidden dropout only: exactly the evaluation states under the output mask of the key.
    hidden = dataclasses.replace(_cfg(0.5), dropout_embed=0.0, dropout_hidden=0.3)
    hs_eval, _ = encode(PARAMS, _cfg(), batch)
    want = real(hs_eval, 0.3, jax.random.split(key)[1])
    np.testing.assert_array_equal(encode(PARAMS, hidden, batch, key)[0], want)
    for bad in (1.0, -0.5):
        with pytest.raises(ConfigError, match="model.dropout_hidden"):
            dataclasses.replace(_cfg(), dropout_hidden=bad)


def test_adagrad_momentum_three_steps_by_hand():
    """The official ``IndexedAdagradM``: acc += g^2; v = m v - lr g / sqrt(acc + 1e-6);
    p += v. Dense leaves move by their momentum even with a zero gradient; the rows of the
    item tables (``item_emb``, ``out/b``) with no gradient keep their momentum and stay."""
    lr, m, eps = 0.05, 0.4, 1e-6
    p0 = {
        "item_emb": np.array([[0.1, -0.2], [0.3, 0.0], [-0.5, 0.4]], np.float32),
        "cell": {"w": np.array([1.0, -1.0], np.float32)},
        "out": {"b": np.array([0.0, 0.2, -0.1], np.float32)},
    }
    grads = [
        {"item_emb": [[0.5, -1.0], [0.0, 0.0], [2.0, 0.1]], "w": [0.3, -0.2], "b": [1.0, 0.0, 0.5]},
        {"item_emb": [[0.2, 0.1], [1.0, -1.0], [0.0, 0.0]], "w": [0.0, 0.0], "b": [0.0, -2.0, 0.5]},
        {"item_emb": [[-0.3, 0.0], [0.0, 0.0], [1.0, 1.0]], "w": [-0.1, 0.4], "b": [0.1, 0.0, 0.0]},
    ]
    tx = make_optimizer(
        OptimConfig(name="adagrad_momentum", learning_rate=lr, momentum=m, clip_norm=0.0), 3
    )
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)
    start = {"item_emb": p0["item_emb"], "w": p0["cell"]["w"], "b": p0["out"]["b"]}
    want = {k: np.array(v, np.float64) for k, v in start.items()}
    acc = {k: np.zeros_like(v) for k, v in want.items()}
    mom = {k: np.zeros_like(v) for k, v in want.items()}
    for g in grads:
        g = {k: np.array(v, np.float64) for k, v in g.items()}
        for k in want:
            acc[k] += g[k] ** 2
            new = m * mom[k] - lr * g[k] / np.sqrt(acc[k] + eps)
            if k != "w":  # an item table: rows without gradient keep v and stay put
                rows = np.any(g[k] != 0, axis=-1) if g[k].ndim > 1 else g[k] != 0
                rows = rows.reshape(-1, *([1] * (g[k].ndim - 1)))
                want[k] += np.where(rows, new, 0.0)
                mom[k] = np.where(rows, new, mom[k])
            else:
                want[k] += new
                mom[k] = new
        jg = {"item_emb": g["item_emb"], "cell": {"w": g["w"]}, "out": {"b": g["b"]}}
        updates, state = tx.update(jax.tree.map(jnp.float32, jg), state)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["item_emb"], want["item_emb"], rtol=1e-5)
    np.testing.assert_allclose(params["cell"]["w"], want["w"], rtol=1e-5)
    np.testing.assert_allclose(params["out"]["b"], want["b"], rtol=1e-5)
    # The row-wise update of the item tables matters here: all-dense Adagrad-M differs.
    dense = adagrad_momentum(lr, m, item_tables={})
    params_d = jax.tree.map(jnp.asarray, p0)
    state_d = dense.init(params_d)
    for g in grads:
        g = {k: np.array(v, np.float32) for k, v in g.items()}
        jg = {"item_emb": g["item_emb"], "cell": {"w": g["w"]}, "out": {"b": g["b"]}}
        updates, state_d = dense.update(jax.tree.map(jnp.float32, jg), state_d)
        params_d = optax.apply_updates(params_d, updates)
    assert not np.allclose(params_d["item_emb"], want["item_emb"], atol=1e-3)
    np.testing.assert_allclose(params_d["cell"]["w"], want["w"], rtol=1e-5)


def _carried(lcfg):
    def loss_fn(params, chunk, key, h0):
        return carried_losses(params, _cfg(), lcfg, chunk, key, jnp.zeros(N_ITEMS + 1), True, h0)

    return loss_fn


def test_one_step_updates_carry_the_state_across_steps():
    """``train.bptt=1`` with a zero learning rate: the loss of the T one-step updates is the
    windowed loss, i.e. each step starts from the state the window's BPTT reaches there
    (resets included); started from zeros instead, every step would give another loss."""
    batch = jax.tree.map(jnp.asarray, _batch3())
    lcfg = LossConfig(target="full", aux_weight=0.0)
    key, tx = jax.random.PRNGKey(4), optax.sgd(0.0)
    loss_fn = _carried(lcfg)
    _, _, parts = _chunked_updates(loss_fn, tx, PARAMS, tx.init(PARAMS), batch, 1, H, key)
    (want, _), _ = _vg_losses(PARAMS, _cfg(), lcfg, batch, key, jnp.zeros(N_ITEMS + 1), True)
    np.testing.assert_allclose(parts["loss"], want, rtol=1e-5)
    valid = np.asarray(batch["mask"] & (batch["targets"] > 0))
    cold = [
        float(loss_fn(PARAMS, {k: v[:, t : t + 1] for k, v in batch.items()}, key, None)[0])
        * valid[:, t].sum()
        for t in range(T)
    ]
    assert abs(sum(cold) / valid.sum() - float(want)) > 1e-3


def test_truncated_bptt_updates_by_hand():
    """``train.bptt=4`` over T = 6 steps: two SGD updates, on steps 0-3 from zero states and
    on steps 4-5 from the states reached (no gradient through them), chunk i drawing its
    negatives with ``fold_in(key, i)``; the padding of the last chunk adds nothing."""
    batch = jax.tree.map(jnp.asarray, _batch3())
    lcfg = LossConfig(target="sampled", n_sampled=4, sampler="uniform", aux_weight=0.0)
    key, lr = jax.random.PRNGKey(5), 0.5
    loss_fn = _carried(lcfg)
    tx = optax.sgd(lr)
    got, _, parts = _chunked_updates(loss_fn, tx, PARAMS, tx.init(PARAMS), batch, 4, H, key)
    params, h, total, n = PARAMS, jnp.zeros((3, H)), 0.0, 0
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    for i, (lo, hi) in enumerate(((0, 4), (4, 6))):
        chunk = {k: v[:, lo:hi] for k, v in batch.items()}
        (loss, (_, h)), g = grad_fn(params, chunk, jax.random.fold_in(key, i), h)
        params = jax.tree.map(lambda p, d: p - lr * d, params, g)
        n_i = int(jnp.sum(chunk["mask"] & (chunk["targets"] > 0)))
        total, n = total + float(loss) * n_i, n + n_i
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(parts["loss"], total / n, rtol=1e-5)
    # The second update saw the first one's parameters: one update on the whole window differs.
    (_, _), g_all = grad_fn(PARAMS, batch, key, None)
    once = jax.tree.map(lambda p, d: p - lr * d, PARAMS, g_all)
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
    assert not np.allclose(flat(once), flat(got), atol=1e-4)


def test_bptt_needs_a_plain_gru_and_a_constant_learning_rate():
    c = get_base_config()
    c.train.bptt = 1
    with pytest.raises(ConfigError, match="train.bptt=1 needs config.model.cell='gru'"):
        from_config(c, n_items=10)  # the default cell is the aGRU
    c.model.cell, c.model.duration_mode = "gru", "none"
    assert from_config(c, n_items=10).train.bptt == 1
    c.optim.schedule = "cosine"
    with pytest.raises(ConfigError, match="optim.schedule='constant'"):
        from_config(c, n_items=10)
