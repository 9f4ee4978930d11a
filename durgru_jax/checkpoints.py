"""A run's checkpoints: ``ckpt/latest`` (to resume) and ``ckpt/best`` (the state validation
selected), how damage to them is found, and what a damaged checkpoint gives way to.

**Found.** Every checkpoint carries a record (the JSON item ``meta``: for ``latest`` the
run's progress, `run_lib.new_meta`; for ``best`` its epoch) with three checks of its own:

* ``state_fingerprint`` (`fingerprint`): a position-weighted checksum of every array of the
  state, compared with the arrays restored. Orbax reads some damage without complaint: a bit
  flipped inside compressed data can decode to other numbers;
* ``state_spec`` (`state_spec`): each array's path, dtype and shape, compared before
  restoring, so that a workdir holding a checkpoint of another model is refused
  (`CheckpointMismatchError`) and never taken for damage;
* ``meta_sha256``: a sha256 of the record itself.

(A multi-host state, not fully addressable from one process, has no fingerprint; orbax's own
checks then apply.) Checkpoints written before these records restore unverified, as before.

**Given way to.**

* ``latest`` keeps the last two checkpoints. `Checkpoints.restore` resumes from the newest
  that restores and verifies. One that does not is logged (a warning naming its step and
  why) and deleted, and the previous one is tried; if none is left, the run starts afresh
  (a warning says so). Training is deterministic given the state and the epoch (batches from
  ``(seed, epoch)``, randomness from ``fold_in(seed, step)``), so a run resumed from an older
  checkpoint, or started afresh, ends with the numbers of the uninterrupted run. Steps of
  ``ckpt/best`` newer than the state resumed from are deleted: the epochs that wrote them run
  again and write them again.
* ``best`` keeps one checkpoint: the state validation selected. At the final test
  (`Checkpoints.best_params`), if it does not restore or verify, the same step kept in
  ``ckpt/latest`` stands in (the same state: one step of one deterministic run; kept when the
  best epoch is one of the last two). Otherwise the run stops with
  `SelectedCheckpointLostError` and reports nothing: the rule is that a run reports test
  metrics of the checkpoint validation selected or of none, never of another (an older best,
  the last state). Removing ``ckpt/`` and running again retrains to the same selection.
* A save that fails (disk full, I/O error) raises `errors.RunWriteError` naming the
  checkpoint. Orbax writes a checkpoint under a temporary name, renames it when complete and
  only then deletes the oldest, so the last good checkpoint stays; the temporary directory of
  a save that was interrupted is removed when the run starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from durgru_jax import fault_injection, run_lib
from durgru_jax.errors import RunWriteError, UserError, one_line

KEEP_LATEST = 2
FINGERPRINT, SPEC, SHA = "state_fingerprint", "state_spec", "meta_sha256"


class CheckpointMismatchError(ValueError, UserError):
    """The workdir holds a checkpoint of another model (other array shapes or dtypes)."""


class SelectedCheckpointLostError(RuntimeError, UserError):
    """The checkpoint validation selected cannot be restored, and no copy of it is kept."""


class _Damaged(Exception):
    """A checkpoint that does not restore or does not verify; ``str(e)`` says why."""


# ------------------------------------------------------------------------------- checks


def _as_uint32(x: jax.Array) -> jax.Array:
    """The bits of ``x``, flat, as uint32 words (narrower types widened, wider ones split)."""
    x = jnp.ravel(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    bits = jnp.dtype(x.dtype).itemsize * 8
    if bits < 32:
        return jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{bits}")).astype(jnp.uint32)
    return jnp.ravel(jax.lax.bitcast_convert_type(x, jnp.uint32))


@jax.jit
def _checksums(leaves: list[jax.Array]) -> jax.Array:
    """Two position-weighted sums (mod 2^32) of each leaf's words: any one changed bit
    changes the first (its weight ``2i + 1`` is odd), moved words change both."""
    out = []
    for leaf in leaves:
        u = _as_uint32(leaf)
        i = jnp.arange(u.size, dtype=jnp.uint32)
        weighted = u * (2 * i + 1)
        mixed = (u ^ (i * jnp.uint32(0x9E3779B9))) * jnp.uint32(0x85EBCA6B)
        out.append(jnp.stack([jnp.sum(x, dtype=jnp.uint32) for x in (weighted, mixed)]))
    return jnp.stack(out) if out else jnp.zeros((0, 2), jnp.uint32)


def fingerprint(state: Any) -> str | None:
    """A checksum of every array of ``state`` (hex; None when the state is not fully
    addressable from this process: multi-host)."""
    sums = _checksums(jax.tree.leaves(state))
    if not sums.is_fully_addressable:
        return None
    return hashlib.sha256(np.asarray(sums).tobytes()).hexdigest()[:32]


def state_spec(tree: Any) -> list[str]:
    """``"<path>: <dtype>[<shape>]"`` of each array of ``tree`` (arrays or shape structs)."""
    return [
        f"{jax.tree_util.keystr(path)}: {jnp.dtype(x.dtype).name}{list(x.shape)}"
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    ]


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != SHA}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _record(state: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with the checks of ``state`` and of the record itself."""
    record = dict(fields) | {FINGERPRINT: fingerprint(state), SPEC: state_spec(state)}
    return record | {SHA: _digest(record)}


