"""On-disk cache of prepared datasets: written once, memory-mapped at training time.

A cache entry is one directory ``<cache_dir>/<key>/`` holding every array field of
:class:`~durgru_jax.data.dataset.Prepared` as ``<field>.npy`` and everything else in
``meta.json``. Object arrays (``item_ids``: the raw item ids) are stored as ``<field>.npy``
(int64) when every element is an integer or ``None``, else as a JSON list ``<field>.json``.

**Where.** ``$DURGRU_CACHE`` if set, else ``~/.cache/durgru_jax`` (:func:`default_cache_dir`).

**Key** (:func:`cache_key`): sha256 over a canonical JSON (sorted keys) of

* the ``config.data`` group, every key except :data:`EXCLUDED_KEYS` (keys that say where or
  whether to cache or download, or what a run checks of the prepared data, never what is
  prepared); ``on_bad_rows`` is kept;
* ``extra`` values that affect the arrays but live outside ``config.data`` (the run's seed,
  which drives ``split="random"``);
* each source file's resolved absolute path, size and ``st_mtime_ns`` (a directory counts as
  every file below it);
* :data:`CACHE_VERSION` (bump it when the storage layout changes) and a fingerprint of the
  source code of the data pipeline (every ``.py`` file under ``durgru_jax/data/``, the
  ``readers`` package included, and ``durgru_jax/duration.py``: :func:`pipeline_files`), so
  changing how data is prepared never serves stale arrays.

Synthetic sources have no file: they key on the config alone.

**Atomicity.** An entry is written into ``<key>.tmp-<pid>-<random>/`` and renamed into place
with ``os.replace``; a failure midway removes the temporary directory and never touches a
complete entry (the temporary directory of a writer killed midway is removed by the next write
of that key). If another process completed the same entry first, ours is discarded. A failed
write (disk full, ...) raises :class:`CacheWriteError` naming the entry and the reason;
:func:`cached_prepare` logs it and returns the data it built.

**Damage detection.** ``meta.json`` records each data file's size and two sha256 checksums
(:func:`file_checksum`): ``sample`` covers the size and :data:`SAMPLE_BLOCKS` blocks of
:data:`BLOCK` bytes (the first, the last and evenly spaced ones between: the whole file when it
is that small), ``full`` covers every byte. ``meta.json`` carries a checksum of its own content.
Loading checks every size, then the ``sample`` checksums (a few MiB read in all: cheap); with
``verify="full"`` (or ``$DURGRU_CACHE_VERIFY=full``) it checks the ``full`` ones, which reads
every byte and also catches a change outside the sampled blocks. An entry that fails a check is
ignored with a warning naming the entry and the array, and rebuilt. Entries of an older
:data:`CACHE_VERSION` (version 1 had no checksums) are never served: the version is part of
the key, and a ``meta.json`` naming another version makes the entry count as absent. The check
runs when an entry is loaded; the memory-mapped files are trusted from then on.

**Loading** memory-maps every ``.npy`` (``np.load(mmap_mode="r")``). The arrays returned are
plain, read-only ``np.ndarray`` views of the maps (no ``np.memmap`` subclass surprises): reads,
slices and fancy indexing work as usual; in-place writes raise. ``info`` and the other
non-array fields go through JSON: tuples come back as lists, mapping keys as strings, numpy
scalars as Python numbers (a value JSON cannot hold makes the write fail, and
:func:`cached_prepare` then just logs that the entry was not cached).

**Clearing**: ``python -m durgru_jax.data.cache clear`` (or ``rm -rf ~/.cache/durgru_jax``);
``python -m durgru_jax.data.cache list`` shows the entries.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from durgru_jax import fault_injection
from durgru_jax.data.dataset import Prepared
from durgru_jax.errors import UserError
from durgru_jax.workdir_lock import pid_alive

CACHE_VERSION = 2  # 2: checksums in meta.json
ENV_VAR = "DURGRU_CACHE"
VERIFY_ENV_VAR = "DURGRU_CACHE_VERIFY"
VERIFY_MODES = ("sample", "full")
META = "meta.json"
BLOCK = 64 * 1024
SAMPLE_BLOCKS = 8
# config.data keys that choose where/whether data is cached or downloaded, or what a run
# checks of the prepared data, not what is prepared.
EXCLUDED_KEYS = frozenset(
    {"cache", "cache_dir", "download", "data_dir", "min_train_events", "min_eval_examples"}
)

_PKG = Path(__file__).resolve().parent.parent  # durgru_jax/


def default_cache_dir() -> Path:
    """``$DURGRU_CACHE`` if set and non-empty, else ``~/.cache/durgru_jax``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "durgru_jax"


