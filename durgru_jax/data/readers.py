"""Readers for raw interaction logs: MovieLens, the original files of the session and behaviour
datasets (Taobao UserBehavior, Tianchi 2015 mobile, YooChoose, DIGINETICA, KuaiRec) and generic
CSV/TSV/Parquet logs. :func:`read_dataset` picks the reader by format name.

Every reader returns a :class:`ReadResult` whose ``events`` frame is in *file order* (the caller
sorts stably by ``(user, timestamp)`` so that equal timestamps keep file order) with columns

* ``user``, ``item``: raw ids, ``int64`` when every kept id is an integer, else ``str``
  (session datasets put the session id in ``user``);
* ``timestamp``: ``float64`` Unix seconds;
* optional ``duration`` (``float64`` seconds, NaN = missing), ``rating`` (``float32``),
  ``behavior`` (``str``; a pandas ``Categorical`` in the original-format readers) and
  ``category`` (``int64`` item category, or a ``Categorical`` of text for YooChoose);
* format-specific extras after those (KuaiRec: ``video_duration`` seconds, ``watch_ratio``).

Malformed rows (wrong number of fields, a non-numeric or missing value where a number is
required, a negative or infinite duration, a missing id or timestamp, an unparsable date) either
raise :class:`DataFormatError` naming file, line and column of the first one
(``on_bad_rows="error"``) or are dropped and counted (``on_bad_rows="skip"``).

Parsing is vectorised with pyarrow compute kernels; line numbers are kept per record, so bad rows
are located without a second pass. The original-format readers stream the file in blocks (see
``_read_layout``), so their memory follows the parsed columns, not the size of the text.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

__all__ = [
    "CANONICAL_COLUMNS",
    "DataFormatError",
    "ReadResult",
    "read_dataset",
    "read_diginetica",
    "read_interactions",
    "read_kuairec",
    "read_movielens",
    "read_taobao",
    "read_tianchi",
    "read_yoochoose_clicks",
    "read_yoochoose_prepared",
]

CANONICAL_COLUMNS = ("user", "item", "timestamp", "duration", "rating", "behavior")
_REQUIRED = ("user", "item", "timestamp")
_MISSING_MARKERS = pa.array(["", "na", "n/a", "nan", "null", "none"], pa.large_string())
_INT_RE = r"^-?\d{1,18}$"
_NUM_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TIME_SCALE = {"s": 1.0, "ms": 1e-3}
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_MAX_EXAMPLES = 5
_MOVIELENS_URL = "https://grouplens.org/datasets/movielens/"

# Problem codes of one parsed value; 0 means the value is fine.
_OK, _MISSING, _NOT_NUMBER, _NOT_INT, _NEGATIVE, _NOT_FINITE, _NOT_TIME = range(7)


class DataFormatError(ValueError):
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
        events: the events in file order (see the module docstring for columns).
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


@dataclass(frozen=True)
class _Field:
    """Where a canonical column comes from and how to parse it."""

    canonical: str
    index: int
    name: str
    # One of: id, int_id, timestamp, number_timestamp, rating, required_rating, duration, text.
    kind: str


@dataclass
class _Body:
    """Split data records of one file.

    ``columns`` hold the wanted fields of the records whose field count is right, in order.
    """

    locations: np.ndarray
    field_counts: np.ndarray
    n_expected: int
    columns: dict[int, pa.Array]
    location_kind: str = "line"


def read_movielens(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read MovieLens ratings: ML-100K ``u.data``, ML-1M/10M ``ratings.dat`` or ML-20M+ CSV.

    The layout is detected from the first non-blank line: ``::`` separated
    ``UserID::MovieID::Rating::Timestamp``, TAB separated ``user item rating timestamp`` or a
    ``userId,movieId,rating,timestamp`` header. A directory is searched for ``ratings.dat``,
    ``u.data`` or ``ratings.csv``. Ids and timestamps must be integers/numbers; the result has a
    ``rating`` column and no ``duration`` (MovieLens has none).

    Raises:
        FileNotFoundError: no such file, with a hint where to download it.
        DataFormatError: the file is empty, not MovieLens, or has a bad row (with "error").
    """
    _check_on_bad_rows(on_bad_rows)
    file = _resolve_movielens_path(path)
    data = _read_bytes(file, _movielens_hint(path))
    # Rating files are ASCII; latin-1 cannot fail, so stray bytes surface as bad fields with a
    # line and column instead of an opaque decode error.
    text = data.decode("latin-1")
    first, first_line_no, _ = _first_line(text)
    # Sniff from the first lines rather than the first one only, so that a malformed first row
    # is reported as a bad row instead of as "not MovieLens".
    sample = text[:65536].split("\n")[:50]
    if first.strip().lower().startswith("userid,"):
        fmt, sep, header = "movielens-csv", ",", True
    elif any("::" in line for line in sample):
        fmt, sep, header = "movielens-dat", "::", False
    elif any("\t" in line for line in sample):
        fmt, sep, header = "movielens-100k", "\t", False
    else:
        raise DataFormatError(
            file,
            "not a MovieLens ratings file: expected 'UserID::MovieID::Rating::Timestamp' "
            f"(ratings.dat), TAB-separated 'user item rating timestamp' (u.data) or a "
            f"'userId,movieId,rating,timestamp' header, got {first[:80]!r}",
            line=first_line_no,
        )
    kinds = {
        "user": "int_id",
        "item": "int_id",
        "rating": "required_rating",
        "timestamp": "number_timestamp",
    }
    if header:
        names = _split_header(first, sep)
        mapping = {
            "user": "userId",
            "item": "movieId",
            "rating": "rating",
            "timestamp": "timestamp",
        }
        fields = [
            _Field(canon, _header_index(file, names, col, first_line_no), col, kinds[canon])
            for canon, col in mapping.items()
        ]
        n_expected, body_start = len(names), first_line_no
    else:
        fields = [_Field(c, i, c, kinds[c]) for i, c in enumerate(kinds)]
        n_expected, body_start = 4, 0
    body = _split_body(text, sep, body_start, n_expected, [f.index for f in fields])
    return _assemble(file, fmt, body, fields, on_bad_rows, timestamp_scale=1.0, duration_scale=1.0)


