"""Tests for durgru_jax.data.readers on fixtures in the real formats and on shared samples."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from durgru_jax.data.readers import (
    DataFormatError,
    ReadResult,
    read_interactions,
    read_movielens,
)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _ratings_dat(n: int = 20) -> list[str]:
    return [f"{1 + i // 5}::{100 + i}::{1 + i % 5}::{978300000 + i}" for i in range(n)]


# --------------------------------------------------------------------------- MovieLens


def test_u_data_tab_separated(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    result = read_movielens(path)
    assert isinstance(result, ReadResult)
    assert result.format == "movielens-100k"
    assert result.n_rows_read == 2 and result.n_bad_rows_skipped == 0
    assert result.bad_row_examples == ()
    events = result.events
    assert list(events.columns) == ["user", "item", "timestamp", "rating"]
    assert events["user"].dtype == np.int64 and events["item"].dtype == np.int64
    assert events["timestamp"].dtype == np.float64 and events["rating"].dtype == np.float32
    assert events["user"].tolist() == [196, 186]
    assert events["timestamp"].tolist() == [881250949.0, 891717742.0]


def test_ratings_dat_keeps_file_order_and_half_stars(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.dat", "2::10::3.5::200\n1::5::4::100\n1::6::0.5::100\n")
    result = read_movielens(path)
    assert result.format == "movielens-dat"
    assert result.events["user"].tolist() == [2, 1, 1]
    assert result.events["item"].tolist() == [10, 5, 6]
    assert result.events["rating"].tolist() == [3.5, 4.0, 0.5]
    assert "duration" not in result.events


def test_movielens_csv_with_header_crlf_and_folder(tmp_path: Path) -> None:
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\r\n1,2,3.5,1112486027\r\n")
    result = read_movielens(tmp_path)
    assert result.format == "movielens-csv"
    assert result.path == os.fspath(tmp_path / "ratings.csv")
    assert result.events.iloc[0].tolist() == [1, 2, 1112486027.0, 3.5]


def test_movielens_blank_lines_count_for_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.dat", "1::1::5::10\n\n1::2::5::11\n1::3::x::12\n")
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    assert info.value.line == 4 and info.value.column == "rating"
    assert read_movielens(path, on_bad_rows="skip").n_rows_read == 3


def test_movielens_non_numeric_timestamp_message(tmp_path: Path) -> None:
    lines = _ratings_dat(20)
    lines[16] = "4::116::2::abc"
    path = _write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    err = info.value
    assert str(err) == f"{path}:17: column 'timestamp': expected a number, got 'abc'"
    assert (err.path, err.line, err.column) == (os.fspath(path), 17, "timestamp")
    assert isinstance(err, ValueError)


def test_movielens_wrong_field_count(tmp_path: Path) -> None:
    lines = _ratings_dat(6)
    lines[2] = "1::102::3::978300002::extra"
    path = _write(tmp_path / "ratings.dat", "\n".join(lines))
    with pytest.raises(DataFormatError, match=r"ratings\.dat:3: expected 4 fields, got 5") as info:
        read_movielens(path)
    assert info.value.line == 3 and info.value.column is None


@pytest.mark.parametrize(
    ("bad", "column", "detail"),
    [
        ("1.5::100::3::978300000", "user", "expected an integer id, got '1.5'"),
        ("1::abc::3::978300000", "item", "expected an integer id, got 'abc'"),
        ("1::100::::978300000", "rating", "missing value"),
        ("1::100::3::nan", "timestamp", "missing value"),
        ("1::100::3::inf", "timestamp", "expected a number, got 'inf'"),
        ("1::100::3::1e400", "timestamp", "expected a finite number, got '1e400'"),
    ],
)
def test_movielens_bad_values(tmp_path: Path, bad: str, column: str, detail: str) -> None:
    lines = _ratings_dat(4)
    lines[1] = bad
    path = _write(tmp_path / "ratings.dat", "\n".join(lines))
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    assert str(info.value) == f"{path}:2: column '{column}': {detail}"


def test_first_bad_row_is_reported(tmp_path: Path) -> None:
    lines = _ratings_dat(10)
    lines[7] = "1::1"
    lines[4] = "1::104::3::later"
    path = _write(tmp_path / "ratings.dat", "\n".join(lines))
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    assert info.value.line == 5 and info.value.column == "timestamp"


def test_movielens_skip_drops_and_counts_exactly_bad_rows(tmp_path: Path) -> None:
    lines = _ratings_dat(30)
    bad_lines = {3: "1::1", 8: "x::1::1::1", 9: "1::2::3::y", 20: "1::2::3::4::5", 25: "::::::"}
    for line, text in bad_lines.items():
        lines[line - 1] = text
    path = _write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")
    result = read_movielens(path, on_bad_rows="skip")
    assert result.n_rows_read == 30
    assert result.n_bad_rows_skipped == 5
    assert len(result.events) == 25
    kept_items = [100 + i for i in range(30) if i + 1 not in bad_lines]
    assert result.events["item"].tolist() == kept_items
    assert [e.split(":")[1] for e in result.bad_row_examples] == ["3", "8", "9", "20", "25"]
    assert all(e.startswith(os.fspath(path)) for e in result.bad_row_examples)


def test_skip_examples_are_capped_at_five(tmp_path: Path) -> None:
    lines = _ratings_dat(20)
    for i in range(0, 20, 2):
        lines[i] = "bad"
    path = _write(tmp_path / "ratings.dat", "\n".join(lines))
    result = read_movielens(path, on_bad_rows="skip")
    assert result.n_bad_rows_skipped == 10 and len(result.events) == 10
    assert len(result.bad_row_examples) == 5


def test_movielens_not_movielens_content(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.dat", "1 2 3 4\n")
    with pytest.raises(DataFormatError, match=r"ratings\.dat:1: not a MovieLens ratings file"):
        read_movielens(path)


def test_movielens_movies_dat_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "movies.dat", "1::Caf\xe9 (1995)::Comedy\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"movies\.dat:1: expected 4 fields, got 3"):
        read_movielens(path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_files(tmp_path: Path, content: bytes) -> None:
    for name, reader in (("ratings.dat", read_movielens), ("log.csv", read_interactions)):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError, match=rf"{name} is empty"):
            reader(path)


def test_movielens_bad_bytes_are_located(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"1::1::5::10\n1::2::5::1\xff1\n")
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    assert info.value.line == 2 and info.value.column == "timestamp"
    assert "ratings.dat" in str(info.value)


def test_utf16_file_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "ratings.dat", "1::1::5::10\n", encoding="utf-16")
    with pytest.raises(DataFormatError, match=r"ratings\.dat.*UTF-16"):
        read_movielens(path)


def test_missing_movielens_file_says_where_to_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.dat.*grouplens\.org"):
        read_movielens(tmp_path / "nope.dat")
    with pytest.raises(FileNotFoundError, match=r"grouplens\.org"):
        read_movielens(tmp_path)


def test_invalid_on_bad_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.data", "1\t2\t3\t4\n")
    with pytest.raises(ValueError, match="on_bad_rows"):
        read_movielens(path, on_bad_rows="ignore")


# ---------------------------------------------------------------------- generic logs

_CSV = (
    "user,item,timestamp,duration,rating,behavior,extra\n"
    "u1,10,100,5.5,4,pv,x\n"
    "u2,11,101,,,cart,y\n"
    "u1,12,100,0,2.5,,z\n"
)


def test_csv_with_header_and_optional_columns(tmp_path: Path) -> None:
    result = read_interactions(_write(tmp_path / "log.csv", _CSV))
    events = result.events
    assert result.format == "csv" and result.n_rows_read == 3
    assert list(events.columns) == ["user", "item", "timestamp", "duration", "rating", "behavior"]
    assert events["user"].tolist() == ["u1", "u2", "u1"]
    assert pd.api.types.is_string_dtype(events["user"])
    assert events["item"].dtype == np.int64
    assert events["timestamp"].tolist() == [100.0, 101.0, 100.0]
    assert events["duration"].dtype == np.float64
    np.testing.assert_array_equal(events["duration"], [5.5, np.nan, 0.0])
    assert events["rating"].dtype == np.float32
    np.testing.assert_array_equal(events["rating"], np.array([4, np.nan, 2.5], np.float32))
    assert events["behavior"].iloc[:2].tolist() == ["pv", "cart"]
    assert pd.isna(events["behavior"].iloc[2])


def test_tsv_by_extension_and_sep_override(tmp_path: Path) -> None:
    text = "user\titem\ttimestamp\n1\t2\t3\n"
    for name in ("log.tsv", "log.txt"):
        result = read_interactions(_write(tmp_path / name, text))
        assert result.format == "tsv"
        assert result.events.iloc[0].tolist() == [1, 2, 3.0]
    piped = _write(tmp_path / "log.dat", "user|item|timestamp\n7|8|9\n")
    assert read_interactions(piped, sep="|").events.iloc[0].tolist() == [7, 8, 9.0]
    semicolon = _write(tmp_path / "views.csv", "user;item;timestamp\n7;8;9\n")
    assert read_interactions(semicolon).events.iloc[0].tolist() == [7, 8, 9.0]


def test_column_remapping_and_ms_timestamps(tmp_path: Path) -> None:
    text = "session_id,item,ts,dwell_ms\n3,214716935,1396437466940,1500\n"
    path = _write(tmp_path / "clicks.csv", text)
    result = read_interactions(
        path,
        columns={"user": "session_id", "timestamp": "ts", "duration": "dwell_ms"},
        timestamp_unit="ms",
        duration_unit="ms",
    )
    assert result.events.iloc[0].tolist() == [3, 214716935, 1396437466.94, 1.5]


def test_iso_timestamps(tmp_path: Path) -> None:
    text = (
        "user,item,timestamp\n"
        "a,1,2024-01-01T00:00:00\n"
        "a,2,2024-01-01T00:00:01.5Z\n"
        "a,3,2024-01-01 02:00:00+02:00\n"
        "a,4,2024-01-02\n"
    )
    result = read_interactions(_write(tmp_path / "log.csv", text))
    start = 1704067200.0
    assert result.events["timestamp"].tolist() == [start, start + 1.5, start, start + 86400]


def test_iso_timestamp_bad_value(tmp_path: Path) -> None:
    text = "user,item,timestamp\na,1,2024-01-01\na,2,2024-13-45\na,3,2024-01-03\n"
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path)
    expected = f"{path}:3: column 'timestamp': expected an ISO-8601 datetime, got '2024-13-45'"
    assert str(info.value) == expected


def test_generic_non_numeric_timestamp_and_negative_duration(tmp_path: Path) -> None:
    text = "user,item,ts,duration\n1,1,10,1\n1,2,11,-3\n1,3,abc,2\n1,4,13,4\n"
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path, columns={"timestamp": "ts"})
    assert (
        str(info.value)
        == f"{path}:3: column 'duration': expected a non-negative duration, got '-3'"
    )
    result = read_interactions(path, columns={"timestamp": "ts"}, on_bad_rows="skip")
    assert result.n_bad_rows_skipped == 2
    assert result.events["item"].tolist() == [1, 4]
    assert result.bad_row_examples == (
        f"{path}:3: column 'duration': expected a non-negative duration, got '-3'",
        f"{path}:4: column 'ts': expected a number, got 'abc'",
    )


def test_generic_wrong_field_count(tmp_path: Path) -> None:
    text = "user,item,timestamp\n1,1,10\n1,2\n1,3,12,99\n\n1,4,13\n"
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path)
    assert str(info.value) == f"{path}:3: expected 3 fields, got 2"
    result = read_interactions(path, on_bad_rows="skip")
    assert (result.n_rows_read, result.n_bad_rows_skipped) == (4, 2)
    assert result.events["item"].tolist() == [1, 4]
    assert result.bad_row_examples[1] == f"{path}:4: expected 3 fields, got 4"


def test_missing_required_id_is_bad(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,timestamp\nNA,1,10\n2,,11\n3,3,12\n")
    with pytest.raises(DataFormatError, match=r"log\.csv:2: column 'user': missing value"):
        read_interactions(path)
    result = read_interactions(path, on_bad_rows="skip")
    assert result.n_bad_rows_skipped == 2 and result.events["user"].tolist() == [3]


def test_quoted_csv_keeps_physical_line_numbers(tmp_path: Path) -> None:
    text = 'user,item,timestamp,behavior\n1,1,10,"a, b"\n1,2,11,"multi\nline"\n1,3,oops,c\n'
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path)
    assert info.value.line == 5 and info.value.column == "timestamp"
    result = read_interactions(path, on_bad_rows="skip")
    assert result.events["behavior"].tolist() == ["a, b", "multi\nline"]


def test_missing_column_lists_columns_found(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "session,item,ts\n1,2,3\n")
    with pytest.raises(DataFormatError) as info:
        read_interactions(path, columns={"user": "session"})
    err = info.value
    assert (err.line, err.column) == (1, "timestamp")
    assert "log.csv:1: column 'timestamp': missing from the header" in str(err)
    assert "['session', 'item', 'ts']" in str(err)
    with pytest.raises(DataFormatError, match=r"'dwell'.*needed for 'duration'"):
        read_interactions(path, columns={"user": "session", "timestamp": "ts", "duration": "dwell"})


def test_headerless_csv_hint(tmp_path: Path) -> None:
    path = _write(tmp_path / "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n")
    with pytest.raises(DataFormatError, match="may lack a header row"):
        read_interactions(path)


def test_unknown_mapping_key_and_bad_options(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,timestamp\n1,2,3\n")
    with pytest.raises(ValueError, match="'session'"):
        read_interactions(path, columns={"session": "user"})
    with pytest.raises(ValueError, match="timestamp_unit"):
        read_interactions(path, timestamp_unit="us")


def test_header_only_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,timestamp\n")
    with pytest.raises(DataFormatError, match=r"log\.csv has a header but no data rows"):
        read_interactions(path)


def test_generic_bad_encoding(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes("user,item,timestamp\nu,1,1\nJos\xe9,2,2\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"log\.csv:3: not valid UTF-8") as info:
        read_interactions(path)
    assert info.value.line == 3


def test_utf8_bom_and_numeric_ids(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes("user,item,timestamp\n007,-2,3\n".encode("utf-8-sig"))
    events = read_interactions(path).events
    assert events["user"].dtype == np.int64 and events["user"].tolist() == [7]
    assert events["item"].tolist() == [-2]


def test_missing_generic_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.csv"):
        read_interactions(tmp_path / "absent.csv")
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet"):
        read_interactions(tmp_path / "absent.parquet")


def test_parquet_typed_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "sid": pd.Series(["s1", "s2"], dtype="category"),
            "item": np.array([5, 6], np.int32),
            "timestamp": pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:01:00"]),
            "duration": [1.5, np.nan],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    result = read_interactions(path, columns={"user": "sid"})
    events = result.events
    assert result.format == "parquet"
    assert events["user"].tolist() == ["s1", "s2"]
    assert events["item"].dtype == np.int64
    assert events["timestamp"].tolist() == [1704067200.0, 1704067260.0]
    np.testing.assert_array_equal(events["duration"], [1.5, np.nan])


def test_parquet_bad_rows_and_numeric_timestamps(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user": [1, 2, 3],
            "item": [1, 2, 3],
            "timestamp": [1000, 2000, 3000],
            "duration": [1.0, 2.0, -1.0],
        }
    )
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataFormatError) as info:
        read_interactions(path, timestamp_unit="ms")
    err = info.value
    assert (err.line, err.row, err.column) == (None, 3, "duration")
    assert str(err).startswith(f"{path}: row 3: column 'duration':")
    result = read_interactions(path, timestamp_unit="ms", on_bad_rows="skip")
    assert result.events["timestamp"].tolist() == [1.0, 2.0]
    assert result.n_bad_rows_skipped == 1


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.parquet", "user,item,timestamp\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"log\.parquet.*not a readable Parquet file"):
        read_interactions(path)


# ------------------------------------------------------------------ shared real samples


def _shared_data() -> Path:
    root = os.environ.get("DURGRU_SHARED_DATA")
    folder = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} not available")
    return folder


def _shared_file(relative: str) -> Path:
    path = _shared_data() / relative
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path


def test_shared_movielens_100k() -> None:
    result = read_movielens(_shared_file("movielens-100k/u.data"))
    events = result.events
    assert result.format == "movielens-100k"
    assert len(events) == 100_000 and result.n_bad_rows_skipped == 0
    assert events["user"].nunique() == 943 and events["item"].nunique() == 1682
    assert set(events["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert events.iloc[0].tolist() == [196, 242, 881250949.0, 3.0]


def test_shared_movielens_1m_cut() -> None:
    start = time.perf_counter()
    result = read_movielens(_shared_file("movielens-1m/ratings-users-1-2998.dat"))
    elapsed = time.perf_counter() - start
    events = result.events
    assert result.format == "movielens-dat" and len(events) == 487_515
    assert events["user"].nunique() == 2998
    assert events.groupby("user").size().min() >= 20
    # Generous bound: this is about 0.5 s here; a per-line Python parser takes far longer.
    assert elapsed < 10.0


def test_shared_yoochoose_tsv() -> None:
    path = _shared_file("yoochoose-rsc15-100k-prepared/yoochoose-clicks-100k_test.txt")
    result = read_interactions(
        path, columns={"user": "SessionId", "item": "ItemId", "timestamp": "Time"}
    )
    assert result.format == "tsv" and len(result.events) == 13_568
    assert result.events["timestamp"].iloc[0] == pytest.approx(1396860669.277)


def test_shared_diginetica_user_na_rows_are_skippable() -> None:
    path = _shared_file("diginetica-sample/sample_train-item-views.csv")
    columns = {"user": "session_id", "item": "item_id", "timestamp": "eventdate"}
    result = read_interactions(path, columns=columns)
    assert len(result.events) == 12_391 and result.events["user"].nunique() == 2986
    with pytest.raises(DataFormatError, match=r"csv:2: column 'user_id': missing value"):
        read_interactions(path, columns={**columns, "user": "user_id"})