def _write_error(path: str, e: Exception) -> RunWriteError | None:
    """The `RunWriteError` of a failed save (an OSError, or TensorStore's error carrying an
    ``os_error_code``), None for other errors."""
    if isinstance(e, OSError):
        return RunWriteError.of(path, e)
    code = re.search(r"os_error_code='?(\d+)", str(e))
    if code is None:
        return None
    n = int(code.group(1))
    return RunWriteError.of(path, OSError(n, os.strerror(n) if n else "I/O error"))


# --------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """A run's ``ckpt/latest`` (state + progress record, `KEEP_LATEST` kept) and
    ``ckpt/best`` (the selected state) orbax managers; see the module docstring."""

    def __init__(self, workdir: str):
        self.directory = os.path.abspath(os.path.join(workdir, "ckpt"))
        self.latest = self._manager("latest", KEEP_LATEST)
        self.best = self._manager("best", 1)
        self.abstract = None

    def _manager(self, name: str, keep: int) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True
        )
        return ocp.CheckpointManager(os.path.join(self.directory, name), options=options)

    # ---------------------------------------------------------------------- restore

    def restore(self, state: Any, who: str = "") -> tuple[Any, dict[str, Any]]:
        """``(state, meta)`` of the newest ``ckpt/latest`` checkpoint that restores and
        verifies, else the fresh ``state`` and `run_lib.new_meta`. ``state`` gives the
        structure, shapes, dtypes and shardings restored."""
        self.abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        damaged = False
        for step in sorted(self.latest.all_steps(), reverse=True):
            try:
                restored, meta = self._restore(self.latest, step)
            except _Damaged as e:
                logging.warning("%s%s/%d cannot be restored (%s): deleted", who,
                                self.latest.directory, step, e)  # fmt: skip
                self._delete(self.latest, step)
                damaged = True
                continue
            self._drop_best_after(step, who)
            log = logging.warning if damaged else logging.info
            log("%sresumed from %s at step %d (epoch %d)%s", who, self.directory, step,
                meta["epoch"], "; the epochs after it run again" if damaged else "")  # fmt: skip
            return restored, meta
        if damaged:
            logging.warning("%sno checkpoint in %s restores: the run starts afresh", who,
                            self.latest.directory)  # fmt: skip
        self._drop_best_after(-1, who)
        return state, run_lib.new_meta()

    def _restore(self, manager: ocp.CheckpointManager, step: int) -> tuple[Any, dict]:
        """``(state, record fields)`` of ``manager``'s ``step``, checked; raises `_Damaged`
        (or `CheckpointMismatchError`). A checkpoint without a checked record restores as
        before those records existed: its errors are raised as they are."""
        record = self._read_record(manager, step)
        checked = record is not None and SHA in record
        if checked:
            if record.pop(SHA) != _digest(record):
                raise _Damaged("its record does not match its checksum")
            self._check_spec(manager, step, record.pop(SPEC, None))
        args = ocp.args.Composite(state=ocp.args.StandardRestore(self.abstract))
        try:
            state = manager.restore(step, args=args).state
        except Exception as e:
            if not checked:
                raise
            raise _Damaged(f"its arrays are unreadable: {_short(e)}") from e
        expected = record.pop(FINGERPRINT, None) if checked else None
        if expected is not None and fingerprint(state) not in (None, expected):
            raise _Damaged("its arrays do not match their fingerprint")
        return state, record or {}

    def _read_record(self, manager: ocp.CheckpointManager, step: int) -> dict | None:
        if not os.path.isdir(os.path.join(str(manager.directory), str(step), "meta")):
            return None  # a best checkpoint written before records existed
        try:
            args = ocp.args.Composite(meta=ocp.args.JsonRestore())
            record = manager.restore(step, args=args).meta
        except Exception as e:
            raise _Damaged(f"its record is unreadable: {_short(e)}") from e
        if not isinstance(record, dict):
            raise _Damaged("its record is not a JSON object")
        return dict(record)

    def _check_spec(self, manager, step: int, spec: list[str] | None) -> None:
        want = state_spec(self.abstract)
        if spec is None or spec == want:
            return
        diff = next(
            (f"{a} here, {b} there" for a, b in zip(want, spec, strict=False) if a != b),
            f"{len(want)} arrays here, {len(spec)} there",
        )
        raise CheckpointMismatchError(
            f"{manager.directory}/{step} is a checkpoint of another model ({diff}): this "
            f"workdir belongs to another config; use a new --workdir, or remove "
            f"{self.directory} to start this one afresh"
        )

    def _delete(self, manager: ocp.CheckpointManager, step: int) -> None:
        try:
            manager.delete(step)
        except Exception:  # noqa: BLE001 - too damaged for orbax: remove the directory
            shutil.rmtree(os.path.join(str(manager.directory), str(step)), ignore_errors=True)
            manager.reload()

    def _drop_best_after(self, step: int, who: str) -> None:
        for s in self.best.all_steps():
            if s > step:
                logging.info("%s%s/%d deleted: written by an epoch that runs again", who,
                             self.best.directory, s)  # fmt: skip
                self._delete(self.best, s)

    # ------------------------------------------------------------------------- save

    def _save(self, manager: ocp.CheckpointManager, step: int, args, fault: str = "") -> None:
        try:
            manager.save(step, args=args)
            if fault:
                fault_injection.point(fault)
            manager.wait_until_finished()
        except Exception as e:
            err = _write_error(os.path.join(str(manager.directory), str(step)), e)
            if err is None:
                raise
            raise err from e

    def save_latest(self, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Saves ``state`` and the progress record ``meta`` as ``ckpt/latest`` ``step``;
        raises `errors.RunWriteError` if it cannot be written."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(_record(state, meta))
        )
        self._save(self.latest, step, args, fault="ckpt_save")

    def save_best(self, step: int, state: Any, epoch: int) -> None:
        """Saves ``state``, selected at ``epoch``, as ``ckpt/best`` ``step`` (replacing the
        previous best); raises `errors.RunWriteError` if it cannot be written."""
        if step in self.best.all_steps():  # re-saved by the same call: the newer one counts
            self._delete(self.best, step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(_record(state, {"epoch": epoch})),
        )
        self._save(self.best, step, args)

    # ------------------------------------------------------------------------ final

    def best_params(self, state: Any, epoch: int | None = None) -> tuple[Any, int | None]:
        """``(params, step)`` of the checkpoint selected at ``epoch`` (``ckpt/best``, or its
        copy in ``ckpt/latest`` if it is damaged); ``state``'s own and None if none was
        saved (no validation ran). Raises `SelectedCheckpointLostError` when the selected
        checkpoint cannot be restored (see the module docstring)."""
        step = self.best.latest_step()
        if step is None:
            return state["params"], None
        try:
            restored, record = self._restore(self.best, step)
        except _Damaged as e:
            return self._stand_in(step, str(e))["params"], step
        if epoch is not None and record.get("epoch", epoch) != epoch:
            raise SelectedCheckpointLostError(
                f"{self.best.directory}/{step} was saved at epoch {record['epoch']}, but the "
                f"run selected epoch {epoch}: remove {self.directory} and run again"
            )
        return restored["params"], step

    def _stand_in(self, step: int, why: str) -> Any:
        """The state of ``ckpt/latest`` ``step`` for the damaged best checkpoint ``step``."""
        best = f"{self.best.directory}/{step}"
        logging.warning("%s, the selected checkpoint, cannot be restored (%s)", best, why)
        if step in self.latest.all_steps():
            try:
                state, _ = self._restore(self.latest, step)
            except _Damaged as e:
                why += f"; nor its copy in {self.latest.directory}: {e}"
            else:
                logging.warning("%s/%d, the same state, used instead", self.latest.directory,
                                step)  # fmt: skip
                return state
        raise SelectedCheckpointLostError(
            f"{best}, the checkpoint validation selected, cannot be restored ({why}) and no "
            "copy of it is kept, so no test metrics are reported (no other checkpoint was "
            f"selected); remove {self.directory} and run again: training is deterministic "
            "and selects the same checkpoint"
        )

    def close(self) -> None:
        for manager in (self.latest, self.best):
            try:
                manager.close()
            except Exception as e:  # noqa: BLE001 - the error that stopped the run matters
                logging.warning("closing %s: %s", manager.directory, _short(e))


def _short(e: BaseException) -> str:
    text = one_line(e)
    return text if len(text) <= 300 else text[:299] + "…"
