"""Readers for raw interaction logs: MovieLens ratings and generic CSV/TSV/Parquet logs.

Every reader returns a :class:`ReadResult` whose ``events`` frame is in *file order* (the caller
sorts stably by ``(user, timestamp)`` so that equal timestamps keep file order) with columns

* ``user``, ``item``: raw ids, ``int64`` when every kept id is an integer, else ``str``;
* ``timestamp``: ``float64`` Unix seconds;
* optional ``duration`` (``float64`` seconds, NaN = missing), ``rating`` (``float32``) and
  ``behavior`` (``str``).

Malformed rows (wrong number of fields, a non-numeric or missing value where a number is
required, a negative or infinite duration, a missing id or timestamp) either raise
:class:`DataFormatError` naming file, line and column of the first one (``on_bad_rows="error"``)
or are dropped and counted (``on_bad_rows="skip"``).

Parsing is vectorised with pyarrow compute kernels; line numbers are kept per record, so bad rows
are located without a second pass.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CANONICAL_COLUMNS",
    "DataFormatError",
    "ReadResult",
    "read_interactions",
    "read_movielens",
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
    if not data.strip():
        raise DataFormatError(path, "is empty")
    if data[:2] == b"\x1f\x8b":
        raise DataFormatError(path, "is gzip-compressed; decompress it first")
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataFormatError(
            path,
            "contains NUL bytes: it is binary or UTF-16 encoded, expected ASCII/UTF-8 text",
            line=line,
        )
    return data


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
