"""The package reports the version declared in pyproject.toml."""

import pathlib
import re

import durgru_jax


def _pyproject_version() -> str:
    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]  # the [project] table only
    match = re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE)
    assert match, "pyproject.toml: no version in [project]"
    return match.group(1)


def test_version_matches_pyproject():
    assert durgru_jax.__version__ == _pyproject_version()


def test_citation_version_matches_pyproject():
    text = (pathlib.Path(__file__).parents[1] / "CITATION.cff").read_text()
    match = re.search(r'^version:\s*"?([^"\s]+)"?\s*$', text, re.MULTILINE)
    assert match, "CITATION.cff: no top-level version"
    assert match.group(1) == _pyproject_version()
