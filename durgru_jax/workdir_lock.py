"""One run per workdir: an exclusive lock file ``WORKDIR/.lock``.

Two runs writing the same workdir interleave checkpoints, metrics and results, and the
``results.json`` left behind may then describe a run that never happened. A run therefore holds
:class:`WorkdirLock` for its whole life::

    with WorkdirLock(workdir):
        ...  # train, evaluate, write results

A second run on the same workdir fails at once with :class:`WorkdirBusyError`, naming the
workdir and the holder's pid, host, start time and command line.

**Exclusion** is ``fcntl.flock`` on the lock file: the kernel drops the lock when the holder
exits in any way (normal exit, exception, ``SIGTERM``, ``SIGKILL``, a crash), so a lock can
never outlive its process. The file's content (JSON: ``pid``, ``host``, ``started``,
``command``) only serves the messages; it is rewritten in place, because the file itself is the
lock and a rename would replace it.

**Release**: leaving the ``with`` block (normally or by an exception) or :meth:`release` deletes
the file, then closes it (which drops the lock). A process killed before it could release leaves
the file behind; the next run takes the lock over and logs the previous holder. A run stopped
by ``SIGTERM`` goes through the normal exit path only if the program turns the signal into an
exception (e.g. a handler raising ``SystemExit``); otherwise the kernel still drops the lock.

**Filesystems without flock** (some network filesystems answer ``ENOLCK``/``ENOSYS``): the lock
falls back to the recorded holder, with a warning. A holder alive on this host, or any holder on
another host (whose liveness cannot be checked here), refuses the run; a dead holder on this host
is taken over. This fallback is not atomic: two runs started in the same instant can both pass.

A lock file is inherited by processes forked without ``exec`` (e.g. ``multiprocessing`` with
the fork start method), which keep the lock until they exit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any

from absl import logging

from durgru_jax.errors import RunWriteError, UserError

LOCK_NAME = ".lock"
# flock errors that mean "this filesystem cannot lock", not "someone holds the lock".
_NO_FLOCK = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_MAX_COMMAND = 300


class WorkdirBusyError(RuntimeError, UserError):
    """The workdir is locked by another run; the message names the workdir and the holder."""

    def __init__(self, workdir: str, holder: dict[str, Any] | None, hint: str = "") -> None:
        self.workdir = workdir
        self.holder = holder or {}
        super().__init__(
            f"workdir {workdir} is in use by another run ({describe_holder(holder)}); wait for "
            f"it to finish or choose another workdir{hint}"
        )


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``pid 123 on host h, started 2024-..., command: ...`` (``pid unknown`` when unreadable)."""
    if not holder or "pid" not in holder:
        return "pid unknown: the lock file is empty or unreadable"
    text = f"pid {holder['pid']} on host {holder.get('host', '?')}"
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        text += " (this process)"
    if holder.get("started"):
        text += f", started {holder['started']}"
    if holder.get("command"):
        text += f", command: {holder['command']}"
    return text


def read_holder(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The holder recorded in ``workdir/.lock``, or None (no file, empty or unreadable)."""
    try:
        with open(os.path.join(os.fspath(workdir), LOCK_NAME), encoding="utf-8") as fh:
            return _parse(fh.read())
    except OSError:
        return None


def _parse(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _read_fd(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return _parse(b"".join(chunks).decode("utf-8", errors="replace"))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _this_holder() -> dict[str, Any]:
    command = " ".join([os.path.basename(sys.executable)] + sys.argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command[:_MAX_COMMAND],
    }


def _same_file(fd: int, path: str) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing holder deletes it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


class WorkdirLock:
    """An exclusive lock on ``workdir`` (created if missing); see the module docstring.

    Use as a context manager, or call :meth:`acquire` / :meth:`release`. Not re-entrant: a
    second lock on the same workdir in the same process is refused like any other.
    """

    def __init__(self, workdir: str | os.PathLike) -> None:
        self.workdir = os.fspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_NAME)
        self._fd: int | None = None
        self._owner_pid: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> WorkdirLock:
        """Takes the lock or raises :class:`WorkdirBusyError`; returns ``self``. A lock file
        that cannot be written (disk full, read-only) raises `errors.RunWriteError`."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: this WorkdirLock is already held")
        try:
            return self._acquire()
        except RunWriteError:
            raise
        except OSError as e:
            raise RunWriteError.of(self.path, e) from e

    def _acquire(self) -> WorkdirLock:
        os.makedirs(self.workdir, exist_ok=True)
        for _ in range(100):  # retries only while holders release in between: a few at most
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd)
                os.close(fd)
                raise WorkdirBusyError(self.workdir, holder) from None
            except OSError as e:
                if e.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                logging.warning("%s: file locks unsupported (%s); checking the pid", self.path, e)
                return self._take(fd, self._check_without_flock(fd))
            if _same_file(fd, self.path):
                return self._take(fd, _read_fd(fd))
            os.close(fd)  # we locked a file its holder has just deleted: open the new one
        raise WorkdirBusyError(self.workdir, read_holder(self.workdir))

    def _check_without_flock(self, fd: int) -> dict[str, Any] | None:
        """The recorded holder if it is gone; raises if it may still run."""
        holder = _read_fd(fd)
        if not holder or "pid" not in holder:
            return holder
        if holder.get("host") != socket.gethostname():
            os.close(fd)
            hint = f"; if no run uses it any more, remove {self.path}"
            raise WorkdirBusyError(self.workdir, holder, hint)
        if pid_alive(int(holder["pid"])):
            os.close(fd)
            raise WorkdirBusyError(self.workdir, holder)
        return holder

    def _take(self, fd: int, previous: dict[str, Any] | None) -> WorkdirLock:
        if previous and "pid" in previous:
            logging.warning(
                "%s: taking over the stale lock of a run that is gone (%s)",
                self.path,
                describe_holder(previous),
            )
        try:
            data = json.dumps(_this_holder()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._owner_pid = fd, os.getpid()
        return self

    def release(self) -> None:
        """Deletes the lock file and drops the lock; a no-op when not held.

        A forked child that inherited the lock only closes its copy of the file.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner_pid == os.getpid() and _same_file(fd, self.path):
                os.unlink(self.path)  # while still locked: a waiter then sees a new file
        finally:
            os.close(fd)
