"""Files written whole or not at all, and a failed write reported as `errors.RunWriteError`.

Every file a run writes goes through here (``config.json``, ``results.json``, the sweep's
``sweep.json`` and ``summary.csv``, the report and its figures, ``params_best.npz``, the
benchmarks' JSON, the exported TSV files): `write_atomic` writes a temporary file beside the
target and renames it into place, so a reader, or a run killed or out of disk space midway,
never sees half a file, and the previous version stays until the new one is complete. The one
log, ``metrics.jsonl``, grows by `append_whole`. The checkpoints (`durgru_jax.checkpoints`) and
the data cache (`durgru_jax.data.cache`) are directories, written under a temporary name and
renamed likewise. Module without JAX: the data tools use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import IO

from durgru_jax.errors import RunWriteError


def write_atomic(path: str, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Writes ``path`` whole or not at all: ``write(f)`` fills a temporary file beside it
    (text, newlines untranslated; or ``binary``), which is flushed to disk and then replaces
    ``path`` (``os.replace``). If anything fails, ``path`` is left as it was and the temporary
    file removed; a failed write (disk full, I/O error, read-only filesystem) raises
    `errors.RunWriteError` naming ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, RunWriteError):
            raise RunWriteError.of(path, e) from e
        raise


def append_whole(path: str, data: bytes) -> None:
    """Appends ``data`` to ``path`` whole or not at all: a write that fails midway is cut off
    again, so a log keeps whole lines only; the failure raises `errors.RunWriteError`. (An
    append, not `write_atomic`: rewriting a growing log for each line would cost its size.)"""
    try:
        with open(path, "ab", buffering=0) as f:
            start = f.seek(0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[f.write(view) :]
            except OSError:
                f.truncate(start)
                raise
    except OSError as e:
        raise RunWriteError.of(path, e) from e
