"""Vectorised sweeps (durgru_jax.vsweep): K runs as one vmapped model give what each run gives
alone through train.train_and_evaluate.

The vectorised sweep's first epoch runs all K models vmapped at once (``chunk=0``, the
accelerator default); it is interrupted and resumed by ``--sweep`` with the CPU default (the
models looped inside one jitted step, ``chunk=1``), so both step variants, and resuming from
the other's checkpoints, are checked against the same single runs.

Tolerance: the vmapped step batches every matmul over K, and XLA may fuse and sum in another
order, so losses may differ in the last float32 bits (a few 1e-7 measured); after a few Adam
steps that stays far below 1e-5. Ranks are integers, so the ranking metrics agree exactly
unless two items tie to within that error; they are compared to 1e-6.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap

import pytest

from durgru_jax import run_lib, runner, sweep, vsweep

# lr 1e-9 barely moves its model: validation never improves, so it stops early (patience 1).
RUNS = ((0, 1e-2), (1, 3e-3), (2, 1e-9))
SWEEP = textwrap.dedent(
    f"""
    def sweep(add):
        for seed, lr in {RUNS!r}:
            add(**{{"seed": seed, "optim.learning_rate": lr}})
    """
)
TOL = 1e-5


def _config(make_tiny):
    c = make_tiny()
    # Five train steps are compiled (three single runs, two vectorised), so the tiny model is
    # made to compile fast: the vmapped step treats every cell alike (the GRU checks it as
    # well as the aGRU), and the per-model randomness is checked through the auxiliary loss's
    # negatives (dropout draws from the same per-step key).
    c.model.cell = "gru"
    c.model.scan_unroll = 1
    c.model.dropout = 0.0
    c.train.epochs = 3
    c.train.patience = 1
    c.train.log_every = 1  # every step's loss is compared
    return c


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _results(path):
    with open(os.path.join(path, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, make_tiny):
    """The same 3-run sweep alone (reference) and vectorised (interrupted after one epoch,
    then resumed through `--sweep`, which must take the vectorised path)."""
    root = tmp_path_factory.mktemp("vsweep")
    path = str(root / "cfg.py")
    with open(path, "w") as f:
        f.write(SWEEP)
    config = _config(make_tiny)
    runs = sweep.expand(sweep.load_sweep(path))
    alone, vec = str(root / "alone"), str(root / "vec")
    sweep.run_sweep(config, path, alone, vectorize=False)
    dirs = [os.path.join(vec, sweep.run_name(o)) for o in runs]
    out = vsweep.train_and_evaluate_many(
        [sweep.apply(config, o) for o in runs], dirs, chunk=0, stop_after_epochs=1
    )
    assert all(r.get("interrupted") for r in out)

    def no_single_runs(*args, **kwargs):
        raise AssertionError("the sweep trained a run alone instead of vectorised")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "train_and_evaluate", no_single_runs)
        sweep.run_sweep(config, path, vec)
    return config, runs, alone, vec


def test_group_runs():
    runs = [
        {"seed": 0, "optim.learning_rate": 0.1},
        {"seed": 0, "model.cell": "gru"},
        {"seed": 1, "optim.learning_rate": 0.01},
        {"seed": 1, "model.cell": "gru"},
        {"seed": 2},
        {"model.cell": "gru", "seed": 2},
    ]
    assert vsweep.group_runs(runs, max_vmap=8) == [[0, 2, 4], [1, 3, 5]]
    assert vsweep.group_runs(runs, max_vmap=2) == [[0, 2], [1, 3], [4], [5]]
    assert vsweep.split_overrides(runs[1]) == ({"seed": 0}, {"model.cell": "gru"})


def test_vectorised_runs_equal_single_runs(sweeps):
    _, runs, alone, vec = sweeps
    for o in runs:
        a_dir, v_dir = (os.path.join(w, sweep.run_name(o)) for w in (alone, vec))
        a_log, v_log = (
            _jsonl(os.path.join(a_dir, "metrics.jsonl")),
            _jsonl(os.path.join(v_dir, "metrics.jsonl")),
        )
        a_loss = {r["step"]: r["train/loss"] for r in a_log if "train/loss" in r}
        v_loss = {r["step"]: r["train/loss"] for r in v_log if "train/loss" in r}
        assert sorted(v_loss) == sorted(a_loss) and len(a_loss) >= 8
        for step, loss in a_loss.items():
            assert v_loss[step] == pytest.approx(loss, rel=TOL, abs=TOL), (o, step)
        a_val = [r for r in a_log if "valid/ndcg@10" in r and not r.get("final")]
        v_val = [r for r in v_log if "valid/ndcg@10" in r and not r.get("final")]
        assert [r["epoch"] for r in v_val] == [r["epoch"] for r in a_val]
        for ra, rv in zip(a_val, v_val, strict=True):
            assert rv == pytest.approx(ra, abs=1e-6)
        ra, rv = _results(a_dir), _results(v_dir)
        assert set(rv) == set(ra) and set(rv["train"]) == set(ra["train"])
        assert rv["metrics"] == pytest.approx(ra["metrics"], abs=1e-6)
        for key in ("steps", "epochs", "best_epoch", "best_step", "events", "stop_reason"):
            assert rv["train"][key] == ra["train"][key], (o, key)
        assert rv["baselines"] == ra["baselines"] and rv["model"] == ra["model"]


def test_early_stop_of_one_model_leaves_the_others(sweeps):
    _, runs, alone, vec = sweeps
    epochs = [_results(os.path.join(vec, sweep.run_name(o)))["train"]["epochs"] for o in runs]
    # The lr=1e-9 run stopped after 2 epochs; the others trained on to the third (and match
    # their single runs, test above).
    assert epochs[2] == 2 and max(epochs[:2]) == 3


def test_summary_rows_match(sweeps):
    _, _, alone, vec = sweeps

    def table(w):
        with open(os.path.join(w, "summary.csv")) as f:
            return list(csv.DictReader(f))

    ta, tv = table(alone), table(vec)
    assert [r["run"] for r in tv] == [r["run"] for r in ta] and len(ta) == 3
    assert list(tv[0]) == list(ta[0])
    for ra, rv in zip(ta, tv, strict=True):
        assert rv["seed"] == ra["seed"] and rv["overrides"] == ra["overrides"]
        for col in ra:
            if col.startswith(("valid/", "test/")):
                assert float(rv[col]) == pytest.approx(float(ra[col]), abs=1e-6), col


def test_non_finite_run_stops_alone(sweeps, tmp_path):
    """A diverging model (lr 1e30) is frozen and reported; the others finish as alone."""
    config, runs, alone, _ = sweeps
    overrides = [dict(runs[0]), dict(runs[1]), {"seed": 2, "optim.learning_rate": 1e30}]
    dirs = [str(tmp_path / str(i)) for i in range(3)]
    with pytest.raises(run_lib.NonFiniteLossError, match="non-finite") as err:
        vsweep.train_and_evaluate_many([sweep.apply(config, o) for o in overrides], dirs)
    assert dirs[2] in str(err.value) and dirs[0] not in str(err.value)
    assert not os.path.exists(os.path.join(dirs[2], "results.json"))
    for o, d in zip(overrides[:2], dirs[:2], strict=True):
        ref = _results(os.path.join(alone, sweep.run_name(o)))
        assert _results(d)["metrics"] == pytest.approx(ref["metrics"], abs=1e-6)


def test_groups_that_differ_elsewhere_are_rejected(make_tiny, tmp_path):
    a, b = make_tiny(), make_tiny()
    b.model.dropout = 0.0
    with pytest.raises(ValueError, match="model.dropout"):
        vsweep.train_and_evaluate_many([a, b], [str(tmp_path / "a"), str(tmp_path / "b")])
