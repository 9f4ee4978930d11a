"""What the readers return and how they parse one column of raw fields.

`DataFormatError` (a malformed file, located by file, line and column) and `ReadResult` (the
events of one file and its bad-row counts) are shared by every reader. The parsers turn one
pyarrow column of text or typed values into values and a problem code per row (`_OK`, or why
the value is bad), vectorised with pyarrow compute kernels; the caller decides which codes make
a row bad and `_describe` says why in words.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from durgru_jax.errors import UserError

_MISSING_MARKERS = pa.array(["", "na", "n/a", "nan", "null", "none"], pa.large_string())
_INT_RE = r"^-?\d{1,18}$"
_NUM_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_MAX_EXAMPLES = 5

# Problem codes of one parsed value; 0 means the value is fine.
_OK, _MISSING, _NOT_NUMBER, _NOT_INT, _NEGATIVE, _NOT_FINITE, _NOT_TIME, _NOT_CHOICE = range(8)


class DataFormatError(ValueError, UserError):
    """A data file is malformed; ``str(err)`` reads ``path:line: column 'c': what went wrong``.

    Attributes:
        path: the file as given by the caller.
        line: 1-based physical line in a text file (the header is line 1), else None.
        column: the column name in the file, else None.
        row: 1-based row of a Parquet file, else None.
        detail: the message without the location prefix.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        detail: str,
        *,
        line: int | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.column = column
        self.row = row
        self.detail = detail
        prefix = self.path
        if line is not None:
            prefix += f":{line}"
        if row is not None:
            prefix += f": row {row}"
        if column is not None:
            prefix += f": column {column!r}"
        # Statements about the whole file read as a sentence: "data/x.csv is empty".
        joiner = ": "
        if prefix == self.path and detail.startswith(("is ", "has ")):
            joiner = " "
        super().__init__(f"{prefix}{joiner}{detail}")


@dataclass(frozen=True)
class ReadResult:
    """Events read from one file plus what happened while reading it.

    Attributes:
        events: the events in file order (columns: see `durgru_jax.data.readers`).
        path: the file that was read.
        format: ``movielens-100k``, ``movielens-dat``, ``movielens-csv``, ``csv``, ``tsv`` or
            ``parquet``.
        n_rows_read: data rows found in the file (bad ones included, header and blank lines not).
        n_bad_rows_skipped: rows dropped with ``on_bad_rows="skip"``; ``len(events)`` equals
            ``n_rows_read - n_bad_rows_skipped``.
        bad_row_examples: messages for the first few dropped rows.
    """

    events: pd.DataFrame
    path: str
    format: str
    n_rows_read: int
    n_bad_rows_skipped: int
    bad_row_examples: tuple[str, ...] = ()


def _check_on_bad_rows(on_bad_rows: str) -> None:
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")


def check_text_head(path: str | os.PathLike[str], head: bytes, member: str = "the file") -> None:
    """Clear errors for what is not a text table: empty, compressed, archived or binary
    (NUL bytes, e.g. UTF-16). ``head`` is the file's start (or all of it); ``member`` names
    what to extract from an archive."""
    if not head.strip():
        raise DataFormatError(path, "is empty")
    if head[:2] == b"\x1f\x8b":
        raise DataFormatError(path, "is gzip-compressed; decompress it first (gunzip)")
    if head[:3] == b"BZh" or head[:6] == b"7z\xbc\xaf\x27\x1c" or head[:4] == b"PK\x03\x04":
        raise DataFormatError(path, f"is a compressed archive; extract {member} first")
    if b"\x00" in head:
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise DataFormatError(
            path,
            "contains NUL bytes: it is binary or UTF-16 encoded, expected ASCII/UTF-8 text",
            line=line,
        )


def _describe(code: int, raw: object) -> str:
    shown = repr(raw.strip() if isinstance(raw, str) else raw)
    if code == _MISSING:
        return "missing value"
    if code == _NOT_INT:
        return f"expected an integer id, got {shown}"
    if code == _NEGATIVE:
        return f"expected a non-negative duration, got {shown}"
    if code == _NOT_FINITE:
        return f"expected a finite number, got {shown}"
    if code == _NOT_TIME:
        return f"expected an ISO-8601 datetime, got {shown}"
    return f"expected a number, got {shown}"


