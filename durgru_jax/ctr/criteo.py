"""Streaming reader and cached preprocessing of the Criteo display-advertising logs.

Formats (detected from the first line):

* Kaggle ``train.txt`` / ``dac_sample.txt``: TAB separated, no header, 40 fields
  ``Label I1..I13 C1..C26``;
* the Kaggle CSV variant ``train.csv``: comma separated with the header
  ``Id,Label,I1..I13,C1..C26`` (any header naming ``Label``, ``I1..I13``, ``C1..C26`` works;
  other columns such as ``Id`` are ignored).

``Label`` is 0/1, ``I*`` are integers (``I2`` can be negative), ``C*`` are 32-bit hashes
written as 8 hex characters; an empty field is a missing value. LF or CRLF line ends; blank
lines are ignored.

Parsing is vectorised numpy on blocks of whole lines (``block_bytes``, 8 MiB by default),
several blocks at once on worker threads: the separators of a block are found with one
comparison, every field's bytes are gathered as one 64-bit word and integers of up to 8
digits are decoded with SWAR bit arithmetic, so no per-row Python runs and memory stays
bounded by the block size whatever the file size.
A block that is not perfectly regular (a wrong field count, a non-integer, a label other than
0/1, a control byte) is re-read line by line to name the first bad row:
:class:`~durgru_jax.data.readers.DataFormatError` ``file:line: column 'I3': ...`` with
``on_bad_rows="error"``, or the bad rows are dropped and counted with ``"skip"``.
A categorical value is kept as its raw 8 bytes (one ``uint64``: no hex decoding is needed to
tell values apart); a value of another length (not seen in the Kaggle data) is hashed to 64
bits.

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
a cache folder keyed by a hash of the preprocessing options and the source file's path, size
and mtime (memory-mapped at training time):

* ``tokens.npy``: ``int32 [rows, 39]`` (I1..I13, C1..C26);
* ``labels.npy``: ``int8 [rows]``;
* ``vocab.npz``: per field the key of each kept token (C: the value's 8 bytes as ``uint64``,
  see :func:`key_to_text`; I: the transformed value), in token order from 2;
* ``meta.json``: row counts, split boundaries, vocabulary sizes, click rates, skipped rows.

Everything is written into a temporary folder that is renamed into place at the end, so a
failed or interrupted run never leaves (or overwrites) a cache entry.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from durgru_jax.data.readers import DataFormatError, check_text_head

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

INT_FIELDS = tuple(f"I{i}" for i in range(1, 14))
CAT_FIELDS = tuple(f"C{i}" for i in range(1, 27))
FIELDS = INT_FIELDS + CAT_FIELDS  # token column order
N_INT, N_CAT = len(INT_FIELDS), len(CAT_FIELDS)
MISSING, OOV = 0, 1  # reserved tokens of every field
INT_TRANSFORMS = ("sqlog", "identity")
_FORMAT_VERSION = 1  # bump when the cached arrays change meaning
_HINT = (
    "download train.txt of the Kaggle Display Advertising Challenge (Criteo Labs, "
    "https://ailab.criteo.com/ressources/ , dac.tar.gz) and pass it as data.path"
)

# SWAR constants (8 bytes of a little-endian uint64 = 8 characters, first char lowest).
_B = np.uint64
_HI = _B(0x8080808080808080)
_LO4 = _B(0x0F0F0F0F0F0F0F0F)
_ZEROS = _B(0x3030303030303030)
_SH = [_B(s) for s in range(64)]
# _KEEP_HIGH[k]: mask of the 8-k highest bytes (the last 8-k characters), k = 0..8.
_KEEP_HIGH = np.array([(~((1 << (8 * k)) - 1)) & ((1 << 64) - 1) for k in range(9)], np.uint64)
_INT_RE = re.compile(rb"-?[0-9]+")


class _Anomaly(Exception):
    """Internal: the fast path met something it cannot decode; re-read the block by line."""


@dataclasses.dataclass(frozen=True)
class CriteoLayout:
    """Where the fields are in one file.

    Attributes:
        path: the file.
        format: ``"criteo-tsv"`` (Kaggle train.txt) or ``"criteo-csv"`` (header row).
        sep: the field separator byte.
        n_cols: fields per line.
        label_col, int_cols, cat_cols: column positions of Label, I1..I13, C1..C26.
        names: the column names used in messages (the header's, or Label/I*/C*).
        header_lines: lines before the first data row (0 or 1).
    """

    path: str
    format: str
    sep: int
    n_cols: int
    label_col: int
    int_cols: tuple[int, ...]
    cat_cols: tuple[int, ...]
    names: tuple[str, ...]
    header_lines: int


@dataclasses.dataclass
class CriteoBlock:
    """The rows of one block, in file order (bad rows removed).

    ``ints`` are the raw integers (0 where missing); ``cat_keys`` hold each 8-character
    value's bytes as a little-endian ``uint64`` (:func:`key_to_text` gives the text back; a
    value of another length is hashed to 64 bits with the top bit set), 0 where missing; the
    masks mark missing values. ``first_line``: 1-based line of the block's
    first line.
    """

    labels: np.ndarray  # int8 [m]
    ints: np.ndarray  # int64 [m, 13]
    ints_missing: np.ndarray  # bool [m, 13]
    cat_keys: np.ndarray  # uint64 [m, 26]: the 8 bytes of the value (see key_to_text)
    cats_missing: np.ndarray  # bool [m, 26]
    first_line: int
    keys: np.ndarray | None = None  # prepare only: mixed uint64 keys [39, m] (I then C)
    missing: np.ndarray | None = None  # prepare only: bool [39, m]


class BadRows:
    """Rows dropped with ``on_bad_rows="skip"``: a count and the first few messages."""

    def __init__(self, max_examples: int = 5):
        self.count = 0
        self.examples: list[str] = []
        self.max_examples = max_examples

    def add(self, err: DataFormatError) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(err))


# --------------------------------------------------------------------------------------
# Format detection and block reading
# --------------------------------------------------------------------------------------


def detect_layout(path: str | os.PathLike[str]) -> CriteoLayout:
    """Read the first line of ``path`` and tell its layout; see the module docstring.

    Raises:
        FileNotFoundError: no such file (with where to get it).
        DataFormatError: empty, compressed, binary/UTF-16, or not a Criteo layout.
    """
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{os.fspath(path)}: no such file; {_HINT}")
    if file.is_dir():
        raise DataFormatError(path, "is a directory, expected a file")
    with open(file, "rb") as f:
        head = f.read(1 << 16)
    check_text_head(path, head, member="train.txt")
    sample = [line.rstrip(b"\r") for line in head.split(b"\n")[:-1] or [head]]
    first_no = next(i for i, line in enumerate(sample) if line.strip())
    first = sample[first_no]
    sep = b"\t" if b"\t" in first else b","
    cols = first.split(sep)
    first_field = cols[0].strip()
    kind = "TAB" if sep == b"\t" else "comma"
    counts = [len(line.split(sep)) for line in sample[first_no : first_no + 50] if line.strip()]
    if all(c == 39 for c in counts) and all(_INT_RE.fullmatch(c) or not c for c in cols[:13]):
        raise DataFormatError(
            path,
            f"has 39 {kind}-separated fields per line and no label: this looks like the "
            "Kaggle test.txt, which has no labels; use train.txt",
            line=first_no + 1,
        )
    if first_field in (b"0", b"1"):  # no header: Kaggle train.txt
        # A bad first row is reported by the parser like any other, unless no line of the
        # sample has 40 fields (then the file is not in this format).
        if 40 not in counts:
            raise DataFormatError(
                path,
                f"expected 40 {kind}-separated fields (Label, I1..I13, C1..C26) per line, "
                f"found {len(cols)}",
                line=first_no + 1,
            )
        return CriteoLayout(
            path=os.fspath(path),
            format="criteo-tsv" if sep == b"\t" else "criteo-csv",
            sep=sep[0],
            n_cols=40,
            label_col=0,
            int_cols=tuple(range(1, 14)),
            cat_cols=tuple(range(14, 40)),
            names=("Label",) + FIELDS,
            header_lines=0,
        )
    try:
        names = [c.decode("utf-8").strip().strip('"') for c in cols]
    except UnicodeDecodeError:
        names = []
    lower = [n.lower() for n in names]
    wanted = ("label",) + tuple(n.lower() for n in FIELDS)
    missing = [w for w in wanted if w not in lower]
    if missing or not names:
        raise DataFormatError(
            path,
            "not a Criteo file: expected TAB-separated rows 'label I1..I13 C1..C26' "
            f"(train.txt) or a header naming Label, I1..I13, C1..C26; got {first[:80]!r}"
            + (f" (missing {missing[:5]})" if names else ""),
            line=first_no + 1,
        )
    pos = [lower.index(w) for w in wanted]
    return CriteoLayout(
        path=os.fspath(path),
        format="criteo-csv" if sep == b"," else "criteo-tsv",
        sep=sep[0],
        n_cols=len(names),
        label_col=pos[0],
        int_cols=tuple(pos[1:14]),
        cat_cols=tuple(pos[14:]),
        names=tuple(names),
        header_lines=first_no + 1,
    )


def _raw_blocks(path: str, block_bytes: int, skip_lines: int) -> Iterator[tuple[bytes]]:
    """Yield ``(data,)``: whole lines, each block ending with ``\\n``."""
    carry = b""
    with open(path, "rb", buffering=0) as f:
        for _ in range(skip_lines):
            while b"\n" not in carry:
                chunk = f.read(1 << 16)
                if not chunk:
                    return
                carry += chunk
            carry = carry[carry.index(b"\n") + 1 :]
        advise = hasattr(os, "posix_fadvise")
        if advise:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        done = 0
        while True:
            chunk = f.read(block_bytes)
            if not chunk:
                break
            if advise and f.tell() - done >= 256 << 20:
                # Read once: let the kernel drop what is behind us from the page cache
                # rather than reclaim memory under pressure (the Kaggle file is 11 GB).
                os.posix_fadvise(f.fileno(), done, f.tell() - done, os.POSIX_FADV_DONTNEED)
                done = f.tell()
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            yield (data[: cut + 1],)
    if carry:
        yield (carry + b"\n",)


def iter_blocks(
    path: str | os.PathLike[str],
    on_bad_rows: str = "error",
    block_bytes: int = 8 << 20,
    bad: BadRows | None = None,
    layout: CriteoLayout | None = None,
    workers: int = 0,
    _post=None,
) -> Iterator[CriteoBlock]:
    """Stream the rows of a Criteo file as :class:`CriteoBlock` s, in file order.

    Bad rows raise :class:`DataFormatError` (``on_bad_rows="error"``; the first bad row of
    the file, as blocks are consumed in order) or are dropped and recorded in ``bad``
    (``"skip"``). ``workers > 0`` parses that many blocks at once in background threads
    (numpy and the hash tables release the GIL, so they run on several cores), at most
    ``workers + 1`` blocks ahead of the caller.
    """
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    layout = layout or detect_layout(path)
    bad = bad if bad is not None else BadRows()
    raw = _raw_blocks(layout.path, block_bytes, layout.header_lines)
    parse = functools.partial(_parse_block, layout=layout, on_bad_rows=on_bad_rows, post=_post)
    parsed = _ordered_map(parse, raw, workers) if workers > 0 else (parse(*r) for r in raw)
    seen_rows = False
    line = 1 + layout.header_lines  # of the current block's first line
    for block, problems, n_lines in parsed:
        for rel, column, detail in problems:
            err = DataFormatError(layout.path, detail, line=line + rel, column=column)
            if on_bad_rows == "error":
                raise err
            bad.add(err)
        block.first_line = line
        line += n_lines
        seen_rows = seen_rows or len(block.labels) > 0
        yield block
    if not seen_rows and bad.count == 0:
        raise DataFormatError(path, "has no data rows")


def _ordered_map(fn, items: Iterator[tuple], workers: int) -> Iterator:
    """``fn(*item)`` for each item on a thread pool, results in input order, bounded ahead."""
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="criteo") as ex:
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(ex.submit(fn, *item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def _parse_block(data: bytes, layout: CriteoLayout, on_bad_rows: str, post):
    """``(block, problems, lines)``: the good rows, ``(line offset in the block, column,
    detail)`` of each bad row (only the first with "error"), and the block's line count."""
    try:
        block = _parse_fast(data, layout)
        problems, n_lines = [], len(block.labels)  # the fast path saw one row per line
    except _Anomaly:
        block, problems = _parse_slow(data, layout, on_bad_rows)
        n_lines = data.count(b"\n")
    if post is not None:
        post(block)
    return block, problems, n_lines


