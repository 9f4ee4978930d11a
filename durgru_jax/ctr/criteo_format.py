"""Streaming reader of the Criteo display-advertising logs: layout detection, block reading
and vectorised parsing (the preprocessing built on it is `durgru_jax.ctr.criteo`).

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
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from durgru_jax.data.readers import DataFormatError, check_text_head

__all__ = [
    "CAT_FIELDS",
    "FIELDS",
    "INT_FIELDS",
    "BadRows",
    "CriteoBlock",
    "CriteoLayout",
    "detect_layout",
    "iter_blocks",
    "key_to_text",
]

INT_FIELDS = tuple(f"I{i}" for i in range(1, 14))
CAT_FIELDS = tuple(f"C{i}" for i in range(1, 27))
FIELDS = INT_FIELDS + CAT_FIELDS  # token column order
N_INT, N_CAT = len(INT_FIELDS), len(CAT_FIELDS)
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
    with contextlib.closing(parsed):  # an error stops the workers now, not at a later GC
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
    """``fn(*item)`` for each item on a thread pool, results in input order, bounded ahead.

    Closing the iterator early (an error in the caller, or the caller stops) cancels the
    queued work and lets the workers finish in the background instead of joining them: the
    close may run inside a garbage collection, and a thread join there can deadlock.
    """
    ex = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="criteo")
    pending: collections.deque = collections.deque()
    done = False
    try:
        for item in items:
            pending.append(ex.submit(fn, *item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        done = True
    finally:
        ex.shutdown(wait=done, cancel_futures=True)
        close = getattr(items, "close", None)
        if close is not None:  # e.g. the file behind a generator of raw blocks
            close()


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
