"""Readers that load the whole file at once: MovieLens rating files (`read_movielens`) and
generic CSV/TSV/Parquet interaction logs with a header (`read_interactions`).

The file is split into records (`durgru_jax.data.readers.records`), every wanted column is
parsed (`durgru_jax.data.readers.values`), and the bad rows are raised or dropped and counted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from durgru_jax.data.readers.records import (
    _Body,
    _first_line,
    _header_index,
    _split_body,
    _split_header,
)
from durgru_jax.data.readers.values import (
    _MAX_EXAMPLES,
    _MISSING,
    _NEGATIVE,
    _OK,
    _UNIT_SECONDS,
    DataFormatError,
    ReadResult,
    _check_on_bad_rows,
    _decode_dictionary,
    _describe,
    _finish_ids,
    _missing_text,
    _parse_id,
    _parse_number,
    _parse_timestamp,
    _trimmed_text,
    check_text_head,
)

CANONICAL_COLUMNS = ("user", "item", "timestamp", "duration", "rating", "behavior")
_REQUIRED = ("user", "item", "timestamp")
_TIME_SCALE = {"s": 1.0, "ms": 1e-3}
_MOVIELENS_URL = "https://grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class _Field:
    """Where a canonical column comes from and how to parse it."""

    canonical: str
    index: int
    name: str
    # One of: id, int_id, timestamp, number_timestamp, rating, required_rating, duration, text.
    kind: str


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
