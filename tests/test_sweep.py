"""Sweep expansion, run naming, summary.csv, and resuming an interrupted sweep."""

from __future__ import annotations

import csv
import json
import os
import re
import textwrap

import pytest

from durgru_jax import sweep
from durgru_jax.base_config import get_base_config
from durgru_jax.workdir_lock import WorkdirBusyError, WorkdirLock

CONFIG = textwrap.dedent(
    """
    from durgru_jax.base_config import get_base_config

    def get_config():
        return get_base_config()

    def sweep(add):
        for lr in (1e-1, 1e-2):
            for seed in (0, 1):
                add(**{"optim.learning_rate": lr, "seed": seed})
    """
)


def _fake_train(calls, fail_on=None):
    def train(config, workdir):
        name = os.path.basename(workdir)
        if name == fail_on:
            raise KeyboardInterrupt("killed")
        calls.append(name)
        os.makedirs(workdir, exist_ok=True)
        metrics = {"test/ndcg@10": config.optim.learning_rate + config.seed}
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"metrics": metrics, "train": {"seconds": 1.5}}, f)
        return {"metrics": metrics}

    return train


def test_expand_and_names(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG)
    runs = sweep.expand(sweep.load_sweep(str(path)))
    assert runs == [
        {"optim.learning_rate": 0.1, "seed": 0},
        {"optim.learning_rate": 0.1, "seed": 1},
        {"optim.learning_rate": 0.01, "seed": 0},
        {"optim.learning_rate": 0.01, "seed": 1},
    ]
    assert sweep.run_name(runs[2]) == "optim.learning_rate=0.01,seed=0"
    child = sweep.apply(get_base_config(), runs[2])
    assert child.optim.learning_rate == 0.01 and child.seed == 0


def test_unknown_key_and_duplicates_are_errors(tmp_path):
    with pytest.raises(KeyError, match="optim.lr"):
        sweep.apply(get_base_config(), {"optim.lr": 0.1})
    with pytest.raises(ValueError, match="same run twice"):
        sweep.expand(lambda add: (add(seed=1), add(seed=1)))
    path = tmp_path / "nosweep.py"
    path.write_text("def get_config():\n    return None\n")
    with pytest.raises(ValueError, match="sweep"):
        sweep.load_sweep(str(path))


def test_summary_and_resume_after_interruption(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG)
    work = str(tmp_path / "w")
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(
            get_base_config(),
            str(path),
            work,
            _fake_train(calls, fail_on="optim.learning_rate=0.01,seed=0"),
        )
    assert len(calls) == 2
    # Started again, the summary lists every finished run (a later declared one included)
    # before the next one trains, so it holds them even when that one is interrupted again.
    (tmp_path / "w" / "optim.learning_rate=0.01,seed=1").mkdir()
    (tmp_path / "w" / "optim.learning_rate=0.01,seed=1" / "results.json").write_text(
        json.dumps({"metrics": {"test/ndcg@10": 7.0}, "train": {"seconds": 2.0}})
    )
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(get_base_config(), str(path), work,
                        _fake_train([], fail_on="optim.learning_rate=0.01,seed=0"))  # fmt: skip
    with open(os.path.join(work, "summary.csv")) as f:
        assert [r["run"][-6:] for r in csv.DictReader(f)] == ["seed=0", "seed=1", "seed=1"]
    os.remove(tmp_path / "w" / "optim.learning_rate=0.01,seed=1" / "results.json")
    calls2: list[str] = []
    rows = sweep.run_sweep(get_base_config(), str(path), work, _fake_train(calls2))
    assert calls2 == ["optim.learning_rate=0.01,seed=0", "optim.learning_rate=0.01,seed=1"]
    assert len(rows) == 4
    with open(os.path.join(work, "summary.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["seed"] for r in table] == ["0", "1", "0", "1"]
    assert float(table[3]["test/ndcg@10"]) == pytest.approx(1.01)
    assert float(table[0]["seconds"]) == 1.5
    assert json.loads(table[1]["overrides"]) == {"optim.learning_rate": 0.1, "seed": 1}


@pytest.mark.parametrize("vectorize", [False, True])
def test_a_sweep_or_run_directory_in_use_is_refused_before_anything_trains(tmp_path, vectorize):
    """The sweep holds its directory, and each run (alone, or every run of a vectorised group
    at once) holds its own: a directory another run holds stops the sweep before training."""
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG)
    work = tmp_path / "w"
    with WorkdirLock(work):
        with pytest.raises(WorkdirBusyError, match=re.escape(f"workdir {work} is in use")):
            sweep.run_sweep(get_base_config(), str(path), str(work), vectorize=vectorize)
    busy = work / "optim.learning_rate=0.1,seed=0"  # the first run, alone or in the group
    with WorkdirLock(busy):
        with pytest.raises(WorkdirBusyError, match=re.escape(f"workdir {busy} is in use")):
            sweep.run_sweep(get_base_config(), str(path), str(work), vectorize=vectorize)
    assert sorted(os.listdir(work)) == ["optim.learning_rate=0.1,seed=0", "sweep.json"]
    assert os.listdir(busy) == []


def test_a_long_run_name_is_cut_with_a_hash_of_the_whole():
    long = {f"model.key_{i}": "x" * 20 for i in range(12)}
    other = {**long, "model.key_9": "y" * 20}  # sorted last
    a, b = sweep.run_name(long), sweep.run_name(other)
    assert len(a) == sweep.MAX_NAME and a != b and a[:150] == b[:150]
    assert sweep.run_name({"seed": 1}) == "seed=1"  # short names unchanged