class CacheWriteError(OSError, UserError):
    """An entry could not be written; the message names the entry and the reason."""


def verify_mode(verify: str | None = None) -> str:
    """``verify`` if given, else ``$DURGRU_CACHE_VERIFY``, else ``"sample"``; checked."""
    mode = verify or os.environ.get(VERIFY_ENV_VAR) or "sample"
    if mode not in VERIFY_MODES:
        where = "verify" if verify else f"${VERIFY_ENV_VAR}"
        raise ValueError(f"data cache: {where}={mode!r} is not one of {list(VERIFY_MODES)}")
    return mode


# ----------------------------------------------------------------------------- key


def _canon(x: Any) -> Any:
    """A JSON-able, order-independent form of a config value."""
    if hasattr(x, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {str(k): _canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canon(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return repr(x)


def _file_identity(path: str | os.PathLike) -> list[dict[str, Any]]:
    """``[{path, size, mtime_ns}]`` of a file, or of every file below a directory."""
    real = os.path.realpath(os.fspath(path))
    if os.path.isdir(real):
        out = []
        for root, dirs, files in os.walk(real):
            dirs.sort()
            for f in sorted(files):
                out += _file_identity(os.path.join(root, f))
        return out
    st = os.stat(real)  # FileNotFoundError for a missing source
    return [{"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns}]


def pipeline_files() -> list[Path]:
    """The data pipeline's source files: every ``.py`` under ``durgru_jax/data/``, its
    sub-packages included (a module split into a package stays covered), and
    ``durgru_jax/duration.py``."""
    return sorted((_PKG / "data").rglob("*.py")) + [_PKG / "duration.py"]


def code_fingerprint(files: Sequence[Path] | None = None) -> str:
    """sha256 of source files, each named by its path below ``durgru_jax/`` (any edit
    invalidates every entry keyed on it); by default `pipeline_files`."""
    h = hashlib.sha256()
    for f in pipeline_files() if files is None else files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        name = os.path.relpath(f, _PKG).replace(os.sep, "/")
        h.update(name.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def _key_payload(
    data_cfg: Mapping[str, Any], source_paths: Sequence[str], extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    cfg = {k: v for k, v in _canon(data_cfg).items() if k not in EXCLUDED_KEYS}
    sources = [ident for p in source_paths for ident in _file_identity(p)]
    return {
        "cache_version": CACHE_VERSION,
        "code": code_fingerprint(),
        "config": cfg,
        "extra": _canon(extra or {}),
        "sources": sources,
    }


def cache_key(
    data_cfg: Mapping[str, Any],
    source_paths: Sequence[str],
    *,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The entry name for ``data_cfg`` read from ``source_paths`` (32 hex digits).

    ``data_cfg``: the ``config.data`` group (a ConfigDict or any mapping). ``source_paths``:
    the files (or directories) it reads, in reading order; empty for synthetic data.
    ``extra``: anything else the prepared arrays depend on, e.g. ``{"seed": seed}``.
    Raises ``FileNotFoundError`` when a source is missing.
    """
    payload = _key_payload(data_cfg, source_paths, extra)
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- save


def _jsonable(x: Any) -> Any:
    """`run_lib.jsonable` in its ``exact`` mode (what is read back must equal what was
    written: NaN stays a float, an unknown type raises `TypeError`), naming this file."""
    from durgru_jax.run_lib import jsonable  # here: the data pipeline otherwise needs no JAX

    try:
        return jsonable(x, exact=True)
    except TypeError as e:
        raise TypeError(f"cannot store in {META}: {e}") from None


def _fsync(path: Path) -> None:
    """Flushes a file or directory to disk (best effort: some filesystems refuse dirs)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "xb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _as_int_ids(arr: np.ndarray) -> tuple[np.ndarray, list[int]] | None:
    """(int64 values, positions of None) when every element is an int or None, else None."""
    none_pos, values = [], []
    for i, v in enumerate(arr.tolist()):
        if v is None:
            none_pos.append(i)
            values.append(0)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            values.append(v)
        else:
            return None
    try:
        return np.asarray(values, dtype=np.int64), none_pos
    except OverflowError:
        return None


def _write_entry(prepared: Prepared, directory: Path, meta_extra: Mapping[str, Any]) -> None:
    arrays: dict[str, Any] = {}
    objects: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(prepared):
        value = getattr(prepared, f.name)
        if isinstance(value, np.ndarray) and value.dtype != object:
            _save_npy(directory / f"{f.name}.npy", value)
            fault_injection.point("cache_write")  # tests: a kill -9 mid-write
            arrays[f.name] = {"dtype": value.dtype.str, "shape": list(value.shape)}
        elif isinstance(value, np.ndarray):  # object array: raw ids
            if value.ndim != 1:
                raise TypeError(f"cannot cache the {value.ndim}-d object array {f.name!r}")
            ints = _as_int_ids(value)
            if ints is not None:
                _save_npy(directory / f"{f.name}.npy", ints[0])
                objects[f.name] = {"encoding": "int64", "none": ints[1]}
            else:
                with open(directory / f"{f.name}.json", "x", encoding="utf-8") as fh:
                    json.dump(_jsonable(value.tolist()), fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                objects[f.name] = {"encoding": "json"}
        else:
            scalars[f.name] = _jsonable(value)
    files = sorted(directory.iterdir())
    meta = {
        "cache_version": CACHE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "arrays": arrays,
        "objects": objects,
        "scalars": scalars,
        "files": {p.name: p.stat().st_size for p in files},
        "checksums": {p.name: {m: file_checksum(p, m) for m in VERIFY_MODES} for p in files},
        **_jsonable(dict(meta_extra)),
    }
    meta["meta_sha256"] = _meta_digest(meta)
    with open(directory / META, "x", encoding="utf-8") as fh:  # written last
        json.dump(meta, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    _fsync(directory)


def file_checksum(path: str | os.PathLike, mode: str = "sample") -> str:
    """sha256 of a file's size and content: every byte (``"full"``) or, for ``"sample"``, the
    first, the last and evenly spaced blocks (:data:`SAMPLE_BLOCKS` of :data:`BLOCK` bytes;
    every byte of a smaller file). Deterministic: the same file always gives the same value."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        h.update(f"{size}\0".encode())
        if mode == "full" or size <= SAMPLE_BLOCKS * BLOCK:
            while chunk := fh.read(16 * BLOCK):
                h.update(chunk)
        else:
            for i in range(SAMPLE_BLOCKS):
                fh.seek(i * (size - BLOCK) // (SAMPLE_BLOCKS - 1))
                h.update(fh.read(BLOCK))
    return h.hexdigest()


def _meta_digest(meta: Mapping[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_meta(entry: Path) -> dict[str, Any] | None:
    """The entry's meta, or None (with a log line) when absent, unreadable, of another cache
    version or changed after it was written."""
    try:
        with open(entry / META, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logging.warning("data cache: unreadable %s (%s): ignored", entry / META, e)
        return None
    if not isinstance(meta, dict):
        logging.warning("data cache: %s is not a JSON object: ignored", entry / META)
        return None
    if meta.get("cache_version") != CACHE_VERSION:
        logging.info(
            "data cache: %s has cache version %s, not %d: ignored (rebuilt)",
            entry,
            meta.get("cache_version"),
            CACHE_VERSION,
        )
        return None
    if meta.get("meta_sha256") != _meta_digest(meta):
        logging.warning("data cache: damaged entry %s (%s changed): ignored", entry, META)
        return None
    return meta


def _damage(entry: Path, meta: Mapping[str, Any], verify: str) -> str | None:
    """What is wrong with the entry's data files (None: nothing), checked by size, then by
    the ``verify`` checksum (``"sample"`` or ``"full"``)."""
    files, sums = meta.get("files"), meta.get("checksums")
    if not isinstance(files, dict) or not isinstance(sums, dict) or set(files) != set(sums):
        return f"{META} lists no checksums"
    for name, size in files.items():
        what = f"array {name.split('.')[0]!r}: {name}"
        try:
            actual = (entry / name).stat().st_size
        except OSError as e:
            return f"{what} unreadable ({e.strerror or e})"
        if actual != size:
            return f"{what} has {actual} bytes, {size} written"
    for name in files:
        what = f"array {name.split('.')[0]!r}: {name}"
        try:
            ok = file_checksum(entry / name, verify) == sums[name].get(verify)
        except (OSError, AttributeError) as e:
            return f"{what} unreadable ({e})"
        if not ok:
            return f"{what} does not match its {verify} checksum"
    return None


def _is_complete(entry: Path, verify: str) -> bool:
    meta = _read_meta(entry)
    return meta is not None and _damage(entry, meta, verify) is None


def _remove_tree(path: Path) -> None:
    """Renames ``path`` aside (atomic) and deletes it, so readers never see half a tree."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _remove_abandoned(directory: Path, key: str) -> None:
    """Deletes the temporary directories of ``key`` left by writers that died (killed mid-
    write): those whose pid is not alive on this host. (A writer on another host sharing the
    directory would be taken for dead: its write then fails and its run goes on uncached.)"""
    for path in directory.glob(f"{glob.escape(key)}.tmp-*-*"):
        pid = path.name[len(key) + 5 :].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            logging.info("data cache: removing %s, left by a writer that died", path)
            shutil.rmtree(path, ignore_errors=True)


def write_error(entry: Path, e: OSError) -> CacheWriteError:
    """The `CacheWriteError` of ``entry`` for the ``e`` raised writing it (its errno kept)."""
    reason = e.strerror or str(e)
    if e.filename:
        reason += f" ({os.path.basename(e.filename)})"
    err = CacheWriteError(f"could not write the data cache entry {entry}: {reason}")
    err.errno = e.errno
    return err


def save_prepared(
    prepared: Prepared,
    directory: str | os.PathLike,
    key: str,
    *,
    description: Mapping[str, Any] | None = None,
    verify: str | None = None,
) -> str:
    """Writes ``prepared`` as the entry ``directory/key`` atomically; returns the entry path.

    ``description`` (JSON-able) is stored in ``meta.json`` for ``list``; it is not part of
    the key. An existing complete entry (checked as :func:`load_prepared` does with
    ``verify``) is kept as is: whoever finished first wins; a damaged one is replaced once the
    new entry is complete. Raises :class:`CacheWriteError` (entry path and reason, e.g. "No
    space left on device") when writing fails; nothing of the new entry is left behind then.
    """
    if not key or os.sep in key or key.startswith("."):
        raise ValueError(f"invalid cache key {key!r}")
    mode = verify_mode(verify)
    directory = Path(directory)
    final = directory / key
    if _is_complete(final, mode):
        return str(final)
    tmp = directory / f"{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    _remove_abandoned(directory, key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _write_entry(prepared, tmp, {"key": key, "description": description or {}})
        if final.exists() and not _is_complete(final, mode):  # a damaged entry: replace it
            logging.warning("data cache: replacing the damaged entry %s", final)
            _remove_tree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not _is_complete(final, mode):
                raise
            logging.info("data cache: %s was written concurrently; keeping that one", final)
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync(directory)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, CacheWriteError):
            raise write_error(final, e) from e
        raise
    return str(final)


# ----------------------------------------------------------------------------- load


def load_prepared(
    directory: str | os.PathLike, key: str, *, verify: str | None = None
) -> Prepared | None:
    """The entry ``directory/key`` with memory-mapped arrays, or None when it is absent,
    damaged (a size or a ``verify`` checksum differs: see the module docstring), from another
    cache version or from another layout of ``Prepared``. ``verify``: ``"sample"`` or
    ``"full"``; None: ``$DURGRU_CACHE_VERIFY``, else ``"sample"``."""
    mode = verify_mode(verify)
    entry = Path(directory) / key
    meta = _read_meta(entry)
    if meta is None:
        return None
    problem = _damage(entry, meta, mode)
    if problem is not None:
        logging.warning("data cache: damaged entry %s (%s): ignored, rebuilt", entry, problem)
        return None
    names = {f.name for f in dataclasses.fields(Prepared)}
    stored = set(meta.get("arrays", {})) | set(meta.get("objects", {}))
    stored |= set(meta.get("scalars", {}))
    if stored != names:
        logging.info("data cache: %s was written for other Prepared fields: ignored", entry)
        return None
    kwargs: dict[str, Any] = dict(meta["scalars"])
    try:
        for name, spec in meta["arrays"].items():
            arr = np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if arr.dtype.str != spec["dtype"] or list(arr.shape) != spec["shape"]:
                raise ValueError(f"{name}.npy: {arr.dtype.str}{arr.shape} != {spec}")
            kwargs[name] = np.asarray(arr)  # a plain ndarray view of the map, read-only
        for name, spec in meta["objects"].items():
            if spec["encoding"] == "int64":
                values = np.load(entry / f"{name}.npy", allow_pickle=False).astype(object)
                values[spec["none"]] = None
            else:
                with open(entry / f"{name}.json", encoding="utf-8") as fh:
                    lst = json.load(fh)
                values = np.empty(len(lst), dtype=object)
                values[:] = lst
            kwargs[name] = values
    except (OSError, ValueError, KeyError) as e:
        logging.warning("data cache: damaged entry %s (%s): ignored", entry, e)
        return None
    return Prepared(**kwargs)


def cached_prepare(
    data_cfg: Mapping[str, Any],
    source_paths: Sequence[str],
    cache_dir: str | os.PathLike | None,
    build: Callable[[], Prepared],
    *,
    extra: Mapping[str, Any] | None = None,
    verify: str | None = None,
) -> tuple[Prepared, bool]:
    """The cached entry for ``(data_cfg, source_paths, extra)`` if there is one, else
    ``build()`` (then saved). Returns ``(prepared, hit)``. ``cache_dir=None``: the default.
    ``verify``: how a found entry is checked (:func:`load_prepared`).

    ``build`` runs only on a miss; if it raises, nothing is written. A failure to *write*
    the entry (disk full, unsupported field) is logged and the built dataset returned.
    """
    mode = verify_mode(verify)
    directory = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        key = cache_key(data_cfg, source_paths, extra=extra)
    except FileNotFoundError as e:  # let the reader report the missing file its own way
        logging.info("data cache: not used (%s)", e)
        return build(), False
    t0 = time.perf_counter()
    prepared = load_prepared(directory, key, verify=mode)
    if prepared is not None:
        logging.info(
            "data cache hit: %s (loaded in %.2f s)", directory / key, time.perf_counter() - t0
        )
        return prepared, True
    logging.info("data cache miss: %s; preparing the data", directory / key)
    prepared = build()
    built_s = time.perf_counter() - t0
    try:
        if cache_key(data_cfg, source_paths, extra=extra) != key:
            logging.warning("data cache: a source file changed while it was read; not cached")
            return prepared, False
        payload = _key_payload(data_cfg, source_paths, extra)
        description = {k: payload[k] for k in ("config", "extra", "sources")}
        description["build_seconds"] = round(built_s, 3)
        path = save_prepared(prepared, directory, key, description=description, verify=mode)
        logging.info("data cache: saved %s (prepared in %.2f s)", path, built_s)
    except Exception as e:  # noqa: BLE001 - caching is an optimisation: never fail the run
        why = e if isinstance(e, CacheWriteError) else f"could not write {directory / key}: {e}"
        logging.warning("data cache: %s; the run goes on without caching", why)
    return prepared, False


# ----------------------------------------------------------------------------- CLI


def _entries(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir())


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m durgru_jax.data.cache", description="List or clear the data cache."
    )
    ap.add_argument(
        "--dir", default=None, help=f"cache directory (default: ${ENV_VAR} or ~/.cache/durgru_jax)"
    )
    ap.add_argument("command", choices=("list", "clear", "path"))
    ap.add_argument("keys", nargs="*", help="clear: only these entries (default: all)")
    args = ap.parse_args(argv)
    directory = Path(args.dir).expanduser() if args.dir else default_cache_dir()
    if args.command == "path":
        print(directory)
        return 0
    if args.command == "list":
        for e in _entries(directory):
            meta = _read_meta(e)
            if meta is None or "." in e.name:
                print(f"{e.name}  (incomplete, temporary, damaged or of another cache version)")
                continue
            d = meta.get("description", {})
            cfg = d.get("config", {})
            srcs = ", ".join(s["path"] for s in d.get("sources", [])) or "-"
            n = meta["scalars"].get("info", {}).get("n_events", "?")
            print(
                f"{e.name}  {_size(e) / 2**20:8.1f} MiB  {meta.get('created', '?')}  "
                f"source={cfg.get('source', '?')}  events={n}  files={srcs}"
            )
        return 0
    wanted = set(args.keys)
    for e in _entries(directory):
        base = e.name.split(".", 1)[0]
        if not wanted or base in wanted:
            _remove_tree(e)
            print(f"removed {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