# --------------------------------------------------------------------------------------
# Block parsing
# --------------------------------------------------------------------------------------


def _parse_fast(data: bytes, layout: CriteoLayout) -> CriteoBlock:
    """Decode a block of well-formed lines; raises `_Anomaly` on anything irregular."""
    n_bytes = len(data)
    arr = np.empty(n_bytes + 16, np.uint8)
    arr[:8] = 48  # padding: 8-byte reads may start before the block or end after it
    arr[8 : 8 + n_bytes] = np.frombuffer(data, np.uint8)
    arr[8 + n_bytes :] = 48
    body = arr[8 : 8 + n_bytes]
    if layout.sep == 9:
        delim = np.flatnonzero(body < 11)  # TAB, LF, and control bytes (caught below)
    else:
        delim = np.flatnonzero((body == layout.sep) | (body < 11))
    f = layout.n_cols
    if len(delim) % f:
        raise _Anomaly
    n = len(delim) // f
    dpos = delim.reshape(n, f) + 8
    # Exactly n newlines, each ending a row, and n (f - 1) separators: then every row has f
    # fields and no other byte below 11 (a control byte) is anywhere in the block.
    if (
        np.count_nonzero(body == 10) != n
        or np.count_nonzero(body == layout.sep) != n * (f - 1)
        or not (arr[dpos[:, -1]] == 10).all()
    ):
        raise _Anomaly
    row_start = np.empty(n, dpos.dtype)
    row_start[0] = 8
    row_start[1:] = dpos[:-1, -1] + 1
    cr = arr[dpos[:, -1] - 1] == 13
    cr &= dpos[:, -1] > np.where(f > 1, dpos[:, -2] + 1, row_start)
    has_cr = bool(cr.any())

    def bounds(cols):
        """``(starts, ends)`` ``[n, len(cols)]`` of the fields at column positions ``cols``."""
        sel = _cols(cols)
        if isinstance(sel, slice) and sel.start > 0:
            starts = dpos[:, sel.start - 1 : sel.stop - 1] + 1
        elif isinstance(sel, slice):
            starts = np.concatenate([row_start[:, None], dpos[:, : sel.stop - 1] + 1], axis=1)
        else:
            prev = np.concatenate([row_start[:, None], dpos[:, :-1] + 1], axis=1)
            starts = prev[:, sel]
        ends = dpos[:, sel]
        if has_cr and f - 1 in cols:
            ends = ends.copy()
            ends[:, list(cols).index(f - 1)] -= cr
        return starts, ends

    win = np.lib.stride_tricks.sliding_window_view(arr, 8)

    # Label: exactly one byte, '0' or '1'.
    s_l, e_l = bounds((layout.label_col,))
    lab = arr[s_l[:, 0]]
    if not ((e_l[:, 0] - s_l[:, 0] == 1) & ((lab == 48) | (lab == 49))).all():
        raise _Anomaly
    labels = (lab - 48).astype(np.int8)

    # Integers: the 8 bytes ending at the field end, leading bytes replaced by '0'.
    s_i, e_i = bounds(layout.int_cols)
    length = e_i - s_i
    ints_missing = length == 0
    neg = (length > 0) & (arr[s_i] == 45)
    ndig = length - neg
    long_ = ndig > 8
    w = win[(e_i - 8).ravel()].view("<u8").reshape(n, N_INT)
    keep = _KEEP_HIGH[8 - np.minimum(ndig, 8)]
    w = (w & keep) | (_ZEROS & ~keep)
    digits_ok = (
        ((w & _HI) == 0)
        & (((w + _B(0x4646464646464646)) & _HI) == 0)
        & (((w + _B(0x5050505050505050)) & _HI) == _HI)
    )
    if not (digits_ok | long_ | ints_missing).all() or (neg & (ndig == 0)).any():
        raise _Anomaly
    v = w & _LO4
    v = (v * _B(2561)) >> _SH[8]
    v = ((v & _B(0x00FF00FF00FF00FF)) * _B(6553601)) >> _SH[16]
    v = ((v & _B(0x0000FFFF0000FFFF)) * _B(42949672960001)) >> _SH[32]
    ints = v.astype(np.int64)
    np.negative(ints, out=ints, where=neg)
    if long_.any():
        for r, c in zip(*np.nonzero(long_), strict=True):
            text = bytes(arr[s_i[r, c] : e_i[r, c]])
            if not _INT_RE.fullmatch(text) or ndig[r, c] > 18:
                raise _Anomaly
            ints[r, c] = int(text)
    np.copyto(ints, 0, where=ints_missing)

    # Categoricals: an 8-byte value is its own key (its bytes as a little-endian uint64);
    # any other length is hashed to 64 bits.
    s_c, e_c = bounds(layout.cat_cols)
    length = e_c - s_c
    cats_missing = length == 0
    cat_keys = win[s_c.ravel()].view("<u8").reshape(n, N_CAT)
    other = (length != 8) & ~cats_missing
    if other.any():
        for r, c in zip(*np.nonzero(other), strict=True):
            cat_keys[r, c] = _hash_key(bytes(arr[s_c[r, c] : s_c[r, c] + length[r, c]]))
    np.copyto(cat_keys, 0, where=cats_missing)
    return CriteoBlock(labels, ints, ints_missing, cat_keys, cats_missing, 0)