def read_interactions(
    path: str | os.PathLike[str],
    columns: Mapping[str, str] | None = None,
    sep: str | None = None,
    on_bad_rows: str = "error",
    timestamp_unit: str = "s",
    duration_unit: str = "s",
) -> ReadResult:
    """Read a generic interaction log from CSV, TSV or Parquet.

    Args:
        path: ``.parquet``/``.pq`` files are read as Parquet, anything else as delimited text
            with a header row (UTF-8, optional BOM, ``"`` quoting).
        columns: canonical name -> column name in the file, e.g.
            ``{"user": "session_id", "timestamp": "ts"}``. Canonical names are ``user``,
            ``item``, ``timestamp`` (required) and ``duration``, ``rating``, ``behavior``
            (optional). Unmapped canonical names are looked up under their own name; optional
            ones are used when present.
        sep: field separator for text files; by default sniffed from the header line (``,``
            preferred for ``.csv``, TAB for ``.tsv``/``.txt``, then ``;`` and ``|``).
            Ignored for Parquet.
        on_bad_rows: ``"error"`` raises on the first bad row, ``"skip"`` drops and counts them.
        timestamp_unit: ``"s"`` or ``"ms"`` for numeric timestamps. Timestamp columns of
            ISO-8601 strings (or Parquet timestamps) are converted to Unix seconds, naive ones
            taken as UTC.
        duration_unit: ``"s"`` or ``"ms"`` for numeric durations.

    Raises:
        ValueError: an unknown key in ``columns`` or an invalid option.
        FileNotFoundError: no such file.
        DataFormatError: empty or undecodable file, missing column, or a bad row (with "error").
    """
    _check_on_bad_rows(on_bad_rows)
    t_scale = _unit_scale("timestamp_unit", timestamp_unit)
    d_scale = _unit_scale("duration_unit", duration_unit)
    mapping = dict(columns or {})
    for key, value in mapping.items():
        if key not in CANONICAL_COLUMNS:
            raise ValueError(
                f"columns: unknown canonical column {key!r}; expected one of {CANONICAL_COLUMNS}"
            )
        if not isinstance(value, str):
            raise ValueError(f"columns[{key!r}] must be a column name (str), got {value!r}")
    hint = "pass the path of an existing interaction log (CSV/TSV with a header, or Parquet)"
    file = Path(path)
    if file.suffix.lower() in (".parquet", ".pq", ".parq"):
        return _read_parquet(file, path, hint, mapping, on_bad_rows, t_scale, d_scale)

    data = _read_bytes(path, hint)
    text = _decode_utf8(path, data)
    if not text.strip():
        raise DataFormatError(path, "is empty")
    first, first_line_no, _ = _first_line(text)
    if sep is None:
        sep = _sniff_sep(path, first, first_line_no, file.suffix.lower())
    elif not sep:
        raise ValueError("sep must be a non-empty string or None")
    names = _split_header(first, sep)
    fields = _resolve_fields(path, names, mapping, first_line_no)
    body = _split_body(text, sep, first_line_no, len(names), [f.index for f in fields])
    fmt = "tsv" if sep == "\t" else "csv"
    return _assemble(path, fmt, body, fields, on_bad_rows, t_scale, d_scale)


def _check_on_bad_rows(on_bad_rows: str) -> None:
    if on_bad_rows not in ("error", "skip"):
        raise ValueError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")


def _unit_scale(arg: str, unit: str) -> float:
    if unit not in _TIME_SCALE:
        raise ValueError(f"{arg} must be one of {tuple(_TIME_SCALE)}, got {unit!r}")
    return _TIME_SCALE[unit]


def _movielens_hint(path: str | os.PathLike[str]) -> str:
    return (
        f"download ml-100k.zip (u.data), ml-1m.zip or ml-10m.zip (ratings.dat) from "
        f"{_MOVIELENS_URL}, unzip it and pass the ratings file or its folder (looked for {path})"
    )


def _resolve_movielens_path(path: str | os.PathLike[str]) -> str | os.PathLike[str]:
    if Path(path).is_dir():
        for name in ("ratings.dat", "u.data", "ratings.csv"):
            if (Path(path) / name).is_file():
                return Path(path) / name
        raise FileNotFoundError(
            f"no MovieLens ratings file (ratings.dat, u.data, ratings.csv) in folder {path}; "
            + _movielens_hint(path)
        )
    return path


def _read_bytes(path: str | os.PathLike[str], hint: str) -> bytes:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{os.fspath(path)}: no such file; {hint}")
    if file.is_dir():
        raise DataFormatError(path, "is a directory, expected a file")
    data = file.read_bytes()
    check_text_head(path, data)
    return data


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


