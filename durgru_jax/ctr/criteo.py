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

Parsing is vectorised numpy on blocks of whole lines (``block_bytes``, 8 MiB by default): the
separators of a block are found with one comparison, every field's bytes are gathered as one
64-bit word, hex hashes and integers of up to 8 digits are decoded with SWAR bit arithmetic,
so no per-row Python runs and memory stays bounded by the block size whatever the file size.
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
the codes and writes the ``int32`` codes of all rows to a temporary file, so the row count
and split are known at its end; the counts of the validation and test rows (read back from
the file) are then subtracted, leaving training counts, and pass 2 maps the codes to tokens
through one table per field. Output, in a cache folder keyed by a
hash of the preprocessing options and the source file's path, size and mtime (memory-mapped
at training time):

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

from durgru_jax.data.readers import DataFormatError

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

    def merge(self, other: BadRows) -> None:
        self.count += other.count
        self.examples.extend(other.examples[: self.max_examples - len(self.examples)])


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
    if not head.strip():
        raise DataFormatError(path, "is empty")
    if head[:2] == b"\x1f\x8b":
        raise DataFormatError(path, "is gzip-compressed; decompress it first (gunzip)")
    if head[:3] == b"BZh" or head[:6] == b"7z\xbc\xaf\x27\x1c" or head[:4] == b"PK\x03\x04":
        raise DataFormatError(path, "is a compressed archive; extract train.txt first")
    if b"\x00" in head:
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise DataFormatError(
            path,
            "contains NUL bytes: it is binary or UTF-16 encoded, expected ASCII text",
            line=line,
        )
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    sep = b"\t" if b"\t" in first else b","
    cols = first.split(sep)
    first_field = cols[0].strip()
    if first_field in (b"0", b"1"):  # no header: Kaggle train.txt
        if len(cols) != 40:
            kind = "TAB" if sep == b"\t" else "comma"
            raise DataFormatError(
                path,
                f"expected 40 {kind}-separated fields (Label, I1..I13, C1..C26) per line, "
                f"found {len(cols)}",
                line=1,
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
            line=1,
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
        header_lines=1,
    )


def _raw_blocks(path: str, block_bytes: int, skip_lines: int) -> Iterator[tuple[bytes, int]]:
    """Yield ``(data, first_line)``: whole lines, each block ending with ``\\n``."""
    line = 1
    carry = b""
    with open(path, "rb", buffering=0) as f:
        for _ in range(skip_lines):
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    return
                nl = chunk.find(b"\n")
                if nl >= 0:
                    carry = chunk[nl + 1 :]
                    line += 1
                    break
        while True:
            chunk = f.read(block_bytes)
            if not chunk:
                break
            data = carry + chunk if carry else chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            block = data[: cut + 1]
            yield block, line
            line += block.count(b"\n")
    if carry:
        yield carry + b"\n", line


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
    for block, block_bad in parsed:
        bad.merge(block_bad)
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


def _parse_block(data: bytes, first_line: int, layout: CriteoLayout, on_bad_rows: str, post):
    bad = BadRows()
    try:
        block = _parse_fast(data, layout)
    except _Anomaly:
        block = _parse_slow(data, layout, first_line, on_bad_rows, bad)
    block.first_line = first_line
    if post is not None:
        post(block)
    return block, bad


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
    kinds = arr[dpos]
    if not (kinds[:, -1] == 10).all() or not (kinds[:, :-1] == layout.sep).all():
        raise _Anomaly
    starts = np.empty_like(dpos)
    starts[0, 0] = 8
    starts[1:, 0] = dpos[:-1, -1] + 1
    starts[:, 1:] = dpos[:, :-1] + 1
    ends = dpos
    cr = arr[dpos[:, -1] - 1] == 13
    if cr.any():
        ends = dpos.copy()
        ends[:, -1] -= cr & (dpos[:, -1] > starts[:, -1])
    win = np.lib.stride_tricks.sliding_window_view(arr, 8)

    # Label: exactly one byte, '0' or '1'.
    lc = layout.label_col
    lab = arr[starts[:, lc]]
    if not ((ends[:, lc] - starts[:, lc] == 1) & ((lab == 48) | (lab == 49))).all():
        raise _Anomaly
    labels = (lab - 48).astype(np.int8)

    # Integers: the 8 bytes ending at the field end, leading bytes replaced by '0'.
    s_i = starts[:, _cols(layout.int_cols)]
    e_i = ends[:, _cols(layout.int_cols)]
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
    s_c = starts[:, _cols(layout.cat_cols)]
    length = ends[:, _cols(layout.cat_cols)] - s_c
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


def _parse_slow(
    data: bytes, layout: CriteoLayout, first_line: int, on_bad_rows: str, bad: BadRows
) -> CriteoBlock:
    sep = bytes([layout.sep])
    good = []
    for i, line in enumerate(data.split(b"\n")[:-1]):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            continue
        problem = _check_line(line.split(sep), layout)
        if problem is not None:
            column, detail = problem
            err = DataFormatError(layout.path, detail, line=first_line + i, column=column)
            if on_bad_rows == "error":
                raise err
            bad.add(err)
            continue
        good.append(line)
    if not good:
        empty = np.zeros((0, N_INT), np.int64), np.zeros((0, N_INT), bool)
        return CriteoBlock(
            np.zeros(0, np.int8),
            *empty,
            np.zeros((0, N_CAT), np.uint64),
            np.zeros((0, N_CAT), bool),
            first_line,
        )
    return _parse_fast(b"\n".join(good) + b"\n", layout)


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def transform_ints(ints: np.ndarray, missing: np.ndarray, how: str = "sqlog") -> np.ndarray:
    """Bucket keys of integer features: ``floor(ln(x)^2)`` for ``x > 2`` (``"sqlog"``)."""
    if how == "identity":
        return ints
    if how != "sqlog":
        raise ValueError(f"int_transform must be one of {INT_TRANSFORMS}, got {how!r}")
    big = ints > 2
    out = ints.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out[big] = np.floor(np.log(ints[big].astype(np.float64)) ** 2).astype(np.int64)
    return out


