"""Every results.json names the commit, the machine and the libraries that made it
(durgru_jax/provenance.py), and the leaderboard report names them per dataset."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from durgru_jax import provenance, report, run_lib


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git checkout with the project's layout, which provenance reads instead of ours."""
    for rel in ("durgru_jax/model.py", "configs/x.py", "docs/notes.md", "launch.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "_ROOT", str(tmp_path))
    return tmp_path


def test_the_commit_and_whether_the_code_differed_from_it(repo):
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert provenance._code_state() == {"commit": head, "code_changed": False}
    (repo / "docs/notes.md").write_text("v2\n")  # not code: the result is still the commit's
    (repo / "new_untracked.py").write_text("x\n")
    assert provenance._code_state()["code_changed"] is False
    (repo / "configs/x.py").write_text("v2\n")
    assert provenance._code_state() == {"commit": head, "code_changed": True}


def test_outside_a_checkout_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "_ROOT", str(tmp_path))
    assert provenance._code_state() == {"commit": None, "code_changed": None}


def test_results_json_carries_provenance_and_a_rewrite_keeps_it(tmp_path):
    results = {"metrics": {"test/ndcg@10": 0.5}}
    run_lib.write_results(str(tmp_path), results)
    with open(tmp_path / "results.json") as f:
        prov = json.load(f)["provenance"]
    assert prov["cpu"] == provenance.cpu_name() and prov["cpu_count"] == os.cpu_count()
    assert prov["backend"] == "cpu" and prov["jax"] and prov["written"].endswith("Z")
    # this test runs from a checkout (or an installed copy: no commit)
    assert prov["commit"] is None or len(prov["commit"]) == 40
    first = dict(prov)
    results["comparisons"] = {}
    run_lib.write_results(str(tmp_path), results)  # the run's own provenance stays
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["provenance"] == first


def test_describe_names_the_commit_cpu_and_uncommitted_changes():
    prov = {"commit": "abcdef0123" + "0" * 30, "code_changed": True, "cpu": "Some CPU",
            "cpu_count": 2, "devices": "1 x cpu", "jax": "0.10.2"}  # fmt: skip
    assert provenance.describe(prov) == (
        "commit `abcdef0` (with uncommitted code changes); Some CPU (2 cores), 1 x cpu, JAX 0.10.2"
    )
    assert provenance.describe({**prov, "code_changed": False}).startswith("commit `abcdef0`;")
    assert provenance.describe(None) == "not recorded"


def test_leaderboard_names_who_made_its_runs(tmp_path):
    from durgru_jax import leaderboard

    base = {"commit": "1" * 40, "code_changed": False, "cpu": "CPU A", "cpu_count": 2,
            "devices": "1 x cpu", "jax": "0.10.2"}  # fmt: skip
    path = tmp_path / "ml100k"
    path.mkdir()
    runs = [("rec", 0, base), ("rec", 1, base), ("pop", 0, {**base, "commit": "2" * 40})]
    runs.append(("gru", 0, None))
    rows = []
    for method, seed, prov in runs:
        overrides = {"method": method, "seed": seed}
        sub = path / f"{method}{seed}"
        sub.mkdir()
        res = {"metrics": {"test/ndcg@10": 0.1}} | ({"provenance": prov} if prov else {})
        (sub / "results.json").write_text(json.dumps(res))
        quoted = json.dumps(overrides).replace('"', '""')  # a CSV field
        rows.append(f'{sub.name},"{quoted}",{seed},0.1')
    (path / "summary.csv").write_text("run,overrides,seed,test/ndcg@10\n" + "\n".join(rows) + "\n")
    text = leaderboard.made_by(report.load_sweep(str(path)))
    assert text == (
        "Made by: commit `1111111`; CPU A (2 cores), 1 x cpu, JAX 0.10.2: 2 runs; "
        "commit `2222222`; CPU A (2 cores), 1 x cpu, JAX 0.10.2: 1 run; not recorded: 1 run."
    )