def _decode_dictionary(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        return arr.dictionary_decode()
    return arr


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _trimmed_text(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(arr.cast(pa.large_string()))


def _missing_text(text: pa.Array) -> np.ndarray:
    missing = pc.or_kleene(pc.is_null(text), pc.is_in(pc.utf8_lower(text), _MISSING_MARKERS))
    return pc.fill_null(missing, True).to_numpy(zero_copy_only=False)


def _to_numpy(arr: pa.Array) -> np.ndarray:
    return pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)


def _parse_number(raw: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse numbers; missing values become NaN with code 0, the caller decides if that is bad."""
    codes = np.zeros(len(raw), np.uint8)
    if _is_text(raw):
        text = _trimmed_text(raw)
        missing = _missing_text(text)
        numeric = pc.fill_null(pc.match_substring_regex(text, _NUM_RE), False)
        values = _to_numpy(pc.if_else(numeric, text, pa.scalar(None, text.type)))
        codes[~missing & np.isnan(values)] = _NOT_NUMBER
    elif pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type):
        values = _to_numpy(raw)
    else:
        values = np.full(len(raw), np.nan)
        codes[~pc.is_null(raw).to_numpy(zero_copy_only=False)] = _NOT_NUMBER
    codes[np.isinf(values)] = _NOT_FINITE
    return values, codes


def _parse_timestamp(
    raw: pa.Array, scale: float, allow_datetime: bool
) -> tuple[np.ndarray, np.ndarray]:
    if pa.types.is_timestamp(raw.type):
        seconds = _to_numpy(raw.cast(pa.int64())) * _UNIT_SECONDS[raw.type.unit]
        return seconds, np.zeros(len(raw), np.uint8)
    if pa.types.is_date(raw.type):
        return _parse_timestamp(raw.cast(pa.timestamp("s")), 1.0, allow_datetime)
    values, codes = _parse_number(raw)
    if allow_datetime and _is_text(raw):
        not_number = codes == _NOT_NUMBER
        # A column is a datetime column when most of its values are not numbers; then the few
        # numbers in it are the bad rows, and vice versa.
        if not_number.sum() > (~np.isnan(values)).sum():
            text = _trimmed_text(raw)
            missing = _missing_text(text)
            strings = pd.Series(text.to_pylist(), dtype=object)
            parsed = pd.to_datetime(
                strings.where(~missing), format="ISO8601", utc=True, errors="coerce"
            )
            values = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
            codes = np.where(~missing & np.isnan(values), _NOT_TIME, _OK).astype(np.uint8)
            return values, codes
    return values * scale, codes


def _parse_id(raw: pa.Array, strict: bool) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(len(raw), np.uint8)
    if _is_text(raw):
        text = _trimmed_text(raw)
        codes[_missing_text(text)] = _MISSING
        if strict:
            is_int = pc.fill_null(pc.match_substring_regex(text, _INT_RE), False)
            codes[(codes == _OK) & ~is_int.to_numpy(zero_copy_only=False)] = _NOT_INT
        return text, codes
    if pa.types.is_integer(raw.type):
        codes[pc.is_null(raw).to_numpy(zero_copy_only=False)] = _MISSING
        return raw, codes
    if pa.types.is_floating(raw.type):
        values = _to_numpy(raw)
        codes[np.isnan(values)] = _MISSING
        codes[np.isinf(values)] = _NOT_FINITE
        if strict:
            codes[(codes == _OK) & (values != np.floor(values))] = _NOT_INT
        return raw, codes
    text = raw.cast(pa.large_string())
    codes[_missing_text(text)] = _MISSING
    return text, codes


def _finish_ids(ids: pa.Array) -> np.ndarray | pd.Series:
    """Return int64 ids when every id is an integer, else ``str`` ids."""
    if pa.types.is_integer(ids.type):
        return ids.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(ids.type):
        values = ids.to_numpy(zero_copy_only=False)
        if np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53):
            return values.astype(np.int64)
        return ids.cast(pa.large_string()).to_pandas()
    if pc.all(pc.match_substring_regex(ids, _INT_RE)).as_py() in (True, None):
        return ids.cast(pa.int64()).to_numpy(zero_copy_only=False)
    return ids.to_pandas()
