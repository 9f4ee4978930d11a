"""The streaming parser of the original-format files (`durgru_jax.data.readers.original`).

A file is read in blocks of whole lines. Each block is first parsed by the pyarrow CSV reader
with explicit column types (multi-threaded, no Python per row); a block that fails to parse or
holds a value out of range is parsed again, more slowly, by the line-aware splitter of
`durgru_jax.data.readers.records`, which finds every bad row with its line and column. That
second parser is the authority: the fast one may only accept what it accepts, so a file reads
the same whatever the block size. Memory follows the parsed columns, not the size of the text.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from durgru_jax.data.readers.records import (
    _Body,
    _header_index,
    _split_body_csv,
    _split_body_fast,
    _split_header,
)
from durgru_jax.data.readers.values import (
    _MAX_EXAMPLES,
    _MISSING,
    _NEGATIVE,
    _NOT_CHOICE,
    _NOT_TIME,
    _OK,
    _UNIT_SECONDS,
    DataFormatError,
    ReadResult,
    _check_on_bad_rows,
    _describe,
    _missing_text,
    _parse_id,
    _parse_number,
    _to_numpy,
    _trimmed_text,
)

_BLOCK_BYTES = 16 << 20
_PIECE_BYTES = 256 << 10
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


def _read_layout(
    path: str | os.PathLike[str],
    layout: _Layout,
    on_bad_rows: str,
    block_bytes: int | None = None,
) -> ReadResult:
    """Stream one original-format file into a :class:`ReadResult` (see the module docstring)."""
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
