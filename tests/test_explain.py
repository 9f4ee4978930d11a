"""Explanations: per-step gates, exact occlusion, the noise clicks they find, --explain files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax import cells, explain_cli
from durgru_jax import explain as explain_lib
from durgru_jax.data import synthetic
from durgru_jax.recommend import Recommender


def _events(config):
    return synthetic.generate_synthetic(**config.data.synthetic.to_dict())


def test_gru_first_step_gate_by_hand():
    """From h_0 = 0 the GRU's update gate is ``alpha * sigmoid(x W_z + b_z)`` (eq. 10-11)."""
    p = cells.init_gru(jax.random.key(0), 3, 4)
    p["b"] = jnp.linspace(-1.0, 1.0, 12)
    x = jax.random.normal(jax.random.key(1), (2, 3))
    alpha = jnp.array([0.25, 0.9])
    xp = cells.gru_inputs(p, x[:, None, :], alpha[:, None], "gate")[:, 0]
    h, z = cells.gru_step_gates(p, jnp.zeros((2, 4)), xp, alpha, "gate")
    want = alpha[:, None] * jax.nn.sigmoid(x @ p["w_x"][:, :4] + p["b"][:4])
    np.testing.assert_allclose(z, want, rtol=1e-6)
    np.testing.assert_array_equal(h, cells.gru_step(p, jnp.zeros((2, 4)), xp, alpha, "gate"))


@pytest.mark.parametrize(
    "cell,mode", [("agru", "input"), ("gru", "gate"), ("recommended", "gate"), ("repeat", "gate")]
)
def test_occlusion_is_the_score_without_the_event(runs, cell, mode):
    workdir, c = runs(cell, mode)
    rec = Recommender.load(workdir)
    events = _events(c)
    who = events["user"].iloc[0]
    ev = events[events["user"] == who]
    top = rec.recommend(ev, k=2, user=who)
    ex = rec.explain(ev, top.items, user=who)
    n = min(len(ev), c.data.max_len)
    assert len(ex.events) == n and ex.attribution.shape == (n, 2)
    assert ex.ranks[0] == 1 and ex.ranks[1] == 2  # the recommender's own top-2
    np.testing.assert_allclose(ex.scores, top.scores, rtol=1e-5)
    # The visible events are the last max_len in time order; drop one, score again.
    order = ev.sort_values("timestamp", kind="stable")
    for e in (0, n // 2, n - 1):
        row = order.index[len(order) - n + e]
        again = rec.score(ev.drop(index=row), top.items, user=who)
        np.testing.assert_allclose(again - ex.scores, ex.attribution[e], atol=1e-5)
    assert ex.events["item"].tolist() == order["item"].tolist()[-n:]
    if cell != "agru":
        assert ex.events["relevance"].isna().all()
        assert (ex.events["update_gate"] <= ex.events["duration_factor"] + 1e-6).all()
    else:
        assert ex.events["relevance"].between(0, 1).all()


def test_duration_factor_finds_noise_clicks(runs):
    """Noise clicks are short for their user, so a low factor marks them (AUC over users)."""
    workdir, c = runs("agru", "input")
    rec = Recommender.load(workdir)
    events = _events(c)
    noise, factor = [], []
    for who in events["user"].unique()[:30]:
        ev = events[events["user"] == who]
        ex = rec.explain(ev, rec.recommend(ev, k=1, user=who).items, user=who)
        noise.append(ex.events["is_noise"].to_numpy())
        factor.append(ex.events["duration_factor"].to_numpy())
    auc = explain_lib.roc_auc(np.concatenate(noise), -np.concatenate(factor))
    assert auc > 0.75


def test_explain_command_writes_the_schema(runs, tmp_path):
    workdir, c = runs("agru", "input")
    users = [str(u) for u in _events(c)["user"].unique()[:2]]
    out = tmp_path / "exp"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    cmd = [sys.executable, "launch.py", "--explain", f"--workdir={workdir}"]
    cmd += [f"--users={','.join(users)}", "--k=3", f"--out={out}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    doc = json.loads((out / "explanations.json").read_text())
    assert [str(u["user"]) for u in doc["users"]] == users
    for u in doc["users"]:
        n = len(u["events"])
        assert n > 0 and len(u["recommendations"]) == 3
        for e in u["events"]:
            assert set(explain_cli.SCHEMA_EVENT) | {"is_noise"} == set(e)
        for r in u["recommendations"]:
            assert set(explain_cli.SCHEMA_REC) == set(r)
            assert len(r["attribution"]) == n and len(r["rank_change"]) == n
        assert [r["rank"] for r in u["recommendations"]] == [1, 2, 3]
    md = (out / "explanations.md").read_text()
    assert "timeline_0.png" in md and (out / "timeline_1.png").stat().st_size > 1000
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary left


def test_one_event_history(runs):
    """Without its only event the history is empty: the score of the model's initial state."""
    workdir, c = runs("gru", "gate")
    rec = Recommender.load(workdir)
    ev = _events(c).iloc[:1]
    ex = rec.explain(ev, [ev["item"].iloc[0]], user=ev["user"].iloc[0])
    empty = np.asarray(rec.c)[rec._internal(ex.items)]  # u = h = 0: the bias (untied output)
    np.testing.assert_allclose(ex.scores + ex.attribution[0], empty, atol=1e-5)


def test_bad_input_is_named(runs):
    workdir, c = runs("agru", "input")
    rec = Recommender.load(workdir)
    ev = _events(c)
    ev = ev[ev["user"] == ev["user"].iloc[0]]
    with pytest.raises(ValueError, match="unknown to the run"):
        rec.explain(ev, ["no-such-item"])
    with pytest.raises(ValueError, match="not users of the run"):
        explain_cli.explain_users(rec, ["no-such-user"], 1)


def test_roc_auc_by_hand():
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs won 1 + 1 + 0.5 (tie) + 1 of 4
    assert explain_lib.roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1]) == 0.875