_MIX = 0x9E3779B97F4A7C15  # odd: multiplication by it is a bijection of uint64
_UNMIX = pow(_MIX, -1, 1 << 64)


def _mix(keys: np.ndarray) -> np.ndarray:
    """A bijection of uint64 that spreads every input bit over the low bits.

    Raw 8-character values use few distinct bits per byte, and pandas' hash of 64-bit keys is
    weak on such input (long probe chains: 30x slower on a 10M-value field); mixed keys hash
    like random numbers. ``_unmix`` inverts it.
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
    """Dense codes per field in order of first appearance, over a stream of blocks.

    Uses pandas' incremental hash table (C speed, releases the GIL); a numpy/dict fallback
    with identical codes covers pandas versions without it.
    """

    def __init__(self, dtype, use_pandas: bool = True):
        self.dtype = np.dtype(dtype)
        self._fac = None
        if use_pandas:
            try:
                from pandas._libs import hashtable as ht

                cls = {"uint64": ht.UInt64Factorizer, "int64": ht.Int64Factorizer}
                self._fac = cls[self.dtype.name](1 << 10)
            except (ImportError, AttributeError):  # pragma: no cover - other pandas versions
                self._fac = None
        self._index: dict[int, int] = {}

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """``int64`` codes of ``keys`` (new keys get the next codes)."""
        keys = np.ascontiguousarray(keys, self.dtype)
        if self._fac is not None:
            return self._fac.factorize(keys)
        uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        table = np.empty(len(uniq), np.int64)
        for u in np.argsort(first, kind="stable"):
            table[u] = self._index.setdefault(int(uniq[u]), len(self._index))
        return table[inv.ravel()]

    def uniques(self) -> np.ndarray:
        if self._fac is not None:
            return np.asarray(self._fac.uniques.to_array(), self.dtype)
        return np.fromiter(self._index, self.dtype, len(self._index))

    @property
    def size(self) -> int:
        return self._fac.count if self._fac is not None else len(self._index)


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


def _prepare_into(out: str, layout: CriteoLayout, options: dict, block_bytes: int, log) -> dict:
    t0 = time.perf_counter()
    width = len(FIELDS)
    workers = int(options["workers"])
    coders = [_Codes("uint64") for _ in range(width)]
    bad = BadRows()
    labels_parts = []
    n = 0
    counts = [np.zeros(1024, np.int64) for _ in range(width)]
    codes_path = os.path.join(out, "codes.tmp")
    with open(codes_path, "wb") as codes_file:
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
                np.add.at(counts[j], codes_fxm[j], 1)
            codes_file.write(np.ascontiguousarray(codes_fxm.T).data)
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

    # Every field's codes 0..size-1 live at offset[j] + code in one global code space, so
    # counting and mapping are each one vectorised call per chunk.
    sizes = np.array([cd.size + 1 for cd in coders], np.int64)  # +1: code 0 = missing
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rows_per_chunk = max(1, (32 << 20) // (4 * width))
    # Pass 1 counted every row; remove the validation and test rows (the last 20%).
    for _, chunk in _read_code_chunks(codes_path, n_train, n, rows_per_chunk):
        for j in range(width):
            np.subtract.at(counts[j], chunk[:, j], 1)
    counts = np.concatenate([c[:s] for c, s in zip(counts, sizes, strict=True)])
    table = np.full(len(counts), OOV, np.int32)
    vocab_sizes, vocab = [], {}
    for j, name in enumerate(FIELDS):
        lo, hi = int(offsets[j]), int(offsets[j] + sizes[j])
        kept = counts[lo + 1 : hi] >= options["min_count"]
        table[lo] = MISSING
        table[lo + 1 : hi][kept] = 2 + np.arange(int(kept.sum()), dtype=np.int32)
        vocab_sizes.append(2 + int(kept.sum()))
        keys = _unmix(coders[j].uniques()[kept])
        vocab[name] = keys.view(np.int64) if j < N_INT else keys
    t_vocab = time.perf_counter() - t0 - t_pass1

    # Pass 2: codes -> tokens, written row-major after an .npy header.
    with open(os.path.join(out, "tokens.npy"), "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<i4", "fortran_order": False, "shape": (n, width)}
        )
        chunks = _read_code_chunks(codes_path, 0, n, rows_per_chunk)
        small = len(table) < 2**31  # global codes fit int32: add in place, no int64 copy
        off = offsets.astype(np.int32) if small else offsets

        def to_tokens(lo, chunk):
            if small:
                chunk += off
                return np.take(table, chunk)
            return np.take(table, chunk + off)

        mapped = (
            _ordered_map(to_tokens, chunks, workers) if workers else (to_tokens(*c) for c in chunks)
        )
        for tokens in mapped:
            f.write(tokens.data)
    os.remove(codes_path)
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
        "distinct_values_all_rows": [int(x) - 1 for x in sizes],
        "train_missing_rate": [float(counts[o]) / max(n_train, 1) for o in offsets],
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


def _read_code_chunks(path: str, lo: int, hi: int, rows: int):
    width = len(FIELDS)
    with open(path, "rb") as f:
        f.seek(lo * width * 4)
        start = lo
        while start < hi:
            m = min(rows, hi - start)
            chunk = np.fromfile(f, np.int32, m * width).reshape(m, width)
            yield start, chunk
            start += m
