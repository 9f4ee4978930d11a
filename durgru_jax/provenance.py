"""What made a result: the code's commit, the machine and the libraries.

Every ``results.json`` carries it under ``provenance`` (`run_lib.write_results`), and the
leaderboard report names the commits and CPUs of its runs, so that a published number names its
hardware and its commit without anyone copying them by hand.

The code's state is read once, when this module is first imported (a run imports it before it
loads anything): a process that runs for hours reports the code it loaded, not a commit made
while it ran. ``code_changed`` is true when the package, the configs or ``launch.py`` differed
from that commit (uncommitted edits), so such a result is not mistaken for the commit's.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
import sys
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CODE = ("durgru_jax", "configs", "launch.py")  # what a result depends on (not docs, tests)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", _ROOT, *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (a wheel)
        return None
    return out.stdout.strip()


def _code_state() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "code_changed": None}
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *_CODE)
    return {"commit": commit, "code_changed": None if changed is None else bool(changed)}


_AT_IMPORT = _code_state()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def _machine() -> dict[str, Any]:
    import jax  # after the caller chose its platform (jax's own import reads the flags)

    from durgru_jax import __version__

    devices = jax.devices()
    return {
        "version": __version__,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "backend": devices[0].platform,
        "devices": f"{len(devices)} x {devices[0].device_kind}",
        "jax": jax.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def provenance() -> dict[str, Any]:
    """The commit the code was loaded from (None outside a git checkout), whether the code
    differed from it, the package version, the CPU and devices, the library versions, and the
    time (UTC) of this call."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**_AT_IMPORT, **_machine(), "written": now}


def describe(prov: dict[str, Any] | None) -> str:
    """One line: ``commit abc1234 (code changed), AMD EPYC (2 cores), cpu, JAX 0.10.2``."""
    if not prov:
        return "not recorded"
    commit = prov.get("commit")
    text = f"commit `{commit[:7]}`" if commit else f"version {prov.get('version', '?')}"
    if prov.get("code_changed"):
        text += " (with uncommitted code changes)"
    return (
        f"{text}; {prov.get('cpu', '?')} ({prov.get('cpu_count', '?')} cores), "
        f"{prov.get('devices', '?')}, JAX {prov.get('jax', '?')}"
    )
