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


def _error_line(res: subprocess.CompletedProcess) -> str:
    """The one line a user error prints (the last of stderr): exit status 2, no traceback."""
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), res.stderr[-3000:]
    return line


def test_mistyped_config_key_fails_naming_it(tmp_path) -> None:
    res = _launch(
        "--config",
        "configs/default.py",
        "--workdir",
        str(tmp_path / "w"),
        "--config.model.hiden_dim=5",
    )
    line = _error_line(res)
    assert line == 'error: \'hiden_dim\' Did you mean "hidden_dim" instead of "hiden_dim"?'
    assert not os.path.exists(tmp_path / "w")


def test_missing_config_file_is_one_line_and_verbose_shows_the_traceback(tmp_path) -> None:
    args = ("--config", "configs/nope.py", "--workdir", str(tmp_path / "w"))
    assert _error_line(_launch(*args)) == "error: no such config file: configs/nope.py"
    res = _launch(*args, "--verbose")
    assert res.returncode != 0 and "Traceback" in res.stderr
    assert "FileNotFoundError" in res.stderr and "configs/nope.py" in res.stderr


def test_missing_data_file_is_one_line(tmp_path) -> None:
    path = tmp_path / "ratings.dat"
    res = _launch(
        "--config",
        "configs/ml1m.py",
        "--workdir",
        str(tmp_path / "w"),
        f"--config.data.path={path}",
        "--config.data.download=False",
    )
    line = _error_line(res)
    assert line.startswith(f"error: ml1m: {path} not found and downloading is switched off. ")
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
    assert _error_line(res).startswith(f"error: {path}:2: ")
    assert not os.path.exists(tmp_path / "w" / "results.json")


def test_workdir_in_use_is_refused_in_one_line(tmp_path) -> None:
    from durgru_jax.workdir_lock import WorkdirLock

    workdir = tmp_path / "w"
    with WorkdirLock(workdir):
        res = _launch("--config", "configs/default.py", "--workdir", str(workdir), *TINY)
    line = _error_line(res)
    assert line.startswith(
        f"error: workdir {workdir} is in use by another run (pid {os.getpid()} on host "
    )
    assert os.listdir(workdir) == []  # nothing written by the refused run


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
