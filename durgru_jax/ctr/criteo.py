"""Cached preprocessing of the Criteo display-advertising logs into memory-mapped tokens.

The text is read by `durgru_jax.ctr.criteo_format` (both Kaggle layouts, streamed in blocks,
parsed with vectorised numpy; bad rows named or skipped); its public names are importable from
here too.

Preprocessing (:func:`prepare`) makes each impression 39 categorical tokens:

* **split by position**: the Kaggle file is in time order (7 days), so the last
  ``test_ratio`` of the kept rows are the test set and the ``valid_ratio`` before them the
  validation set (a temporal split: no future impression informs the past);
* **integer features** are bucketised, then treated as categories: with
  ``int_transform="sqlog"`` (default, the trick of the Kaggle-winning solution) a value
  ``x > 2`` becomes ``floor(ln(x)^2)`` and ``x <= 2`` (including negatives) stays itself;
  ``"identity"`` keeps every integer as its own category;
* **vocabularies** per field are fitted on the training rows only: a value seen at least
  ``min_count`` times there gets its own token, any other value (rare, or first seen in
  validation/test) the shared OOV token 1, a missing value token 0. So field ``j`` has
  ``vocab_sizes[j] = 2 + kept values`` tokens.

Two passes, one over the text: pass 1 parses the text once, gives every distinct value a
dense code per field with an incremental hash table (in order of first appearance), counts
the codes and writes the codes of all rows to a temporary file (each block's column in the
narrowest of 1, 2 or 4 bytes), so the row count and split are known at its end; the counts
of the validation and test rows (read back from the file) are then subtracted, leaving
training counts, and pass 2 maps the codes to tokens through one table per field. Output, in
a cache folder keyed by a hash of the preprocessing options, the source file's path, size
and mtime, and the source code of both Criteo modules (memory-mapped at training time):

* ``tokens.npy``: ``int32 [rows, 39]`` (I1..I13, C1..C26);
* ``labels.npy``: ``int8 [rows]``;
* ``vocab.npz``: per field the key of each kept token (C: the value's 8 bytes as ``uint64``,
  see :func:`key_to_text`; I: the transformed value), in token order from 2;
* ``meta.json``: row counts, split boundaries, vocabulary sizes, click rates, skipped rows.

Everything is written into a temporary folder that is renamed into place at the end, so a
failed or interrupted run never leaves (or overwrites) a cache entry; a failed write (disk
full, read-only folder) raises `data.cache.CacheWriteError` naming the entry and the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno
import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from durgru_jax.ctr.criteo_format import (
    CAT_FIELDS,
    FIELDS,
    INT_FIELDS,
    N_INT,
    BadRows,
    CriteoBlock,
    CriteoLayout,
    _ordered_map,
    detect_layout,
    iter_blocks,
    key_to_text,
)
from durgru_jax.data import cache as data_cache
from durgru_jax.data.cache import code_fingerprint
from durgru_jax.errors import UserError

__all__ = [
    "CAT_FIELDS",
    "FIELDS",
    "INT_FIELDS",
    "CriteoBlock",
    "CriteoLayout",
    "key_to_text",
    "Prepared",
    "detect_layout",
    "iter_blocks",
    "load_prepared",
    "prepare",
    "transform_ints",
]

MISSING, OOV = 0, 1  # reserved tokens of every field
INT_TRANSFORMS = ("sqlog", "identity")
_FORMAT_VERSION = 1  # bump when the cached arrays change meaning


def transform_ints(ints: np.ndarray, missing: np.ndarray, how: str = "sqlog") -> np.ndarray:
    """Bucket keys of integer features: ``floor(ln(x)^2)`` for ``x > 2`` (``"sqlog"``), the
    value itself otherwise; ``"identity"``: every value is its own bucket."""
    if how == "identity":
        return ints
    if how != "sqlog":
        raise ValueError(f"int_transform must be one of {INT_TRANSFORMS}, got {how!r}")
    log = np.log(np.maximum(ints, 1).astype(np.float64))
    return np.where(ints > 2, np.floor(log * log).astype(np.int64), ints)


_MIX = 0x9E3779B97F4A7C15  # odd: multiplication by it is a bijection of uint64
_UNMIX = pow(_MIX, -1, 1 << 64)


def _mix(keys: np.ndarray) -> np.ndarray:
    """A bijection of uint64 that spreads every input bit over the low bits.

    Raw 8-character values use few distinct bits per byte, and pandas' hash of 64-bit keys is
    weak on such input (more probing: mixed keys factorize about 10% faster on a field with
    a million values). ``_unmix`` inverts it.
    """
    k = keys * np.uint64(_MIX)
    return k ^ (k >> np.uint64(32))


def _unmix(keys: np.ndarray) -> np.ndarray:
    k = keys ^ (keys >> np.uint64(32))
    return k * np.uint64(_UNMIX)


def _block_keys(block: CriteoBlock, int_transform: str) -> None:
    """Parser-thread part of preprocessing: bucketised ints and categoricals as one mixed
    ``uint64 [39, m]`` key matrix plus its missing mask."""
    m = len(block.labels)
    keys = np.empty((len(FIELDS), m), np.uint64)
    keys[:N_INT] = transform_ints(block.ints, block.ints_missing, int_transform).T.view(np.uint64)
    keys[N_INT:] = block.cat_keys.T
    block.keys = _mix(keys)
    block.missing = np.concatenate([block.ints_missing, block.cats_missing], axis=1).T.copy()


class _Codes:
    """Dense codes of ``uint64`` keys in order of first appearance, over a stream of blocks.

    Uses pandas' hash table (C speed, releases the GIL) through ``get_labels`` with a fresh
    vector of new values per block (pandas' own ``Factorizer`` copies all values seen so far
    on every call, which is quadratic on a 10M-value field); a numpy/dict fallback with
    identical codes covers pandas versions without it.
    """

    def __init__(self, use_pandas: bool = True):
        self._table = None
        if use_pandas:
            try:
                from pandas._libs import hashtable as ht

                self._table = ht.UInt64HashTable(1 << 10)
                self._vector = ht.UInt64Vector
            except (ImportError, AttributeError):  # pragma: no cover - other pandas versions
                self._table = None
        self._index: dict[int, int] = {}
        self._new: list[np.ndarray] = []
        self.size = 0

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """``int64`` codes of ``keys`` (new keys get the next codes)."""
        keys = np.ascontiguousarray(keys, np.uint64)
        if self._table is not None:
            new = self._vector()
            labels = self._table.get_labels(keys, new, self.size, -1)
            new = new.to_array()
        else:
            uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
            table = np.empty(len(uniq), np.int64)
            fresh = []
            for u in np.argsort(first, kind="stable"):
                key = int(uniq[u])
                if key not in self._index:
                    self._index[key] = self.size + len(fresh)
                    fresh.append(key)
                table[u] = self._index[key]
            labels = table[inv.ravel()]
            new = np.array(fresh, np.uint64)
        if len(new):
            self._new.append(new)
            self.size += len(new)
        return labels

    def uniques(self) -> np.ndarray:
        """Every key seen, in code order."""
        return np.concatenate(self._new) if self._new else np.zeros(0, np.uint64)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared Criteo dataset (arrays memory-mapped from the cache folder)."""

    dir: str
    tokens: np.ndarray  # int32 [rows, 39], memory-mapped
    labels: np.ndarray  # int8 [rows]
    meta: dict
    from_cache: bool

    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        return tuple(self.meta["vocab_sizes"])

    def split(self, name: str) -> slice:
        """Row range of ``"train"``, ``"valid"`` or ``"test"``."""
        lo, hi = self.meta["splits"][name]
        return slice(lo, hi)


