"""Test-only: kill this process with SIGKILL at a named point, to test ``kill -9`` recovery.

``DURGRU_FAULT_AT=<point>[:<n>]`` in the environment makes the ``n``-th arrival (default: the
first) of this process at `point(<point>)` send SIGKILL to itself, as ``kill -9`` from outside
would, but at a chosen place. The points (see ``tests/test_faults.py``):

* ``train_step``: after a train step of a single run (`durgru_jax.train`);
* ``ckpt_save``: while a ``ckpt/latest`` checkpoint is being written (orbax has started
  its background write, not committed it);
* ``cache_write``: while a data-cache entry is being written (one array of it written).

Nothing sets the variable outside the tests; unset, a point costs one environment lookup.
`flip_byte` damages a file in place (a checkpoint, a data-cache array), its size unchanged.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "DURGRU_FAULT_AT"
_arrivals: dict[str, int] = {}


def point(name: str) -> None:
    """Kills this process here if ``$DURGRU_FAULT_AT`` names this point and arrival."""
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _arrivals[name] = _arrivals.get(name, 0) + 1
    if _arrivals[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def flip_byte(path: str | os.PathLike, offset: int) -> None:
    """Inverts the byte at ``offset`` of ``path`` in place (the file keeps its size)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