def _hash_key(value: bytes) -> int:
    """64-bit key of a categorical value that is not 8 bytes long (top bit set: such keys
    never equal an 8-character ASCII value)."""
    digest = hashlib.blake2b(value, digest_size=8).digest()
    return int.from_bytes(digest, "little") | (1 << 63)


def key_to_text(keys: np.ndarray) -> np.ndarray:
    """The values behind categorical keys of 8-byte values, as ``S8`` strings."""
    return np.ascontiguousarray(keys, "<u8").view("S8")


def _cols(cols: tuple[int, ...]):
    """Column positions as a slice when they are consecutive (a view instead of a copy)."""
    if cols == tuple(range(cols[0], cols[0] + len(cols))):
        return slice(cols[0], cols[0] + len(cols))
    return list(cols)


def _check_line(fields: list[bytes], layout: CriteoLayout) -> tuple[str | None, str] | None:
    """``(column, problem)`` of the first problem of a split line, or None."""
    if len(fields) != layout.n_cols:
        return None, f"expected {layout.n_cols} fields, found {len(fields)}"
    for i, value in enumerate(fields):
        bad = next((b for b in value if b < 11), None)
        if bad is not None:
            return layout.names[i], f"control byte 0x{bad:02x} in the value (binary data?)"
    label = fields[layout.label_col]
    if label not in (b"0", b"1"):
        return layout.names[layout.label_col], f"label must be 0 or 1, got {_show(label)}"
    for c in layout.int_cols:
        value = fields[c]
        if value and not _INT_RE.fullmatch(value):
            return layout.names[c], f"not an integer: {_show(value)}"
        if len(value.lstrip(b"-")) > 18:
            return layout.names[c], f"integer out of range: {_show(value)}"
    return None