def _decode_utf8(path: str | os.PathLike[str], data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataFormatError(
            path,
            f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "re-encode the file as UTF-8",
            line=line,
        ) from None


def _first_line(text: str) -> tuple[str, int, int]:
    """Return the first non-blank line, its 1-based number and the offset just after it."""
    pos, line_no = 0, 1
    while True:
        end = text.find("\n", pos)
        stop = len(text) if end == -1 else end
        line = text[pos:stop].rstrip("\r")
        if line.strip() or end == -1:
            return line, line_no, stop + 1
        pos, line_no = end + 1, line_no + 1


def _sniff_sep(path: str | os.PathLike[str], header: str, line_no: int, suffix: str) -> str:
    order = {".csv": ",;\t|", ".tsv": "\t"}.get(suffix, "\t,;|")
    for sep in order:
        if sep in header:
            return sep
    if suffix == ".csv":
        return ","
    raise DataFormatError(
        path,
        f"cannot tell the field separator from the header {header[:80]!r}; pass sep=",
        line=line_no,
    )


def _split_header(line: str, sep: str) -> list[str]:
    if '"' in line and len(sep) == 1:
        names = next(csv.reader([line], delimiter=sep))
    else:
        names = line.split(sep)
    return [name.strip() for name in names]


def _header_index(
    path: str | os.PathLike[str],
    names: list[str],
    name: str,
    line: int | None,
    canonical: str | None = None,
) -> int:
    count = names.count(name)
    if count == 1:
        return names.index(name)
    if count > 1:
        raise DataFormatError(
            path, f"column name appears {count} times in the header", line=line, column=name
        )
    needed = f" (needed for {canonical!r})" if canonical not in (None, name) else ""
    hint = ""
    if any(_looks_numeric(n) for n in names):
        hint = "; the first line looks like data, the file may lack a header row"
    raise DataFormatError(
        path,
        f"missing from the header{needed}; columns found: {names}{hint}",
        line=line,
        column=name,
    )


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _resolve_fields(
    path: str | os.PathLike[str], names: list[str], mapping: dict[str, str], line: int | None
) -> list[_Field]:
    kinds = {
        "user": "id",
        "item": "id",
        "timestamp": "timestamp",
        "duration": "duration",
        "rating": "rating",
        "behavior": "text",
    }
    fields = []
    for canon in CANONICAL_COLUMNS:
        name = mapping.get(canon, canon)
        if canon in mapping or canon in _REQUIRED or name in names:
            index = _header_index(path, names, name, line, canon)
            fields.append(_Field(canon, index, name, kinds[canon]))
    return fields


def _split_body(text: str, sep: str, header_line: int, n_expected: int, wanted: list[int]) -> _Body:
    """Split the records after line ``header_line`` (0 = no header) into wanted fields."""
    start = 0
    if header_line:
        start = _first_line(text)[2]
    body = text[start:]
    # The csv module handles quoting but is several times slower; only quoted files need it.
    if '"' in body and len(sep) == 1:
        return _split_body_csv(body, sep, header_line, n_expected, wanted)
    return _split_body_fast(body, sep, header_line, n_expected, wanted)


def _split_body_fast(
    body: str, sep: str, line_offset: int, n_expected: int, wanted: list[int]
) -> _Body:
    lines = pc.split_pattern(pa.array([body], pa.large_string()), "\n").flatten()
    lines = pc.utf8_rtrim(lines, characters="\r")
    nonblank = pc.not_equal(pc.utf8_trim_whitespace(lines), "").to_numpy(zero_copy_only=False)
    locations = np.flatnonzero(nonblank) + 1 + line_offset
    records = lines.filter(pa.array(nonblank))
    parts = pc.split_pattern(records, sep)
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    ok = counts == n_expected
    if not ok.all():
        parts = parts.filter(pa.array(ok))
    if len(parts):
        columns = {j: pc.list_element(parts, j) for j in set(wanted)}
    else:
        columns = {j: pa.array([], pa.large_string()) for j in set(wanted)}
    return _Body(locations, counts, n_expected, columns)


def _split_body_csv(
    body: str, sep: str, line_offset: int, n_expected: int, wanted: list[int]
) -> _Body:
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=sep)
    rows: list[list[str]] = []
    locations: list[int] = []
    counts: list[int] = []
    previous = 0
    for fields in reader:
        start, previous = previous + 1, reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        locations.append(start + line_offset)
        counts.append(len(fields))
        if len(fields) == n_expected:
            rows.append(fields)
    columns = {j: pa.array([r[j] for r in rows], pa.large_string()) for j in set(wanted)}
    return _Body(np.asarray(locations, np.int64), np.asarray(counts, np.int64), n_expected, columns)


def _read_parquet(
    file: Path,
    path: str | os.PathLike[str],
    hint: str,
    mapping: dict[str, str],
    on_bad_rows: str,
    t_scale: float,
    d_scale: float,
) -> ReadResult:
    import pyarrow.parquet as pq

    if not file.exists():
        raise FileNotFoundError(f"{os.fspath(path)}: no such file; {hint}")
    if file.is_file() and file.stat().st_size == 0:
        raise DataFormatError(path, "is empty")
    try:
        parquet = pq.ParquetFile(file)
        names = list(parquet.schema_arrow.names)
        fields = _resolve_fields(path, names, mapping, line=None)
        table = parquet.read(columns=sorted({f.name for f in fields}, key=names.index))
    except (pa.ArrowException, OSError) as err:
        raise DataFormatError(path, f"not a readable Parquet file ({err})") from None
    n = table.num_rows
    columns = {
        names.index(name): table.column(name).combine_chunks() for name in table.column_names
    }
    body = _Body(
        locations=np.arange(1, n + 1, dtype=np.int64),
        field_counts=np.full(n, len(names), np.int64),
        n_expected=len(names),
        columns=columns,
        location_kind="row",
    )
    return _assemble(path, "parquet", body, fields, on_bad_rows, t_scale, d_scale)


def _assemble(
    path: str | os.PathLike[str],
    fmt: str,
    body: _Body,
    fields: list[_Field],
    on_bad_rows: str,
    timestamp_scale: float,
    duration_scale: float,
) -> ReadResult:
    """Parse and validate the wanted fields, handle bad rows and build the events frame."""
    n_records = len(body.locations)
    if n_records == 0:
        header = "" if body.location_kind == "row" else " a header but"
        raise DataFormatError(path, f"has{header} no data rows")
    fields = sorted(fields, key=lambda f: f.index)
    parsed = {}
    codes = np.zeros((len(body.columns[fields[0].index]), len(fields)), np.uint8)
    raws = {}
    for k, field in enumerate(fields):
        raw = _decode_dictionary(body.columns[field.index])
        raws[field.canonical] = raw
        parsed[field.canonical], codes[:, k] = _parse(
            field.kind, raw, timestamp_scale, duration_scale
        )

    shape_ok = body.field_counts == body.n_expected
    good_records = np.flatnonzero(shape_ok)
    bad_values = codes.any(axis=1)
    bad = ~shape_ok
    bad[good_records[bad_values]] = True
    n_bad = int(bad.sum())
    examples: tuple[str, ...] = ()
    if n_bad:
        limit = 1 if on_bad_rows == "error" else _MAX_EXAMPLES
        errors = [
            _row_error(path, body, fields, codes, raws, good_records, int(r))
            for r in np.flatnonzero(bad)[:limit]
        ]
        if on_bad_rows == "error":
            raise errors[0]
        examples = tuple(str(e) for e in errors)

    keep = ~bad_values
    events = {}
    for canon in CANONICAL_COLUMNS:
        if canon not in parsed:
            continue
        values = parsed[canon]
        if canon in ("user", "item"):
            events[canon] = _finish_ids(values.filter(pa.array(keep)))
        elif canon == "behavior":
            events[canon] = values.filter(pa.array(keep)).to_pandas()
        else:
            events[canon] = values[keep]
    frame = pd.DataFrame(events)
    if "rating" in frame:
        frame["rating"] = frame["rating"].astype(np.float32)
    return ReadResult(
        events=frame,
        path=os.fspath(path),
        format=fmt,
        n_rows_read=n_records,
        n_bad_rows_skipped=n_bad,
        bad_row_examples=examples,
    )


