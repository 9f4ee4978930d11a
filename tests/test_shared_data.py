"""Kept run records name files of the shared data folder relative to it
(`durgru_jax.shared_data`), and a config read back from them reads the same file."""

import json
import os
import shutil

from durgru_jax import shared_data
from durgru_jax.baselines import run as baseline_run
from durgru_jax.data import sources


def test_portable_and_expand_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("DURGRU_SHARED_DATA", str(tmp_path / "shared"))
    inside = shared_data.sample("ml/u.data")
    assert inside == str(tmp_path / "shared" / "ml" / "u.data")
    assert shared_data.portable(inside) == "$DURGRU_SHARED_DATA/ml/u.data"
    assert shared_data.expand("$DURGRU_SHARED_DATA/ml/u.data") == inside
    # a sibling folder whose name starts like the root's, and relative paths, stay as they are
    outside = str(tmp_path / "shared2" / "u.data")
    nested = {"data": {"path": inside, "other": [outside, "u.data", 3]}}
    assert shared_data.portable(nested) == {
        "data": {"path": "$DURGRU_SHARED_DATA/ml/u.data", "other": [outside, "u.data", 3]}
    }
    assert shared_data.expand(outside) == outside and shared_data.expand(None) is None


def test_unset_variable_means_the_folder_beside_the_repository(monkeypatch):
    monkeypatch.delenv("DURGRU_SHARED_DATA", raising=False)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(shared_data.__file__)))
    want = os.path.join(os.path.dirname(repo), "shared", "data", "a.csv")
    assert shared_data.expand("$DURGRU_SHARED_DATA/a.csv") == want


def test_a_runs_records_name_the_shared_file_relative_and_read_it_back(
    monkeypatch, tmp_path, make_tiny
):
    """A run on a shared file writes the portable name into config.json and results.json (no
    trace of this machine's folder), and that config reads the file under another root."""
    root = tmp_path / "here"
    monkeypatch.setenv("DURGRU_SHARED_DATA", str(root))
    c = make_tiny()
    events, _ = sources.load_events(c.data.to_dict())
    os.makedirs(root / "tiny")
    events.drop(columns=["_is_noise"]).to_csv(root / "tiny" / "events.csv", index=False)
    c.data.source, c.data.path = "csv", shared_data.sample("tiny/events.csv")
    c.baseline = {"name": "pop"}
    workdir = tmp_path / "run"
    baseline_run.run(c, str(workdir))
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["data"]["path"] == "$DURGRU_SHARED_DATA/tiny/events.csv"
    for name in ("config.json", "results.json"):
        text = (workdir / name).read_text()
        assert str(root) not in text and "$DURGRU_SHARED_DATA/tiny/events.csv" in text, name
    # the recorded config on a machine whose shared folder lives elsewhere
    shutil.move(root, tmp_path / "there")
    monkeypatch.setenv("DURGRU_SHARED_DATA", str(tmp_path / "there"))
    again, info = sources.load_events(saved["data"])
    assert info["path"] == str(tmp_path / "there" / "tiny" / "events.csv")
    assert len(again) == len(events)
    assert sources.resolve_path(saved["data"]) == info["path"]