def code_files() -> list[Path]:
    """The source files behind a prepared dataset: every ``criteo*.py`` module of this
    package (the reader of `durgru_jax.ctr.criteo_format` and this preprocessing)."""
    return sorted(Path(__file__).resolve().parent.glob("criteo*.py"))


def cache_key(path: str | os.PathLike[str], options: dict) -> str:
    """Hash of the preprocessing options, the source file's identity (path, size, mtime) and
    the code that prepares it (`code_files`: any edit of the parser gives a new key)."""
    st = os.stat(path)
    ident = {
        "path": os.path.abspath(os.fspath(path)),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "version": _FORMAT_VERSION,
        "code": code_fingerprint(code_files()),
        "options": options,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def load_prepared(dir_: str | os.PathLike[str], from_cache: bool = True) -> Prepared:
    d = os.fspath(dir_)
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    tokens = np.load(os.path.join(d, "tokens.npy"), mmap_mode="r")
    labels = np.load(os.path.join(d, "labels.npy"), mmap_mode="r")
    return Prepared(d, tokens, labels, meta, from_cache)


def prepare(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    min_count: int = 10,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.1,
    int_transform: str = "sqlog",
    on_bad_rows: str = "error",
    block_bytes: int = 8 << 20,
    workers: int = 2,
    log=None,
) -> Prepared:
    """Prepare ``path`` into ``cache_dir/<key>/`` (or load it from there); see the module doc.

    Raises:
        FileNotFoundError, DataFormatError: see :func:`detect_layout` and :func:`iter_blocks`.
        ValueError: bad options, or too few rows for the split.
    """
    if int_transform not in INT_TRANSFORMS:
        raise ValueError(f"int_transform must be one of {INT_TRANSFORMS}, got {int_transform!r}")
    if not (0 <= valid_ratio < 1 and 0 < test_ratio < 1 and valid_ratio + test_ratio < 1):
        raise ValueError(f"bad split ratios valid={valid_ratio}, test={test_ratio}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    log = log or (lambda *a: None)
    layout = detect_layout(path)
    options = {
        "min_count": int(min_count),
        "valid_ratio": float(valid_ratio),
        "test_ratio": float(test_ratio),
        "int_transform": int_transform,
        "on_bad_rows": on_bad_rows,
    }
    key = cache_key(path, options)
    final = os.path.join(os.fspath(cache_dir), key)
    if os.path.exists(os.path.join(final, "meta.json")):
        log("criteo: cache hit %s", final)
        return load_prepared(final, from_cache=True)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with _heap_allocations():
            meta = _prepare_into(tmp, layout, options | {"workers": workers}, block_bytes, log)
        meta["cache_key"] = key
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
        if os.path.exists(final):  # a concurrent run finished first: keep its entry
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if _writing(e, tmp):  # disk full, read-only, ...: name the entry, not a traceback
            raise data_cache.write_error(Path(final), e) from e
        raise
    return load_prepared(final, from_cache=False)


def _writing(e: BaseException, tmp: str) -> bool:
    """Whether ``e`` is a failure to write the cache entry being built in ``tmp`` (not one
    reading the source file)."""
    if not isinstance(e, OSError) or isinstance(e, UserError):
        return False
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return full or os.fspath(e.filename or "").startswith(tmp)


@contextlib.contextmanager
def _heap_allocations():
    """Serve the per-block temporaries (up to ~10 MB each) from the heap and keep freed
    memory for the next block, instead of glibc's default of a fresh ``mmap`` per large
    array, whose page faults cost about a quarter of the CPU time (measured: -40% system
    time, -12% wall). glibc only; the defaults are restored afterwards."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        yield
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
    try:
        yield
    finally:
        if ok:
            mallopt(m_mmap_threshold, 128 << 10)
            mallopt(m_trim_threshold, 128 << 10)
            libc.malloc_trim(0)


def _prepare_into(out: str, layout: CriteoLayout, options: dict, block_bytes: int, log) -> dict:
    store = _CodeStore(os.path.join(out, "codes.tmp"))
    try:
        return _prepare_passes(out, store, layout, options, block_bytes, log)
    finally:
        store.close()


def _prepare_passes(out, store, layout, options, block_bytes, log) -> dict:
    """Pass 1 (text to codes and counts), the training vocabularies, pass 2 (codes to tokens):
    writes the arrays into ``out`` and returns the content of ``meta.json``."""
    t0 = time.perf_counter()
    bad = BadRows()
    coders, counts, labels = _pass1(store, layout, options, block_bytes, bad)
    n = len(labels)
    t_pass1 = time.perf_counter() - t0
    log("criteo: pass 1 (parse + codes): %d rows in %.1f s", n, t_pass1)
    n_train, n_valid, n_test = _split_sizes(n, layout, options)
    sizes = [cd.size + 1 for cd in coders]  # +1: code 0 = missing
    counts = _train_counts(store, counts, sizes, n_train)
    tables, vocab_sizes, vocab = _vocabularies(coders, counts, sizes, options["min_count"])
    t_vocab = time.perf_counter() - t0 - t_pass1

    _write_tokens(os.path.join(out, "tokens.npy"), store, tables, n, int(options["workers"]))
    store.remove()
    np.save(os.path.join(out, "labels.npy"), labels)
    np.savez(os.path.join(out, "vocab.npz"), **vocab)
    t_total = time.perf_counter() - t0
    bounds = {
        "train": [0, n_train],
        "valid": [n_train, n_train + n_valid],
        "test": [n - n_test, n],
    }
    meta = {
        "source": layout.path,
        "format": layout.format,
        "fields": list(FIELDS),
        "options": options,
        "rows": n,
        "splits": bounds,
        "click_rate": {
            k: float(labels[lo:hi].mean()) if hi > lo else None for k, (lo, hi) in bounds.items()
        },
        "vocab_sizes": vocab_sizes,
        "distinct_values_all_rows": [size - 1 for size in sizes],
        "train_missing_rate": [float(c[MISSING]) / max(n_train, 1) for c in counts],
        "n_bad_rows_skipped": bad.count,
        "bad_row_examples": bad.examples,
        "seconds": {
            "pass1": t_pass1,
            "vocab": t_vocab,
            "pass2": t_total - t_pass1 - t_vocab,
            "total": t_total,
        },
        "rows_per_second": n / max(t_total, 1e-9),
        "durations": "none: Criteo has no timestamps or dwell times",
    }
    log(
        "criteo: %d rows (%d train / %d valid / %d test), %d skipped, %d tokens, %.1f s",
        n, n_train, n_valid, n_test, bad.count, sum(vocab_sizes), t_total,
    )  # fmt: skip
    return meta


def _pass1(store, layout, options, block_bytes, bad: BadRows):
    """Pass 1 over the text: ``(coders, counts, labels)``, one dense-code table and one count
    of every code over all rows per field, and the labels; the codes go to ``store``."""
    width = len(FIELDS)
    coders = [_Codes() for _ in range(width)]
    counts = [np.zeros(1024, np.int64) for _ in range(width)]
    labels_parts = []
    with store:
        post = functools.partial(_block_keys, int_transform=options["int_transform"])
        workers = int(options["workers"])
        blocks = iter_blocks(
            layout.path, options["on_bad_rows"], block_bytes, bad, layout, workers, post
        )
        with contextlib.closing(blocks):  # an error stops the parsing threads now
            for blk in blocks:
                if len(blk.labels) == 0:
                    continue
                codes_fxm = _block_codes(blk, coders)
                _count_codes(counts, coders, codes_fxm)
                store.append(codes_fxm)
                labels_parts.append(blk.labels)
    labels = np.concatenate(labels_parts) if labels_parts else np.zeros(0, np.int8)
    return coders, counts, labels


def _block_codes(blk: CriteoBlock, coders: list[_Codes]) -> np.ndarray:
    """``int32 [39, m]`` codes of a block's keys: ``1 + `` the field's dense code, 0 where the
    value is missing."""
    codes_fxm = np.empty((len(coders), len(blk.labels)), np.int32)
    for j, coder in enumerate(coders):
        codes_fxm[j] = coder.codes(blk.keys[j])
    codes_fxm += 1
    np.copyto(codes_fxm, MISSING, where=blk.missing)
    return codes_fxm


def _count_codes(counts: list[np.ndarray], coders: list[_Codes], codes_fxm: np.ndarray) -> None:
    """Add a block's occurrences of every code to ``counts`` (grown in place as codes appear;
    the tail past the last code is removed later)."""
    m = codes_fxm.shape[1]
    for j, coder in enumerate(coders):
        if coder.size >= len(counts[j]):
            grown = np.zeros(max(2 * len(counts[j]), coder.size + 1), np.int64)
            grown[: len(counts[j])] = counts[j]
            counts[j] = grown
        size = coder.size + 1
        if size <= 2 * m:  # few distinct codes: a dense count is cheaper
            counts[j][:size] += np.bincount(codes_fxm[j], minlength=size)
        else:
            np.add.at(counts[j], codes_fxm[j], 1)


def _split_sizes(n: int, layout: CriteoLayout, options: dict) -> tuple[int, int, int]:
    """``(n_train, n_valid, n_test)`` of the temporal split of ``n`` rows."""
    n_test = int(round(n * options["test_ratio"]))
    n_valid = int(round(n * options["valid_ratio"]))
    n_train = n - n_valid - n_test
    if n_train < 1 or n_test < 1:
        raise ValueError(
            f"{layout.path}: {n} usable rows are too few for the split "
            f"(valid {options['valid_ratio']}, test {options['test_ratio']})"
        )
    return n_train, n_valid, n_test


def _train_counts(store, counts: list[np.ndarray], sizes: list[int], n_train: int) -> list:
    """Counts of the training rows only: pass 1 counted every row, so the validation and test
    rows (from ``n_train`` on) are read back from ``store`` and subtracted."""
    for row0, cols in store.blocks(n_train):
        for j in range(len(counts)):
            np.subtract.at(counts[j], cols[j][max(n_train - row0, 0) :], 1)
    return [c[:size] for c, size in zip(counts, sizes, strict=True)]


def _vocabularies(coders, counts, sizes, min_count: int):
    """``(tables, vocab_sizes, vocab)``: per field the code-to-token table (tokens from 2 for
    the values seen ``min_count`` times in training, in code order; ``OOV`` for the others,
    ``MISSING`` for code 0), the token count and the keys of the kept values."""
    tables, vocab_sizes, vocab = [], [], {}
    for j, name in enumerate(FIELDS):
        kept = counts[j][1:] >= min_count
        table = np.full(sizes[j], OOV, np.int32)
        table[MISSING] = MISSING
        table[1:][kept] = 2 + np.arange(int(kept.sum()), dtype=np.int32)
        tables.append(table)
        vocab_sizes.append(2 + int(kept.sum()))
        keys = _unmix(coders[j].uniques()[kept])
        vocab[name] = keys.view(np.int64) if j < N_INT else keys
    return tables, vocab_sizes, vocab


def _write_tokens(path: str, store, tables: list[np.ndarray], n: int, workers: int) -> None:
    """Pass 2: codes to tokens through ``tables``, written row-major after an .npy header."""
    width = len(tables)

    def to_tokens(i):
        _, cols = store.read(i)
        tokens_fxm = np.empty((width, len(cols[0])), np.int32)
        for j in range(width):
            np.take(tables[j], cols[j], out=tokens_fxm[j])
        return np.ascontiguousarray(tokens_fxm.T)

    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<i4", "fortran_order": False, "shape": (n, width)}
        )
        items = ((i,) for i in range(store.n_blocks))
        mapped = (
            _ordered_map(to_tokens, items, workers) if workers else (to_tokens(*i) for i in items)
        )
        with contextlib.closing(mapped):  # a failed write stops the threads now
            for tokens in mapped:
                f.write(tokens.data)


class _CodeStore:
    """The codes of every row in a temporary file, block after block: each block stores
    each field's column in the narrowest unsigned type that holds that block's codes (1, 2 or
    4 bytes; on Criteo about half the size of ``int32``), so writing and re-reading cost
    less. Thread-safe reads (``os.pread``)."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "wb")  # noqa: SIM115 - closed by __exit__ / remove
        self._index: list[tuple[int, int, int, tuple]] = []  # row0, rows, offset, dtypes
        self._rows = 0
        self._offset = 0
        self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()
        if exc[0] is None:
            self._fd = os.open(self.path, os.O_RDONLY)

    def append(self, codes_fxm: np.ndarray) -> None:
        m = codes_fxm.shape[1]
        dtypes = []
        for col in codes_fxm:
            top = int(col.max())
            dt = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32
            self._file.write(col.astype(dt).data)
            dtypes.append(dt)
        self._index.append((self._rows, m, self._offset, tuple(dtypes)))
        self._rows += m
        self._offset += m * sum(np.dtype(dt).itemsize for dt in dtypes)

    @property
    def n_blocks(self) -> int:
        return len(self._index)

    def read(self, i: int) -> tuple[int, list[np.ndarray]]:
        """``(first row, per-field code columns)`` of block ``i``."""
        row0, m, offset, dtypes = self._index[i]
        nbytes = m * sum(np.dtype(dt).itemsize for dt in dtypes)
        data = os.pread(self._fd, nbytes, offset)
        cols, pos = [], 0
        for dt in dtypes:
            cols.append(np.frombuffer(data, dt, m, pos))
            pos += m * np.dtype(dt).itemsize
        return row0, cols

    def blocks(self, from_row: int = 0):
        """``(first row, columns)`` of every block holding a row at or after ``from_row``."""
        for i, (row0, m, _, _) in enumerate(self._index):
            if row0 + m > from_row:
                yield self.read(i)

    def close(self) -> None:
        self._file.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        self.close()
        os.remove(self.path)