def _row_error(
    path: str | os.PathLike[str],
    body: _Body,
    fields: list[_Field],
    codes: np.ndarray,
    raws: dict[str, pa.Array],
    good_records: np.ndarray,
    record: int,
) -> DataFormatError:
    where = {body.location_kind: int(body.locations[record])}
    count = int(body.field_counts[record])
    if count != body.n_expected:
        return DataFormatError(path, f"expected {body.n_expected} fields, got {count}", **where)
    position = int(np.searchsorted(good_records, record))
    k = int(np.flatnonzero(codes[position])[0])
    field = fields[k]
    raw = raws[field.canonical][position].as_py()
    detail = _describe(int(codes[position, k]), raw)
    return DataFormatError(path, detail, column=field.name, **where)


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


def _parse(
    kind: str, raw: pa.Array, timestamp_scale: float, duration_scale: float
) -> tuple[object, np.ndarray]:
    """Parse one column; return its values and a problem code per row."""
    if kind in ("id", "int_id"):
        return _parse_id(raw, strict=kind == "int_id")
    if kind == "text":
        text = _trimmed_text(raw)
        text = pc.if_else(pa.array(_missing_text(text)), pa.scalar(None, text.type), text)
        return text, np.zeros(len(raw), np.uint8)
    if kind in ("timestamp", "number_timestamp"):
        values, codes = _parse_timestamp(raw, timestamp_scale, allow_datetime=kind == "timestamp")
        codes[(codes == _OK) & np.isnan(values)] = _MISSING
        return values, codes
    scale = duration_scale if kind == "duration" else 1.0
    if kind == "duration" and pa.types.is_duration(raw.type):
        raw, scale = raw.cast(pa.int64()), _UNIT_SECONDS[raw.type.unit]
    values, codes = _parse_number(raw)
    values = values * scale
    if kind == "duration":
        codes[(codes == _OK) & (values < 0)] = _NEGATIVE
    if kind == "required_rating":
        codes[(codes == _OK) & np.isnan(values)] = _MISSING
    return values, codes


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


# --------------------------------------------------------------------------- original-format logs
#
# The readers below stream the file in blocks of whole lines. Each block is first parsed by the
# pyarrow CSV reader with explicit column types (multi-threaded, no Python per row); a block that
# fails to parse or holds a value out of range is parsed again, more slowly, by the line-aware
# splitter above, which finds every bad row with its line and column. That second parser is the
# authority: the fast one may only accept what it accepts, so a file reads the same whatever the
# block size.

_BLOCK_BYTES = 16 << 20
_PIECE_BYTES = 256 << 10
_NOT_CHOICE = 7
_FAST_TYPES = {
    "id": pa.int64(),
    "code": pa.int64(),
    "num": pa.float64(),
    "duration": pa.float64(),
    "extra_num": pa.float64(),
    "text": pa.dictionary(pa.int32(), pa.string()),
    "hour": pa.timestamp("s"),
    "date": pa.date32(),
    "iso": pa.timestamp("us", tz="UTC"),
}
_TIME_FORMATS = {"hour": "%Y-%m-%d %H", "date": "%Y-%m-%d"}
_TIME_EXAMPLES = {
    "hour": "a time like '2014-12-06 02' (YYYY-MM-DD HH)",
    "date": "a date like '2016-05-09' (YYYY-MM-DD)",
    "iso": "an ISO-8601 time like '2014-04-07T10:51:09.277Z'",
}
_OUTPUT_ORDER = ("user", "item", "timestamp", "duration", "rating", "behavior", "category")
_DATASET_FORMATS = (
    "movielens",
    "csv",
    "taobao",
    "tianchi",
    "yoochoose",
    "yoochoose_prepared",
    "diginetica",
    "kuairec",
)
_TAOBAO_URL = "https://tianchi.aliyun.com/dataset/649"
_TIANCHI_URL = "https://tianchi.aliyun.com/dataset/46"
_YOOCHOOSE_URL = "https://recsys.acm.org/recsys15/challenge/"
_DIGINETICA_URL = "https://competitions.codalab.org/competitions/11161"
_KUAIREC_URL = "https://kuairec.com/"


@dataclass(frozen=True)
class _Col:
    """One field of an original-format file.

    ``kind`` is one of ``skip`` (not parsed; only the field count is checked),
    ``id`` (integer id), ``code`` (integer ``1..len(choices)`` naming ``choices[k - 1]``),
    ``num`` (finite number), ``duration`` (finite non-negative number), ``extra_num``
    (number or missing), ``text`` (non-empty string, kept as a category), ``hour``/``date``/
    ``iso`` (times, UTC). Numbers are divided by ``per`` (1000 for milliseconds to seconds).
    """

    name: str
    kind: str
    out: str | None = None
    per: float = 1.0
    choices: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.out or self.name


@dataclass(frozen=True)
class _Layout:
    """An original file format: separator, fields and where to get the file."""

    fmt: str
    sep: str
    header: bool
    columns: tuple[_Col, ...]
    hint: str
    shape: str
    folder_names: tuple[str, ...] = ()
    seed_categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    timestamp_parsers: tuple[str, ...] | None = None


