"""The records of a delimited text file: its header and its body split into fields.

Each record keeps its 1-based physical line, so a bad row is located without a second pass.
Plain files are split with pyarrow kernels; quoted ones with the csv module (several times
slower, so only when a ``"`` occurs).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from durgru_jax.data.readers.values import DataFormatError


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