def _show(value: bytes) -> str:
    return repr(value.decode("utf-8", "replace")[:40])


def _parse_slow(data: bytes, layout: CriteoLayout, on_bad_rows: str):
    """Check a block line by line; ``(block of the good rows, problems)``."""
    sep = bytes([layout.sep])
    good, problems = [], []
    for i, line in enumerate(data.split(b"\n")[:-1]):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            continue
        problem = _check_line(line.split(sep), layout)
        if problem is not None:
            problems.append((i, *problem))
            if on_bad_rows == "error":
                break
            continue
        good.append(line)
    if not good or (problems and on_bad_rows == "error"):
        return _empty_block(), problems
    return _parse_fast(b"\n".join(good) + b"\n", layout), problems


def _empty_block() -> CriteoBlock:
    return CriteoBlock(
        np.zeros(0, np.int8),
        np.zeros((0, N_INT), np.int64),
        np.zeros((0, N_INT), bool),
        np.zeros((0, N_CAT), np.uint64),
        np.zeros((0, N_CAT), bool),
        0,
    )


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


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


def cache_key(path: str | os.PathLike[str], options: dict) -> str:
    """Hash of the preprocessing options and the source file's identity (path, size, mtime)."""
    st = os.stat(path)
    ident = {
        "path": os.path.abspath(os.fspath(path)),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "version": _FORMAT_VERSION,
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_prepared(final, from_cache=False)


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
    t0 = time.perf_counter()
    workers = int(options["workers"])
    bad = BadRows()
    width = len(FIELDS)
    coders = [_Codes() for _ in range(width)]
    counts = [np.zeros(1024, np.int64) for _ in range(width)]
    labels_parts = []
    n = 0
    with store:
        post = functools.partial(_block_keys, int_transform=options["int_transform"])
        blocks = iter_blocks(
            layout.path, options["on_bad_rows"], block_bytes, bad, layout, workers, post
        )
        for blk in blocks:
            m = len(blk.labels)
            if m == 0:
                continue
            codes_fxm = np.empty((width, m), np.int32)
            for j in range(width):
                codes_fxm[j] = coders[j].codes(blk.keys[j])
            codes_fxm += 1
            np.copyto(codes_fxm, MISSING, where=blk.missing)
            for j in range(width):  # occurrences of every code (the tail is removed later)
                if coders[j].size >= len(counts[j]):
                    grown = np.zeros(max(2 * len(counts[j]), coders[j].size + 1), np.int64)
                    grown[: len(counts[j])] = counts[j]
                    counts[j] = grown
                size = coders[j].size + 1
                if size <= 2 * m:  # few distinct codes: a dense count is cheaper
                    counts[j][:size] += np.bincount(codes_fxm[j], minlength=size)
                else:
                    np.add.at(counts[j], codes_fxm[j], 1)
            store.append(codes_fxm)
            labels_parts.append(blk.labels)
            n += m
    t_pass1 = time.perf_counter() - t0
    log("criteo: pass 1 (parse + codes): %d rows in %.1f s", n, t_pass1)
    n_test = int(round(n * options["test_ratio"]))
    n_valid = int(round(n * options["valid_ratio"]))
    n_train = n - n_valid - n_test
    if n_train < 1 or n_test < 1:
        raise ValueError(
            f"{layout.path}: {n} usable rows are too few for the split "
            f"(valid {options['valid_ratio']}, test {options['test_ratio']})"
        )
    labels = np.concatenate(labels_parts) if labels_parts else np.zeros(0, np.int8)
    del labels_parts

    sizes = [cd.size + 1 for cd in coders]  # +1: code 0 = missing
    # Pass 1 counted every row; remove the validation and test rows (the last 20%).
    for row0, cols in store.blocks(n_train):
        for j in range(width):
            np.subtract.at(counts[j], cols[j][max(n_train - row0, 0) :], 1)
    counts = [c[:size] for c, size in zip(counts, sizes, strict=True)]
    tables, vocab_sizes, vocab = [], [], {}
    for j, name in enumerate(FIELDS):
        kept = counts[j][1:] >= options["min_count"]
        table = np.full(sizes[j], OOV, np.int32)
        table[MISSING] = MISSING
        table[1:][kept] = 2 + np.arange(int(kept.sum()), dtype=np.int32)
        tables.append(table)
        vocab_sizes.append(2 + int(kept.sum()))
        keys = _unmix(coders[j].uniques()[kept])
        vocab[name] = keys.view(np.int64) if j < N_INT else keys
    t_vocab = time.perf_counter() - t0 - t_pass1

    # Pass 2: codes -> tokens, written row-major after an .npy header.
    def to_tokens(i):
        _, cols = store.read(i)
        tokens_fxm = np.empty((width, len(cols[0])), np.int32)
        for j in range(width):
            np.take(tables[j], cols[j], out=tokens_fxm[j])
        return np.ascontiguousarray(tokens_fxm.T)

    with open(os.path.join(out, "tokens.npy"), "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<i4", "fortran_order": False, "shape": (n, width)}
        )
        items = ((i,) for i in range(store.n_blocks))
        mapped = (
            _ordered_map(to_tokens, items, workers) if workers else (to_tokens(*i) for i in items)
        )
        for tokens in mapped:
            f.write(tokens.data)
    store.remove()
    np.save(os.path.join(out, "labels.npy"), labels)
    np.savez(os.path.join(out, "vocab.npz"), **vocab)
    t_total = time.perf_counter() - t0
    bounds = {
        "train": [0, n_train],
        "valid": [n_train, n_train + n_valid],
        "test": [n - n_test, n],
    }
    click = {k: float(labels[lo:hi].mean()) if hi > lo else None for k, (lo, hi) in bounds.items()}
    meta = {
        "source": layout.path,
        "format": layout.format,
        "fields": list(FIELDS),
        "options": options,
        "rows": n,
        "splits": bounds,
        "click_rate": click,
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