class _Categories:
    """A growing category list shared by the blocks of one text column."""

    def __init__(self, seed: tuple[str, ...] = ()) -> None:
        self.index: dict[str, int] = {value: code for code, value in enumerate(seed)}

    def codes(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        parts = []
        for chunk in chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = pc.dictionary_encode(chunk)
            lut = np.array(
                [self.index.setdefault(v, len(self.index)) for v in chunk.dictionary.to_pylist()],
                np.int64,
            )
            indices = chunk.indices.to_numpy(zero_copy_only=False)
            parts.append(lut[indices] if len(lut) else np.zeros(0, np.int64))
        codes = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return codes.astype(_code_dtype(len(self.index)))

    @property
    def categories(self) -> list[str]:
        return list(self.index)


class _Growing:
    """A 1-D array filled block by block; it grows in place (``realloc``) when it must."""

    def __init__(self, dtype: np.dtype, capacity: int) -> None:
        self.data = np.empty(capacity, dtype)
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        if values.dtype != self.data.dtype:
            dtype = np.result_type(self.data.dtype, values.dtype)
            if dtype != self.data.dtype:
                self.data = self.data.astype(dtype)
        end = self.size + len(values)
        if end > len(self.data):
            self.data.resize(max(end, len(self.data) + len(self.data) // 4), refcheck=False)
        self.data[self.size : end] = values
        self.size = end

    def finish(self) -> np.ndarray:
        # Shrinking in place returns the unused tail; the array owns its data and no view of
        # it has been handed out.
        self.data.resize(self.size, refcheck=False)
        data, self.data = self.data, np.empty(0, self.data.dtype)
        return data


def _code_dtype(n: int) -> type:
    if n < 2**7:
        return np.int8
    if n < 2**15:
        return np.int16
    return np.int32


def read_taobao(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read Taobao UserBehavior ``UserBehavior.csv`` (Alibaba, Tianchi dataset 649).

    No header; each line is ``user,item,category,behavior,timestamp`` with behaviour ``pv``,
    ``cart``, ``fav`` or ``buy`` and Unix-second timestamps. The file (100M rows) is streamed:
    memory is about 33 bytes per row (``int64`` user, item, category, ``float64`` timestamp,
    ``behavior`` as a pandas ``Categorical`` whose categories start ``pv, cart, fav, buy``).
    Any non-empty behaviour string is kept. A folder is searched for ``UserBehavior.csv``.

    Raises:
        FileNotFoundError: no such file, with where to download it.
        DataFormatError: empty file or a bad row (with ``on_bad_rows="error"``).
    """
    return _read_layout(path, _TAOBAO, on_bad_rows)


def read_tianchi(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read the Tianchi 2015 mobile recommendation logs (``tianchi_mobile_recommend_train_user``).

    Header ``user_id,item_id,behavior_type,user_geohash,item_category,time`` (columns found by
    name); ``time`` is ``YYYY-MM-DD HH`` (hour resolution, taken as UTC) and ``behavior_type``
    1..4 means click, collect, cart, buy (any other value is a bad row). ``user_geohash`` is
    ignored. Columns: ``user``, ``item``, ``timestamp``, ``behavior`` (Categorical of the four
    names), ``category`` (``int64`` item category).
    """
    return _read_layout(path, _TIANCHI, on_bad_rows)


def read_yoochoose_clicks(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read RecSys Challenge 2015 ``yoochoose-clicks.dat`` (or ``yoochoose-test.dat``).

    No header; each line is ``session,timestamp,item,category`` with an ISO-8601 timestamp such
    as ``2014-04-07T10:51:09.277Z`` (naive times are taken as UTC). ``user`` is the session id;
    ``category`` is kept as text (``"S"`` = special offer, ``"0"`` = missing, 1-12 categories,
    longer numbers brands) in a pandas ``Categorical``.
    """
    return _read_layout(path, _YOOCHOOSE, on_bad_rows)


def read_yoochoose_prepared(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read the common prepared YooChoose TSV (GRU4Rec style): header ``SessionId ItemId Time``.

    TAB-separated, columns found by name, ``Time`` in (fractional) Unix seconds. ``user`` is the
    session id.
    """
    return _read_layout(path, _YOOCHOOSE_PREPARED, on_bad_rows)


def read_diginetica(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read DIGINETICA (CIKM Cup 2016) ``train-item-views.csv``.

    ``;``-separated with header ``session_id;user_id;item_id;timeframe;eventdate``. ``user`` is
    the session id (``user_id``, mostly ``NA``, is ignored). ``timeframe`` counts milliseconds
    from the start of the session, so ``timestamp`` = UTC midnight of the session's *first*
    ``eventdate`` + ``timeframe / 1000``: gaps within a session are exact even for the sessions
    that cross midnight (whose later rows carry the next day's date), and events order by
    ``timeframe`` within a session.
    """
    result = _read_layout(path, _DIGINETICA, on_bad_rows)
    events = result.events
    day = events.pop("_eventdate")
    offset = events.pop("_timeframe")
    if len(events):
        first_day = pd.Series(day.to_numpy()).groupby(events["user"].to_numpy()).transform("min")
        events.insert(2, "timestamp", first_day.to_numpy(np.float64) + offset.to_numpy())
    else:
        events.insert(2, "timestamp", np.zeros(0, np.float64))
    return result


def read_kuairec(path: str | os.PathLike[str], on_bad_rows: str = "error") -> ReadResult:
    """Read KuaiRec ``small_matrix.csv`` or ``big_matrix.csv``.

    Header ``user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio``
    (columns found by name; ``time`` and ``date`` are ignored). Durations are milliseconds in
    the file and seconds in the result: ``duration`` = ``play_duration / 1000`` (the real
    viewing time), plus extra columns ``video_duration`` (seconds) and ``watch_ratio``
    (missing = NaN). ``timestamp`` (Unix seconds) is required: the rows where KuaiRec left it
    empty are bad rows (use ``on_bad_rows="skip"``), as are negative durations.
    """
    return _read_layout(path, _KUAIREC, on_bad_rows)


def read_dataset(
    fmt: str, path: str | os.PathLike[str], on_bad_rows: str = "error", **kwargs: object
) -> ReadResult:
    """Read ``path`` with the reader for ``fmt``.

    ``fmt`` is one of ``movielens``, ``csv`` (:func:`read_interactions`; ``kwargs`` go to it),
    ``taobao``, ``tianchi``, ``yoochoose`` (``yoochoose-clicks.dat``), ``yoochoose_prepared``,
    ``diginetica`` or ``kuairec``.

    Raises:
        ValueError: unknown ``fmt``, or ``kwargs`` for a reader that takes none.
    """
    readers = {
        "movielens": read_movielens,
        "csv": read_interactions,
        "taobao": read_taobao,
        "tianchi": read_tianchi,
        "yoochoose": read_yoochoose_clicks,
        "yoochoose_prepared": read_yoochoose_prepared,
        "diginetica": read_diginetica,
        "kuairec": read_kuairec,
    }
    if fmt not in readers:
        raise ValueError(f"unknown data format {fmt!r}; expected one of {_DATASET_FORMATS}")
    if kwargs and fmt != "csv":
        raise ValueError(
            f"format {fmt!r} takes no options besides on_bad_rows, got {sorted(kwargs)}"
        )
    return readers[fmt](path, on_bad_rows=on_bad_rows, **kwargs)


_TAOBAO = _Layout(
    fmt="taobao",
    sep=",",
    header=False,
    columns=(
        _Col("user", "id"),
        _Col("item", "id"),
        _Col("category", "id"),
        _Col("behavior", "text"),
        _Col("timestamp", "num"),
    ),
    hint=f"download UserBehavior.csv.zip from {_TAOBAO_URL} (Alibaba, Tianchi) and unzip it",
    shape="no header, 5 fields 'user,item,category,behavior,timestamp'",
    folder_names=("UserBehavior.csv",),
    seed_categories=(("behavior", ("pv", "cart", "fav", "buy")),),
)
_TIANCHI = _Layout(
    fmt="tianchi",
    sep=",",
    header=True,
    columns=(
        _Col("user_id", "id", out="user"),
        _Col("item_id", "id", out="item"),
        _Col("behavior_type", "code", out="behavior", choices=("click", "collect", "cart", "buy")),
        _Col("item_category", "id", out="category"),
        _Col("time", "hour", out="timestamp"),
    ),
    hint=(
        f"download tianchi_mobile_recommend_train_user.zip from {_TIANCHI_URL} "
        "(Alibaba Tianchi mobile recommendation, 2015) and unzip it"
    ),
    shape="header 'user_id,item_id,behavior_type,user_geohash,item_category,time'",
    folder_names=("tianchi_mobile_recommend_train_user.csv", "tianchi_fresh_comp_train_user.csv"),
    timestamp_parsers=("%Y-%m-%d %H",),
)
_YOOCHOOSE = _Layout(
    fmt="yoochoose",
    sep=",",
    header=False,
    columns=(
        _Col("session", "id", out="user"),
        _Col("timestamp", "iso"),
        _Col("item", "id"),
        _Col("category", "text"),
    ),
    hint=(
        f"download yoochoose-data.7z (RecSys Challenge 2015) via {_YOOCHOOSE_URL} and extract "
        "yoochoose-clicks.dat"
    ),
    shape="no header, 4 fields 'session,timestamp,item,category'",
    folder_names=("yoochoose-clicks.dat",),
)
_YOOCHOOSE_PREPARED = _Layout(
    fmt="yoochoose_prepared",
    sep="\t",
    header=True,
    columns=(
        _Col("SessionId", "id", out="user"),
        _Col("ItemId", "id", out="item"),
        _Col("Time", "num", out="timestamp"),
    ),
    hint=(
        f"prepare it from yoochoose-clicks.dat (RecSys Challenge 2015, {_YOOCHOOSE_URL}) with "
        "the GRU4Rec preprocessing script, or use format 'yoochoose' on the original file"
    ),
    shape="TAB-separated header 'SessionId ItemId Time'",
)
_DIGINETICA = _Layout(
    fmt="diginetica",
    sep=";",
    header=True,
    columns=(
        _Col("session_id", "id", out="user"),
        _Col("item_id", "id", out="item"),
        _Col("timeframe", "num", out="_timeframe", per=1000.0),
        _Col("eventdate", "date", out="_eventdate"),
    ),
    hint=(
        f"download dataset-train-diginetica.zip (CIKM Cup 2016 track 2) from {_DIGINETICA_URL} "
        "and unzip train-item-views.csv"
    ),
    shape="';'-separated header 'session_id;user_id;item_id;timeframe;eventdate'",
    folder_names=("train-item-views.csv",),
)
_KUAIREC = _Layout(
    fmt="kuairec",
    sep=",",
    header=True,
    columns=(
        _Col("user_id", "id", out="user"),
        _Col("video_id", "id", out="item"),
        _Col("play_duration", "duration", out="duration", per=1000.0),
        _Col("video_duration", "duration", per=1000.0),
        _Col("timestamp", "num"),
        _Col("watch_ratio", "extra_num"),
    ),
    hint=(
        f"download KuaiRec.zip from {_KUAIREC_URL} (https://github.com/chongminggao/KuaiRec) "
        "and unzip KuaiRec/data/small_matrix.csv or big_matrix.csv"
    ),
    shape=(
        "header 'user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio'"
    ),
)


def _read_layout(
    path: str | os.PathLike[str],
    layout: _Layout,
    on_bad_rows: str,
    block_bytes: int | None = None,
) -> ReadResult:
    """Stream one original-format file into a :class:`ReadResult` (see the section comment)."""
    _check_on_bad_rows(on_bad_rows)
    block_bytes = block_bytes or _BLOCK_BYTES
    file = _resolve_layout_path(path, layout)
    with open(file, "rb") as handle:
        first = handle.read(block_bytes)
        start = 3 if first.startswith(b"\xef\xbb\xbf") else 0
        if len(first) <= start or first[start:].isspace():
            raise DataFormatError(file, "is empty")
        if first[:2] == b"\x1f\x8b":
            raise DataFormatError(file, "is gzip-compressed; decompress it first")
        if b"\x00" in first:
            line = first.count(b"\n", 0, first.index(b"\x00")) + 1
            raise DataFormatError(
                file,
                "contains NUL bytes: it is binary or UTF-16 encoded, expected ASCII/UTF-8 text",
                line=line,
            )
        lines_before = 0
        n_fields = len(layout.columns)
        wanted = [(i, col) for i, col in enumerate(layout.columns) if col.kind != "skip"]
        if layout.header:
            start, lines_before, names = _read_header(first, start, layout.sep)
            line = lines_before
            wanted = [(_header_index(file, names, col.name, line), col) for col in layout.columns]
            n_fields = len(names)
        state = _StreamState(file, layout, on_bad_rows, wanted, n_fields, file.stat().st_size)
        for buffer, begin, end in _line_blocks(handle, first, start, block_bytes):
            state.add(buffer, begin, end, lines_before)
            lines_before += buffer.count(b"\n", begin, end)
    return state.result()


def _read_header(first: bytes, start: int, sep: str) -> tuple[int, int, list[str]]:
    """Find the header (the first non-blank line) of the first block.

    Returns the offset just after it, its 1-based line number and the column names.
    """
    line_no = 0
    while True:
        line_no += 1
        end = first.find(b"\n", start)
        stop = len(first) if end < 0 else end
        line = first[start:stop]
        start = stop + 1 if end >= 0 else stop
        if (line and not line.isspace()) or end < 0:
            header = line.decode("latin-1").rstrip("\r")
            return start, line_no, _split_header(header, sep)


def _resolve_layout_path(path: str | os.PathLike[str], layout: _Layout) -> Path:
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"{os.fspath(path)}: no such file; {layout.hint}")
    if file.is_dir():
        for name in layout.folder_names:
            if (file / name).is_file():
                return file / name
        if layout.folder_names:
            raise FileNotFoundError(
                f"no {' or '.join(layout.folder_names)} in folder {os.fspath(path)}; {layout.hint}"
            )
        raise DataFormatError(path, "is a directory, expected a file")
    return file


def _line_blocks(
    handle: io.BufferedReader, first: bytes, start: int, block_bytes: int
) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(buffer, begin, end)`` so that ``buffer[begin:end]`` are whole lines.

    Blocks are handed out by offset, without copying them; only the partial last line of a block
    is copied to the front of the next one.
    """
    buffer, pos = first, start
    while True:
        cut = buffer.rfind(b"\n", pos)
        if cut >= 0:
            yield buffer, pos, cut + 1
            rest = buffer[cut + 1 :]
        else:
            rest = buffer[pos:]
        block = handle.read(block_bytes)
        if not block:
            if rest:
                yield rest, 0, len(rest)
            return
        buffer, pos = (rest + block if rest else block), 0


class _StreamState:
    """Parsed blocks of one file plus the bad-row bookkeeping."""

    def __init__(
        self,
        file: Path,
        layout: _Layout,
        on_bad_rows: str,
        wanted: list[tuple[int, _Col]],
        n_fields: int,
        file_size: int,
    ) -> None:
        self.file = file
        self.file_size = file_size
        self.layout = layout
        self.on_bad_rows = on_bad_rows
        self.wanted = wanted
        self.n_fields = n_fields
        self.n_records = 0
        self.n_bad = 0
        self.examples: list[str] = []
        self.columns: dict[str, _Growing] = {}
        seeds = dict(layout.seed_categories)
        self.categories = {
            col.target: _Categories(seeds.get(col.target, ()))
            for _, col in wanted
            if col.kind == "text"
        }
        names = [f"f{i}" for i in range(n_fields)]
        self.read_options = pacsv.ReadOptions(column_names=names, use_threads=True)
        self.parse_options = pacsv.ParseOptions(delimiter=layout.sep, ignore_empty_lines=True)
        parsers = list(layout.timestamp_parsers) if layout.timestamp_parsers else None
        self.convert_options = pacsv.ConvertOptions(
            column_types={f"f{i}": _FAST_TYPES[col.kind] for i, col in wanted},
            include_columns=[f"f{i}" for i, _ in wanted],
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            timestamp_parsers=parsers,
        )

    def add(self, buffer: bytes, begin: int, end: int, lines_before: int) -> None:
        values = self._fast(memoryview(buffer)[begin:end])
        if values is None:
            values = self._refine(buffer, begin, end, lines_before)
        if not self.columns:
            # Rows in the whole file, estimated from the first block with 10 % to spare: the
            # arrays are filled in place, and pages never written cost no memory.
            per_byte = len(next(iter(values.values()))) / max(end - begin, 1)
            capacity = int(per_byte * self.file_size * 1.1) + 1024
            self.columns = {name: _Growing(value.dtype, capacity) for name, value in values.items()}
        for name, value in values.items():
            self.columns[name].append(value)

    def _refine(
        self, buffer: bytes, begin: int, end: int, lines_before: int
    ) -> dict[str, np.ndarray]:
        """Parse a block that holds a bad value: its small pieces fast, the bad pieces slowly."""
        pieces = []
        while begin < end:
            stop = end
            if begin + _PIECE_BYTES < end:
                stop = buffer.rfind(b"\n", begin, begin + _PIECE_BYTES) + 1
                if stop <= begin:
                    stop = buffer.find(b"\n", begin + _PIECE_BYTES, end) + 1 or end
            values = self._fast(memoryview(buffer)[begin:stop])
            if values is None:
                values = self._slow(buffer[begin:stop].decode("latin-1"), lines_before)
            pieces.append(values)
            lines_before += buffer.count(b"\n", begin, stop)
            begin = stop
        return {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}

    def _fast(self, chunk: memoryview) -> dict[str, np.ndarray] | None:
        """Parse a block with the pyarrow CSV reader; None when any value needs a closer look."""
        try:
            table = pacsv.read_csv(
                pa.py_buffer(chunk),
                read_options=self.read_options,
                parse_options=self.parse_options,
                convert_options=self.convert_options,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        out = {}
        # Text columns last: their categories grow only with blocks that are accepted.
        for i, col in sorted(self.wanted, key=lambda pair: pair[1].kind == "text"):
            column = table.column(f"f{i}")
            if col.kind != "extra_num" and column.null_count:
                return None
            value = self._fast_value(col, column)
            if value is None:
                return None
            out[col.target] = value
        self.n_records += table.num_rows
        return out

    def _fast_value(self, col: _Col, column: pa.ChunkedArray) -> np.ndarray | None:
        kind = col.kind
        if kind == "text":
            return self.categories[col.target].codes(column)
        if kind in ("hour", "iso"):
            # Dividing (not multiplying by 1e-6) gives the float nearest to the exact time.
            per_second = 1.0 / _UNIT_SECONDS[column.type.unit]
            return column.cast(pa.int64()).to_numpy() / per_second
        if kind == "date":
            return column.cast(pa.int32()).to_numpy().astype(np.float64) * 86400.0
        values = column.to_numpy() if kind != "extra_num" else _to_numpy(column)
        if kind == "id":
            return values
        if kind == "code":
            if len(values) and (values.min() < 1 or values.max() > len(col.choices)):
                return None
            return (values - 1).astype(np.int8)
        if kind == "extra_num":
            if np.isinf(values).any():
                return None
        elif not np.isfinite(values).all() or (kind == "duration" and (values < 0).any()):
            return None
        return values / col.per if col.per != 1.0 else values

    def _slow(self, text: str, lines_before: int) -> dict[str, np.ndarray]:
        """Parse a block line by line (vectorised), locating and handling every bad row."""
        indices = [i for i, _ in self.wanted]
        if '"' in text:
            body = _split_body_csv(text, self.layout.sep, lines_before, self.n_fields, indices)
        else:
            body = _split_body_fast(text, self.layout.sep, lines_before, self.n_fields, indices)
        n_records = len(body.locations)
        self.n_records += n_records
        shape_ok = body.field_counts == body.n_expected
        n_good = int(shape_ok.sum())
        codes = np.zeros((n_good, len(self.wanted)), np.uint8)
        parsed = []
        for k, (i, col) in enumerate(self.wanted):
            value, codes[:, k] = _parse_original(col, body.columns[i])
            parsed.append(value)
        good_records = np.flatnonzero(shape_ok)
        bad_values = codes.any(axis=1)
        bad = ~shape_ok
        bad[good_records[bad_values]] = True
        n_bad = int(bad.sum())
        if n_bad:
            self.n_bad += n_bad
            room = 1 if self.on_bad_rows == "error" else _MAX_EXAMPLES - len(self.examples)
            for record in np.flatnonzero(bad)[: max(room, 0)]:
                error = self._row_error(body, codes, good_records, int(record))
                if self.on_bad_rows == "error":
                    raise error
                self.examples.append(str(error))
        keep = ~bad_values
        out = {}
        for (_, col), value in zip(self.wanted, parsed, strict=True):
            if col.kind == "text":
                out[col.target] = self.categories[col.target].codes(value.filter(pa.array(keep)))
            else:
                out[col.target] = value[keep]
        return out

    def _row_error(
        self, body: _Body, codes: np.ndarray, good_records: np.ndarray, record: int
    ) -> DataFormatError:
        line = int(body.locations[record])
        count = int(body.field_counts[record])
        if count != body.n_expected:
            detail = f"expected {body.n_expected} fields, got {count}"
            if not self.layout.header:
                detail += f" ({self.layout.fmt}: {self.layout.shape})"
            return DataFormatError(self.file, detail, line=line)
        position = int(np.searchsorted(good_records, record))
        k = int(np.flatnonzero(codes[position])[0])
        index, col = self.wanted[k]
        raw = body.columns[index][position].as_py()
        code = int(codes[position, k])
        if code == _NOT_CHOICE:
            named = ", ".join(f"{j + 1} = {c}" for j, c in enumerate(col.choices))
            detail = f"expected one of {named}, got {raw.strip()!r}"
        elif code == _NOT_TIME:
            detail = f"expected {_TIME_EXAMPLES[col.kind]}, got {raw.strip()!r}"
        else:
            detail = _describe(code, raw)
        if line == 1 and not self.layout.header:
            detail += f" ({self.layout.fmt}: {self.layout.shape})"
        return DataFormatError(self.file, detail, line=line, column=col.name)

    def result(self) -> ReadResult:
        if self.n_records == 0:
            detail = "has a header but no data rows" if self.layout.header else "is empty"
            raise DataFormatError(self.file, detail)
        columns: dict[str, object] = {}
        for _, col in self.wanted:
            values = self.columns.pop(col.target).finish()
            if col.kind == "text":
                categories = self.categories[col.target].categories
                values = pd.Categorical.from_codes(values, categories=categories)
            elif col.kind == "code":
                values = pd.Categorical.from_codes(values, categories=list(col.choices))
            columns[col.target] = values
        order = [c for c in _OUTPUT_ORDER if c in columns]
        order += [c for c in columns if c not in order]
        events = pd.DataFrame({c: columns[c] for c in order}, copy=False)
        return ReadResult(
            events=events,
            path=os.fspath(self.file),
            format=self.layout.fmt,
            n_rows_read=self.n_records,
            n_bad_rows_skipped=self.n_bad,
            bad_row_examples=tuple(self.examples),
        )


def _parse_original(col: _Col, raw: pa.Array) -> tuple[object, np.ndarray]:
    """Parse one field of the records of a block; return values and a problem code per row."""
    kind = col.kind
    if kind in ("id", "code"):
        text, codes = _parse_id(raw, strict=True)
        ok = codes == _OK
        values = pc.if_else(pa.array(ok), text, "0").cast(pa.int64()).to_numpy()
        if kind == "code":
            codes[ok & ((values < 1) | (values > len(col.choices)))] = _NOT_CHOICE
            values = (np.clip(values, 1, len(col.choices)) - 1).astype(np.int8)
        return values, codes
    if kind == "text":
        codes = np.where(pc.equal(raw, "").to_numpy(zero_copy_only=False), _MISSING, _OK)
        return raw, codes.astype(np.uint8)
    if kind in _TIME_FORMATS or kind == "iso":
        text = _trimmed_text(raw)
        missing = _missing_text(text)
        if kind == "iso":
            strings = pd.Series(text.to_pylist(), dtype=object).where(~missing)
            parsed = pd.to_datetime(strings, format="ISO8601", utc=True, errors="coerce")
            nanos = parsed.dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)
            values = np.where(parsed.isna().to_numpy(), np.nan, nanos / 1e9)
        else:
            stamps = pc.strptime(text, format=_TIME_FORMATS[kind], unit="s", error_is_null=True)
            values = _to_numpy(stamps.cast(pa.int64()))
        codes = np.where(missing, _MISSING, np.where(np.isnan(values), _NOT_TIME, _OK))
        return values, codes.astype(np.uint8)
    values, codes = _parse_number(raw)
    if kind != "extra_num":
        codes[(codes == _OK) & np.isnan(values)] = _MISSING
    if kind == "duration":
        codes[(codes == _OK) & (values < 0)] = _NEGATIVE
    return (values / col.per if col.per != 1.0 else values), codes
