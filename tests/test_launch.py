"""Tests of the command line, ``python launch.py`` in a subprocess (each pays a jax import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tiny config of conftest.py as command-line overrides of configs/default.py.
TINY = (
    "--config.data.synthetic.n_users=120",
    "--config.data.synthetic.n_items=80",
    "--config.data.synthetic.n_topics=4",
    "--config.data.synthetic.min_len=8",
    "--config.data.synthetic.max_len=16",
    "--config.data.max_len=12",
    "--config.model.hidden_dim=16",
    "--config.model.embed_dim=8",
    "--config.optim.learning_rate=0.001",
    "--config.train.batch_size=32",
    "--config.train.epochs=1",
    "--config.train.log_every=2",
    "--config.eval.batch_size=64",
    "--config.compare=()",
)


def _launch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_mistyped_config_key_fails_naming_it(tmp_path) -> None:
    res = _launch(
        "--config",
        "configs/default.py",
        "--workdir",
        str(tmp_path / "w"),
        "--config.model.hiden_dim=5",
    )
    assert res.returncode != 0
    assert "hiden_dim" in res.stderr, res.stderr[-2000:]
    assert not os.path.exists(tmp_path / "w" / "results.json")


def test_malformed_movielens_row_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::2::3::978300760\n1::3::x::978300761\n")
    res = _launch(
        "--config",
        "configs/ml1m.py",
        "--workdir",
        str(tmp_path / "w"),
        f"--config.data.path={path}",
    )
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert f"{path}:2" in out, out[-2000:]
    assert "DataFormatError" in out
    assert not os.path.exists(tmp_path / "w" / "results.json")


def test_tiny_run_writes_results(tmp_path) -> None:
    workdir = tmp_path / "run"
    res = _launch("--config", "configs/default.py", "--workdir", str(workdir), *TINY)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert "test/ndcg@10" in results["metrics"] and "comparisons" not in results
    assert results["train"]["epochs"] == 1
    with open(workdir / "config.json") as f:
        assert json.load(f)["model"]["hidden_dim"] == 16
    assert "events/s" in res.stderr  # the progress log reaches the terminal
