"""The published leaderboard is what its committed runs give: ``docs/runs/leaderboard`` holds
the records of every run behind it, the report there is rebuilt from them and compared, and
the README's summary table carries the same cells. No training: the records are read."""

from __future__ import annotations

import os
import re

import pytest

from durgru_jax import leaderboard, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = "docs/runs/leaderboard"  # relative: the report names its folders as given
# the report's dataset (its folder) -> the README's row
README_ROWS = {
    "diginetica": "DIGINETICA sample (sessions)",
    "ml100k": "ML-100K (leave-one-out)",
    "ml1m": "ML-1M sample (leave-one-out)",
    "ml1m-gru4rec": "ML-1M sample (GRU4Rec's protocol)",
    "synthetic": "synthetic logs (leave-one-out)",
    "taobao": "Taobao (leave-one-out)",
    "taobao-nextday": "Taobao (paper 001's next-day top-N)",
    "yoochoose": "YOOCHOOSE sample (sessions)",
}


@pytest.fixture(scope="module")
def published():
    if not os.path.exists(os.path.join(ROOT, RUNS, "report.md")):
        pytest.skip(f"no published report in {RUNS}")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        boards = [leaderboard.board(s) for s in report.find_sweeps(RUNS)]
        rebuilt = leaderboard.markdown(boards, RUNS, figures=False)
    finally:
        os.chdir(cwd)
    with open(os.path.join(ROOT, RUNS, "report.md")) as f:
        committed = f.read()
    return boards, "\n".join(rebuilt), committed


def _table(text: str, first_cell: str) -> dict[str, dict[str, str]]:
    """The Markdown table whose header starts with ``first_cell``: row name -> column -> cell."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_cell} |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for ln in lines[start + 2 :]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(header):
            break
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_the_report_is_rebuilt_from_the_committed_runs(published):
    _, rebuilt, committed = published
    assert committed.split("## Figures")[0].rstrip() == rebuilt.rstrip()
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", committed)
    assert figures and all(os.path.exists(os.path.join(ROOT, RUNS, f)) for f in figures)


def test_every_published_run_names_its_commit_and_cpu(published):
    boards, _, _ = published
    for b in boards:
        for r in b.sweep.runs:
            prov = r.results.get("provenance") or {}
            assert prov.get("commit") and prov.get("cpu"), f"{b.sweep.title}/{r.name}"


def test_the_readme_table_carries_the_reports_cells(published):
    """Each dataset whose sweep has finished (one still running keeps its earlier row)."""
    boards, rebuilt, _ = published
    ours = _table(rebuilt.split("## Summary")[1], "dataset")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = _table(f.read(), "dataset")
    finished = [b.sweep.title for b in boards if not b.sweep.missing]
    assert finished
    for dataset in finished:
        cells = ours[dataset]
        row = readme[README_ROWS[dataset]]
        for column, cell in cells.items():
            if column != "dataset":
                assert row[column] == cell, (dataset, column)


def test_the_kept_records_name_no_machine_path():
    """Data paths in the kept records name the shared data folder, not one machine's."""
    import subprocess

    found = subprocess.run(
        ["git", "-C", ROOT, "grep", "-lE", r'"/(work|home|root|tmp|Users)/', "--", RUNS],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert not found, (
        f"absolute paths in {found[:3]}: runs write files of the shared data folder as "
        "$DURGRU_SHARED_DATA/... (durgru_jax/shared_data.py); a file outside it has no place here"
    )
