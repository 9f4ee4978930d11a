"""The folder of small real data samples, and how kept run records name files in it.

The configs' sample variants read from ``$DURGRU_SHARED_DATA`` (default: ``shared/data``
beside the repository). A run's ``config.json`` and ``results.json`` name a file there as
``$DURGRU_SHARED_DATA/<relative path>`` (`portable`), so records kept in git say nothing of
the machine that made them, and a config copied from them reads the same file on another
machine (`expand`, applied by every data reader).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

VAR = "DURGRU_SHARED_DATA"
PREFIX = "$" + VAR + "/"


def root() -> str:
    """``$DURGRU_SHARED_DATA`` if set, else ``shared/data`` beside the repository."""
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(os.path.dirname(os.path.dirname(here)), "shared", "data")
    return os.environ.get(VAR) or default


def sample(relative: str) -> str:
    """The absolute path of ``relative`` in the shared folder."""
    return os.path.join(root(), relative)


def expand(path: str | None) -> str | None:
    """``path`` with a leading ``$DURGRU_SHARED_DATA/`` made absolute (`root`, so the default
    applies when the variable is unset); any other path unchanged."""
    if isinstance(path, str) and path.startswith(PREFIX):
        return sample(path[len(PREFIX) :])
    return path


def portable(obj: Any) -> Any:
    """``obj`` (nested mappings and lists) with each string naming a file under `root` written
    as ``$DURGRU_SHARED_DATA/<relative path>``."""
    if isinstance(obj, Mapping):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj):
        top = os.path.abspath(root())
        if os.path.abspath(obj).startswith(top + os.sep):
            return PREFIX + os.path.relpath(os.path.abspath(obj), top).replace(os.sep, "/")
    return obj
