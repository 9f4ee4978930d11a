"""Faults that must never lose data or let a run report numbers it did not produce.

* Two runs on one workdir: a run holds the workdir's lock (``launch.py``; the lock itself:
  ``test_workdir_lock.py``). A damaged or full data cache: ``test_cache_faults.py``.
* Damaged checkpoints (:mod:`durgru_jax.checkpoints`) give way to the previous one, or to a
  fresh start, and the run still ends with the uninterrupted run's numbers; a damaged selected
  checkpoint is never replaced by one that was not selected.
* A write that fails (disk full) stops the run naming the file; what was written before stays.
* A run killed with SIGKILL (in a train step, a checkpoint write, the data-cache write) and
  run again ends with the uninterrupted run's numbers.

The docs/faults.md table points at these tests.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from durgru_jax import checkpoints, fault_injection, run_lib, workdir_lock
from durgru_jax.data import cache
from durgru_jax.errors import RunWriteError, UserError

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A failed orbax restore (a damaged checkpoint) leaves the coroutines of its other reads
# unfinished; Python reports them whenever they are collected, in whichever test: noise.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# ----------------------------------------------------------------------------- runs

_EPOCHS = 2  # 4 train steps an epoch: ckpt/latest at steps 4 and 8


def fault_config():
    """The tiny config of conftest.py, two epochs (also built by the subprocesses below)."""
    from conftest import make_tiny_config

    c = make_tiny_config()
    c.train.epochs = _EPOCHS
    return c


_RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, "tests")
    from test_faults import fault_config
    from durgru_jax import runner
    runner.run(fault_config(), sys.argv[1])
    """
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run of `fault_config`: ``(workdir, results)``."""
    from durgru_jax import train as train_lib

    workdir = tmp_path_factory.mktemp("reference") / "w"
    return workdir, train_lib.train_and_evaluate(fault_config(), str(workdir))


def _rerun(workdir) -> dict:
    from durgru_jax import train as train_lib

    return train_lib.train_and_evaluate(fault_config(), str(workdir))


def _assert_same_run(results: dict, reference) -> None:
    """The metrics of the uninterrupted run, to the last digit, and its selection."""
    ref = reference[1]
    assert results["metrics"] == ref["metrics"]
    for k in ("steps", "epochs", "best_epoch", "best_step", "events"):
        assert results["train"][k] == ref["train"][k], k


def _copy_of(reference, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(reference[0], workdir)
    return workdir


def _warnings(caplog) -> list[str]:
    # Only the project's own messages (absl): orbax's background readers may log an
    # asyncio "Task exception was never retrieved" for the same damaged file, at a time
    # that depends on garbage collection.
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "absl"
    ]


def _steps(workdir, which: str) -> list[int]:
    path = workdir / "ckpt" / which
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


# ----------------------------------------------------------------------------- one run per workdir


def test_a_launch_on_a_workdir_a_run_holds_is_refused_in_one_line(tmp_path):
    from test_launch import TINY, _launch

    workdir = tmp_path / "w"
    forever = ("--config.train.epochs=100000", "--config.train.patience=100000")
    first = subprocess.Popen(  # noqa: S603
        [sys.executable, "launch.py", "--config", "configs/default.py", "--workdir",
         str(workdir), *TINY, *forever],
        cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while (workdir_lock.read_holder(workdir) or {}).get("pid") != first.pid:
            assert first.poll() is None and time.time() < deadline, "the first run never locked"
            time.sleep(0.2)
        second = _launch("--config", "configs/default.py", "--workdir", str(workdir), *TINY)
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith(
            f"error: workdir {workdir} is in use by another run (pid {first.pid} on host "
            f"{socket.gethostname()}, started 20"
        ), line
        assert "command: python launch.py --config configs/default.py" in line
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


# ----------------------------------------------------------------------------- damaged checkpoints


def _state(step: int) -> dict:
    """A small train state whose arrays do not compress (damage then lands in real data)."""
    w = np.random.default_rng(step).normal(size=(64, 16)).astype(np.float32)
    return {"params": {"w": jnp.asarray(w)}, "step": jnp.asarray(step, jnp.int32)}


def _saved(workdir, latest=(4, 8), best: int | None = None) -> None:
    ck = checkpoints.Checkpoints(str(workdir))
    for s in latest:
        ck.save_latest(s, _state(s), run_lib.new_meta() | {"epoch": s // 4 - 1})
    if best is not None:
        ck.save_best(best, _state(best), epoch=best // 4 - 1)
    ck.close()


def _data_files(step_dir):
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def _largest_data_file(step_dir):
    return max(_data_files(step_dir), key=os.path.getsize)


def _damage(step_dir, how: str) -> None:
    """``flip``: one byte in the middle of the arrays' data (orbax reads the changed numbers
    without complaint); ``truncate``: every data file cut in half (which of them holds which
    array depends on the writers' timing); ``record``: a number of the JSON record changed,
    the JSON still valid."""
    if how == "flip":
        path = _largest_data_file(step_dir)
        fault_injection.flip_byte(path, os.path.getsize(path) // 2)
    elif how == "truncate":
        for path in _data_files(step_dir):
            os.truncate(path, os.path.getsize(path) // 2)
    else:
        path = step_dir / "meta" / "metadata"
        record = json.loads(path.read_text())
        record["train_seconds"] += 1.0
        path.write_text(json.dumps(record))


_WHY = {
    "flip": "its arrays do not match their fingerprint",
    "truncate": "its arrays are unreadable: ",
    "record": "its record does not match its checksum",
}


@pytest.mark.parametrize("how", sorted(_WHY))
def test_a_damaged_latest_checkpoint_gives_way_to_the_previous_one(tmp_path, caplog, how):
    _saved(tmp_path, best=8)
    _damage(tmp_path / "ckpt" / "latest" / "8", how)
    ck = checkpoints.Checkpoints(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        state, meta = ck.restore(_state(0))
    assert int(state["step"]) == 4 and meta == run_lib.new_meta() | {"epoch": 0}
    np.testing.assert_array_equal(state["params"]["w"], _state(4)["params"]["w"])
    damaged, resumed = _warnings(caplog)
    assert damaged.startswith(f"{tmp_path}/ckpt/latest/8 cannot be restored ({_WHY[how]}")
    assert damaged.endswith("): deleted")
    assert resumed == (
        f"resumed from {tmp_path}/ckpt at step 4 (epoch 0); the epochs after it run again"
    )
    # The damaged checkpoint is gone, and so is the best one the lost epoch wrote.
    assert ck.latest.all_steps() == [4] and ck.best.all_steps() == []
    ck.close()


def test_when_no_latest_checkpoint_restores_the_run_starts_afresh(tmp_path, caplog):
    _saved(tmp_path, best=4)
    for step in ("4", "8"):
        _damage(tmp_path / "ckpt" / "latest" / step, "truncate")
    ck = checkpoints.Checkpoints(str(tmp_path))
    fresh = _state(0)
    with caplog.at_level(logging.WARNING):
        state, meta = ck.restore(fresh)
    assert state is fresh and meta == run_lib.new_meta()
    warnings = _warnings(caplog)
    assert [w.split(" cannot")[0] for w in warnings[:2]] == [
        f"{tmp_path}/ckpt/latest/8",
        f"{tmp_path}/ckpt/latest/4",
    ]
    assert warnings[2] == f"no checkpoint in {tmp_path}/ckpt/latest restores: the run starts afresh"
    assert ck.latest.all_steps() == [] and ck.best.all_steps() == []
    ck.close()


def test_a_checkpoint_of_another_model_is_refused_and_kept(tmp_path):
    _saved(tmp_path)
    ck = checkpoints.Checkpoints(str(tmp_path))
    other = {"params": {"w": jnp.zeros((80, 16))}, "step": jnp.asarray(0, jnp.int32)}
    with pytest.raises(checkpoints.CheckpointMismatchError) as info:
        ck.restore(other)
    assert str(info.value).startswith(
        f"{tmp_path}/ckpt/latest/8 is a checkpoint of another model "
        "(['params']['w']: float32[80, 16] here, ['params']['w']: float32[64, 16] there)"
    )
    assert isinstance(info.value, UserError) and ck.latest.all_steps() == [4, 8]
    ck.close()


def test_a_damaged_selected_checkpoint_is_replaced_by_the_same_step_or_by_nothing(tmp_path, caplog):
    """The rule: test metrics of the checkpoint validation selected, or none. Its copy in
    ckpt/latest (the same step of the same run) may stand in; no other checkpoint may."""
    _saved(tmp_path, best=4)
    _damage(tmp_path / "ckpt" / "best" / "4", "truncate")
    ck = checkpoints.Checkpoints(str(tmp_path))
    state, _ = ck.restore(_state(0))  # resumes at step 8; best/4 is older and stays
    with caplog.at_level(logging.WARNING):
        params, step = ck.best_params(state, epoch=0)
    assert step == 4
    np.testing.assert_array_equal(params["w"], _state(4)["params"]["w"])
    lost, used = _warnings(caplog)
    assert lost.startswith(f"{tmp_path}/ckpt/best/4, the selected checkpoint, cannot be restored")
    assert used == f"{tmp_path}/ckpt/latest/4, the same state, used instead"
    # Without that copy, neither the last state (step 8) nor anything else is reported.
    _damage(tmp_path / "ckpt" / "latest" / "4", "flip")
    with pytest.raises(checkpoints.SelectedCheckpointLostError) as info:
        ck.best_params(state, epoch=0)
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path}/ckpt/best/4, the checkpoint validation selected, cannot")
    assert "its arrays do not match their fingerprint" in msg
    assert f"remove {tmp_path}/ckpt and run again" in msg
    ck.close()
    # A best checkpoint of an epoch the run did not select is not reported either.
    other = tmp_path / "other"
    _saved(other, best=4)
    ck = checkpoints.Checkpoints(str(other))
    state, _ = ck.restore(_state(0))
    with pytest.raises(checkpoints.SelectedCheckpointLostError, match="saved at epoch 0, but"):
        ck.best_params(state, epoch=1)
    ck.close()


def test_fingerprint_sees_one_changed_bit_and_moved_values():
    state = {"a": jnp.arange(6, dtype=jnp.float32), "b": jnp.asarray(True)}
    base = checkpoints.fingerprint(state)
    assert base == checkpoints.fingerprint(jax.tree.map(jnp.copy, state))
    bits = np.asarray(state["a"]).view(np.uint32).copy()
    bits[3] ^= 1 << 31
    assert checkpoints.fingerprint(state | {"a": jnp.asarray(bits.view(np.float32))}) != base
    assert checkpoints.fingerprint(state | {"a": state["a"][::-1]}) != base
    assert checkpoints.fingerprint(state | {"b": jnp.asarray(False)}) != base


def test_a_run_whose_newest_checkpoint_is_damaged_ends_with_the_same_metrics(
    reference, tmp_path, caplog
):
    workdir = _copy_of(reference, tmp_path)
    _damage(workdir / "ckpt" / "latest" / "8", "flip")
    with caplog.at_level(logging.WARNING):
        results = _rerun(workdir)
    _assert_same_run(results, reference)
    assert any(
        w.startswith(f"{workdir}/ckpt/latest/8 cannot be restored ({_WHY['flip']}")
        for w in _warnings(caplog)
    )
    assert _steps(workdir, "latest") == [4, 8]


def test_a_damaged_selected_checkpoint_at_the_final_test_gives_the_same_metrics(
    reference, tmp_path, caplog
):
    workdir = _copy_of(reference, tmp_path)
    best = reference[1]["train"]["best_step"]
    _damage(workdir / "ckpt" / "best" / str(best), "truncate")
    with caplog.at_level(logging.WARNING):
        results = _rerun(workdir)  # resumes at the end: only the final test runs
    _assert_same_run(results, reference)
    assert f"{workdir}/ckpt/latest/{best}, the same state, used instead" in _warnings(caplog)


# ----------------------------------------------------------------------------- failed writes


def _no_space(monkeypatch, name: str, nth: int = 1) -> None:
    """``open`` of a file named ``name*`` for writing fails with ENOSPC from the ``nth`` time."""
    real, calls = builtins.open, []

    def full_open(file, mode="r", *args, **kwargs):
        path = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
        if os.path.basename(path).startswith(name) and set(mode) & set("wax"):
            calls.append(path)
            if len(calls) >= nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)


def _check_write_error(info, path) -> None:
    assert str(info.value) == f"could not write {path}: No space left on device"
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, UserError)


def test_config_json_that_cannot_be_written_stops_the_run_first(tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    _no_space(monkeypatch, "config.json")
    with pytest.raises(RunWriteError) as info:
        _rerun(workdir)
    _check_write_error(info, workdir / "config.json")
    assert os.listdir(workdir) == []  # no temporary file, no lock left


def test_a_metrics_line_that_cannot_be_written_keeps_the_log_and_the_checkpoint(
    reference, tmp_path, monkeypatch
):
    workdir = tmp_path / "w"
    _no_space(monkeypatch, "metrics.jsonl", nth=4)  # epoch 0 writes 3 lines
    with pytest.raises(RunWriteError) as info:
        _rerun(workdir)
    _check_write_error(info, workdir / "metrics.jsonl")
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and [json.loads(x)["epoch"] for x in lines] == [0, 0, 0]
    assert _steps(workdir, "latest") == [4]
    monkeypatch.undo()
    _assert_same_run(_rerun(workdir), reference)


def test_a_checkpoint_that_cannot_be_saved_keeps_the_previous_one(reference, tmp_path, monkeypatch):
    workdir = tmp_path / "w"
    real = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if str(self.directory).endswith("latest") and step == 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    with pytest.raises(RunWriteError) as info:
        _rerun(workdir)
    _check_write_error(info, workdir / "ckpt" / "latest" / "8")
    assert _steps(workdir, "latest") == [4]
    monkeypatch.undo()
    _assert_same_run(_rerun(workdir), reference)


def test_results_json_that_cannot_be_written_leaves_the_previous_one(
    reference, tmp_path, monkeypatch
):
    workdir = _copy_of(reference, tmp_path)
    before = (workdir / "results.json").read_bytes()
    _no_space(monkeypatch, "results.json")
    with pytest.raises(RunWriteError) as info:
        _rerun(workdir)
    _check_write_error(info, workdir / "results.json")
    assert (workdir / "results.json").read_bytes() == before
    assert not list(workdir.glob("results.json.tmp*"))
    monkeypatch.undo()
    _assert_same_run(_rerun(workdir), reference)


@pytest.fixture
def small_filesystem(tmp_path):
    """A 4 MiB tmpfs (skipped where mounting is not permitted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        done = subprocess.run(  # noqa: S603, S607
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, timeout=60)  # noqa: S603, S607


def _fill(directory) -> None:
    """Writes a file into ``directory`` until its filesystem is full."""
    fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1 << 8, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def test_a_full_disk_stops_the_run_naming_the_file_and_loses_nothing(
    reference, small_filesystem, caplog
):
    workdir = small_filesystem / "w"
    shutil.copytree(reference[0], workdir)
    shutil.rmtree(workdir / "ckpt" / "latest" / "8")  # the run resumes at step 4 and writes
    before = (workdir / "results.json").read_bytes()
    _fill(small_filesystem)
    filler = small_filesystem / "filler"
    os.truncate(filler, os.path.getsize(filler) - (16 << 10))  # room for small files only
    with pytest.raises(RunWriteError) as info:
        _rerun(workdir)
    assert re.fullmatch(
        rf"could not write {workdir}/ckpt/(latest|best)/8: No space left on device",
        str(info.value),
    )
    assert (workdir / "results.json").read_bytes() == before
    os.remove(small_filesystem / "filler")
    _assert_same_run(_rerun(workdir), reference)
    assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("fault", ["train_step:6", "ckpt_save:2", "cache_write"])
def test_a_run_killed_and_run_again_ends_with_the_same_metrics(
    fault, reference, tmp_path, monkeypatch, caplog
):
    workdir = tmp_path / "w"
    cache_dir = tmp_path / "cache"  # empty: the killed run builds the data cache
    monkeypatch.setenv("DURGRU_CACHE", str(cache_dir))
    env = {**os.environ, "PYTHONPATH": _ROOT, fault_injection.ENV_VAR: fault}
    killed = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _RUN, str(workdir)],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (workdir / "results.json").exists() and (workdir / ".lock").exists()
    if fault == "train_step:6":
        assert _steps(workdir, "latest") == [4]
    elif fault == "ckpt_save:2":  # killed while orbax wrote step 8 under its temporary name
        assert _steps(workdir, "latest") == [4]
        assert (workdir / "ckpt" / "latest" / "8.orbax-checkpoint-tmp").is_dir()
    else:
        (entry,) = cache_dir.iterdir()
        assert ".tmp-" in entry.name and not (entry / cache.META).exists()
    with caplog.at_level(logging.WARNING):
        results = _rerun(workdir)
    _assert_same_run(results, reference)
    assert any("taking over the stale lock" in w for w in _warnings(caplog))
    assert _steps(workdir, "latest") == [4, 8]
    assert not [p for p in workdir.rglob("*") if ".tmp" in p.name]
    assert [p.name for p in cache_dir.iterdir() if ".tmp-" in p.name] == []
