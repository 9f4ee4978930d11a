"""Errors the user can act on, and the one way a failed write is reported.

`UserError` marks an error whose message alone tells the user what is wrong and where (a
config value, a malformed data file, a dataset to fetch, a workdir in use, a disk that is
full): ``launch.py`` prints such an error as one line, ``error: <message>``, and exits with
status 2, without a traceback (``--verbose`` or ``-v 1`` shows it). The classes that carry
it keep their usual bases too (`config.ConfigError` is still a `ValueError`, ...), so code
that catches those is unaffected.

`RunWriteError` is how every file a run writes reports a failed write (`durgru_jax.files` and
the checkpoint saves): ``could not write W/results.json: No space left on device``.

Module without JAX: the data pipeline imports it.
"""

from __future__ import annotations

import errno as errno_lib
import os


class UserError(Exception):
    """An error the user fixes from its message alone: printed as one line by ``launch.py``."""


class RunWriteError(OSError, UserError):
    """A file of the run could not be written; ``str(e)`` names the file and the reason and
    ``e.errno`` is the system's (``ENOSPC``, ``EIO``, ``EROFS``, ...) when known."""

    @classmethod
    def of(cls, path: str | os.PathLike, error: BaseException) -> RunWriteError:
        """The error for ``path`` from the ``error`` raised writing it."""
        code = getattr(error, "errno", None)
        reason = getattr(error, "strerror", None) or (
            os.strerror(code) if isinstance(code, int) else _first_line(error)
        )
        err = cls(f"could not write {os.fspath(path)}: {reason}")
        err.errno = code if isinstance(code, int) else errno_lib.EIO
        err.strerror = reason
        err.filename = os.fspath(path)
        return err

    def __str__(self) -> str:  # OSError's own would read "[Errno 28] ... : 'path'"
        return self.args[0]


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (whitespace runs, line breaks included, as one space);
    an exception wrapping another as its only argument (``AttributeError(KeyError(...))``)
    gives the innermost message."""
    while len(error.args) == 1 and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    plain_os = isinstance(error, OSError) and not isinstance(error, UserError)
    if plain_os and error.filename and error.strerror:  # "[Errno 2] ...: 'x'" reads worse
        text = f"{error.strerror}: {error.filename}"
    return " ".join(text.split()) or type(error).__name__
