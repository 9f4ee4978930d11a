"""Two runs on one workdir: :mod:`durgru_jax.workdir_lock` refuses the second, takes over the
lock of a dead process and releases on every exit path (docs/faults.md)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from durgru_jax import workdir_lock
from durgru_jax.workdir_lock import WorkdirBusyError, WorkdirLock

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- workdir lock

_HOLDER = textwrap.dedent(
    """
    import signal, sys
    from durgru_jax.workdir_lock import WorkdirLock
    if sys.argv[2] == "exit-on-term":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with WorkdirLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def _python(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": _ROOT}
    return subprocess.Popen([sys.executable, "-c", *args], env=env, text=True, cwd=_ROOT, **kw)  # noqa: S603


def _start_holder(workdir, mode: str = "plain") -> subprocess.Popen:
    """A process that holds the lock on ``workdir`` until its stdin gets a line."""
    proc = _python(_HOLDER, str(workdir), mode, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = _python("pass")
    proc.wait()
    return proc.pid


def test_second_process_is_refused_until_the_first_releases(tmp_path):
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(WorkdirBusyError) as info:
            WorkdirLock(tmp_path).acquire()
        msg = str(info.value)
        assert f"workdir {tmp_path} is in use by another run" in msg
        assert f"pid {holder.pid} on host {socket.gethostname()}" in msg
        assert "started 20" in msg and "command: python" in msg and "-c" in msg
        assert info.value.holder["pid"] == holder.pid and info.value.workdir == str(tmp_path)
        assert isinstance(info.value, RuntimeError)
        # The other direction: a process started while we hold the lock fails naming us.
        holder.communicate("\n", timeout=60)
        assert holder.returncode == 0
        assert not (tmp_path / ".lock").exists()  # released and removed
        with WorkdirLock(tmp_path) as lock:
            assert lock.held
            assert workdir_lock.read_holder(tmp_path)["pid"] == os.getpid()
            other = _python(_HOLDER, str(tmp_path), "plain", stderr=subprocess.PIPE)
            _, err = other.communicate(timeout=60)
            assert other.returncode != 0
            assert "WorkdirBusyError" in err and f"pid {os.getpid()} on host" in err
            assert str(tmp_path) in err
        assert not lock.held and not (tmp_path / ".lock").exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_same_process_cannot_lock_twice_and_the_message_says_so(tmp_path):
    with WorkdirLock(tmp_path / "new" / "dir"):  # creates the workdir
        with pytest.raises(WorkdirBusyError, match=r"\(this process\)"):
            WorkdirLock(tmp_path / "new" / "dir").acquire()
    lock = WorkdirLock(tmp_path).acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    lock.release()  # a second release is a no-op


def test_released_on_exception(tmp_path):
    lock = WorkdirLock(tmp_path)
    with pytest.raises(ValueError, match="boom"):
        with lock:
            assert (tmp_path / ".lock").exists()
            raise ValueError("boom")
    assert not lock.held and not (tmp_path / ".lock").exists()
    with WorkdirLock(tmp_path):
        pass


@pytest.mark.parametrize("how", ["SIGTERM as exit", "SIGKILL"])
def test_killed_holder(tmp_path, caplog, how):
    """SIGTERM turned into an exit releases normally; after SIGKILL the lock file stays with a
    dead pid and the next run takes it over, logging the previous holder."""
    holder = _start_holder(tmp_path, "exit-on-term" if how == "SIGTERM as exit" else "plain")
    holder.send_signal(signal.SIGTERM if how == "SIGTERM as exit" else signal.SIGKILL)
    holder.wait(timeout=60)
    holder.stdin.close()
    holder.stdout.close()
    assert (tmp_path / ".lock").exists() == (how == "SIGKILL")
    with caplog.at_level(logging.WARNING), WorkdirLock(tmp_path):
        pass
    stale = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    if how == "SIGKILL":
        assert len(stale) == 1 and f"pid {holder.pid} on host" in stale[0], stale
    else:
        assert stale == []


def test_a_lock_on_a_file_its_holder_just_deleted_does_not_count(tmp_path, monkeypatch):
    """Between our open and our flock, the holder releases (deletes the file) and a third run
    locks a new file: ours is then a lock on nothing, and acquire must retry on the new file."""
    real_flock, calls = fcntl.flock, []

    def racing_flock(fd, op):
        calls.append(1)
        if len(calls) == 1:
            os.unlink(tmp_path / ".lock")
            (tmp_path / ".lock").write_text("")  # the third run's new file (not locked here)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    with WorkdirLock(tmp_path) as lock:
        assert len(calls) == 2
        assert os.fstat(lock._fd).st_ino == os.stat(tmp_path / ".lock").st_ino


def _write_holder(workdir, **holder) -> None:
    (workdir / ".lock").write_text(json.dumps(holder))


def test_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path, caplog):
    dead = _dead_pid()
    _write_holder(tmp_path, pid=dead, host=socket.gethostname(), started="2020-01-01T00:00:00")
    with caplog.at_level(logging.WARNING), WorkdirLock(tmp_path):
        assert workdir_lock.read_holder(tmp_path)["pid"] == os.getpid()
    msgs = [r.getMessage() for r in caplog.records]
    assert any(
        "taking over the stale lock" in m and f"pid {dead} on host" in m and "2020-01-01" in m
        for m in msgs
    ), msgs


def test_without_flock_the_recorded_pid_decides(tmp_path, monkeypatch):
    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    host = socket.gethostname()
    live = _python("import sys; sys.stdin.readline()", stdin=subprocess.PIPE)
    try:
        _write_holder(tmp_path, pid=live.pid, host=host)
        with pytest.raises(WorkdirBusyError, match=f"pid {live.pid} on host {host}"):
            WorkdirLock(tmp_path).acquire()
    finally:
        live.communicate("\n", timeout=60)
    _write_holder(tmp_path, pid=1234, host=host + "-elsewhere")
    with pytest.raises(WorkdirBusyError, match="if no run uses it any more, remove .*\\.lock"):
        WorkdirLock(tmp_path).acquire()
    _write_holder(tmp_path, pid=_dead_pid(), host=host)
    with WorkdirLock(tmp_path):
        assert workdir_lock.read_holder(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()
