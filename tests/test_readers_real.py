"""Tests for the original-format readers (Taobao, Tianchi, YooChoose, DIGINETICA, KuaiRec).

Each reader is tested on a fixture in its original format written here, on bad input, and on the
matching sample in ``../shared/data`` when that folder is present.
"""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from durgru_jax.data.readers import (
    DataFormatError,
    ReadResult,
    read_dataset,
    read_diginetica,
    read_kuairec,
    read_taobao,
    read_tianchi,
    read_yoochoose_clicks,
    read_yoochoose_prepared,
    stream,
)


def _shared_data() -> Path:
    env = os.environ.get("DURGRU_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _shared_file(relative: str) -> Path:
    path = _shared_data() / relative
    if not path.is_file():
        pytest.skip(f"shared sample {path} not available")
    return path


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _utc(text: str) -> float:
    return float(calendar.timegm(pd.Timestamp(text).timetuple()))


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every block a few lines long, so that block boundaries are exercised."""
    monkeypatch.setattr(stream, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(stream, "_PIECE_BYTES", 40)


# --------------------------------------------------------------------------- Taobao

TAOBAO = (
    "1,2268318,2520377,pv,1511544070\n"
    "1,2333346,2520771,cart,1511561733\n"
    "1,2576651,149192,pv,1511561733\n"  # tie with the previous row
    "2,3830808,4181361,buy,1511593493\n"
    "2,4365585,2520377,fav,1511596146\n"
    "2,2268318,2520377,pv,1511544000\n"  # earlier than the rows above: not sorted
)


def _check_taobao(result: ReadResult) -> None:
    events = result.events
    assert result.format == "taobao"
    assert result.n_rows_read == 6 and result.n_bad_rows_skipped == 0
    assert list(events.columns) == ["user", "item", "timestamp", "behavior", "category"]
    assert events["user"].dtype == np.int64 and events["item"].dtype == np.int64
    assert events["category"].dtype == np.int64 and events["timestamp"].dtype == np.float64
    assert isinstance(events["behavior"].dtype, pd.CategoricalDtype)
    assert list(events["behavior"].cat.categories) == ["pv", "cart", "fav", "buy"]
    assert events["user"].tolist() == [1, 1, 1, 2, 2, 2]
    assert events["item"].tolist() == [2268318, 2333346, 2576651, 3830808, 4365585, 2268318]
    assert events["category"].tolist() == [2520377, 2520771, 149192, 4181361, 2520377, 2520377]
    assert events["behavior"].tolist() == ["pv", "cart", "pv", "buy", "fav", "pv"]
    assert events["timestamp"].tolist() == [
        1511544070.0,
        1511561733.0,
        1511561733.0,
        1511593493.0,
        1511596146.0,
        1511544000.0,
    ]


def test_taobao_fixture_parsed_exactly_in_file_order(tmp_path: Path) -> None:
    _check_taobao(read_taobao(_write(tmp_path / "UserBehavior.csv", TAOBAO)))


def test_taobao_across_many_small_blocks_crlf_and_folder(tmp_path: Path, small_blocks) -> None:
    _write(tmp_path / "UserBehavior.csv", TAOBAO.replace("\n", "\r\n"))
    _check_taobao(read_taobao(tmp_path))
    _check_taobao(read_dataset("taobao", tmp_path / "UserBehavior.csv"))


def test_taobao_bad_rows_name_file_line_and_column(tmp_path: Path) -> None:
    lines = TAOBAO.splitlines()
    layout = " (taobao: no header, 5 fields 'user,item,category,behavior,timestamp')"
    cases = {
        "1,2268318,2520377,pv\n": "expected 5 fields, got 4" + layout,
        "1,2268318,2520377,pv,1511544070,9\n": "expected 5 fields, got 6" + layout,
        "1,2268318,2520377,pv,yesterday\n": (
            "column 'timestamp': expected a number, got 'yesterday'"
        ),
        "u1,2268318,2520377,pv,1511544070\n": "column 'user': expected an integer id, got 'u1'",
        "1,2268318,2520377,,1511544070\n": "column 'behavior': missing value",
        "1,,2520377,pv,1511544070\n": "column 'item': missing value",
    }
    for k, (row, detail) in enumerate(cases.items()):
        # Line 4 is the bad one; line 3 is blank and still counted.
        path = _write(tmp_path / f"bad{k}.csv", lines[0] + "\n" + lines[1] + "\n\n" + row)
        with pytest.raises(DataFormatError) as info:
            read_taobao(path)
        assert str(info.value) == f"{path}:4: {detail}"
        assert info.value.line == 4


def test_taobao_header_row_is_reported_with_the_expected_layout(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.csv", "user,item,category,behavior,timestamp\n" + TAOBAO)
    with pytest.raises(DataFormatError, match=r"u\.csv:1: column 'user': .*no header, 5 fields"):
        read_taobao(path)


def test_taobao_skip_counts_bad_rows_in_every_block(tmp_path: Path, small_blocks) -> None:
    rows = TAOBAO.splitlines()
    bad = ["1,2,3,pv,x", "1,2,3", "x,2,3,pv,5", "1,2,3,weird-behaviour-only-here,bad"]
    text = "\n".join([bad[0], *rows[:3], bad[1], *rows[3:], bad[2], bad[3]]) + "\n"
    result = read_taobao(_write(tmp_path / "UserBehavior.csv", text), on_bad_rows="skip")
    assert result.n_rows_read == 10 and result.n_bad_rows_skipped == 4
    assert len(result.events) == 6
    assert ":1: column 'timestamp': expected a number, got 'x'" in result.bad_row_examples[0]
    assert ":5: expected 5 fields, got 3" in result.bad_row_examples[1]
    # The behaviour of a dropped row does not become a category.
    assert list(result.events["behavior"].cat.categories) == ["pv", "cart", "fav", "buy"]
    assert result.events["behavior"].tolist() == ["pv", "cart", "pv", "buy", "fav", "pv"]
    with pytest.raises(DataFormatError, match=r":1: column 'timestamp'"):
        read_taobao(tmp_path / "UserBehavior.csv")


def test_taobao_blocks_agree_with_one_pass(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    behaviors = np.array(["pv", "cart", "fav", "buy"])[rng.integers(0, 4, n)]
    rows = [
        f"{u},{i},{c},{b},{t}"
        for u, i, c, b, t in zip(
            rng.integers(1, 50, n),
            rng.integers(1, 10**9, n),
            rng.integers(1, 5000, n),
            behaviors,
            rng.integers(1511539200, 1512316799, n),
            strict=True,
        )
    ]
    for k in range(17, n, 250):
        rows[k] = rows[k].rsplit(",", 1)[0] + ",bad"
    path = _write(tmp_path / "UserBehavior.csv", "\n".join(rows) + "\n")
    whole = read_taobao(path, on_bad_rows="skip")
    monkeypatch.setattr(stream, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(stream, "_PIECE_BYTES", 512)
    blocks = read_taobao(path, on_bad_rows="skip")
    pd.testing.assert_frame_equal(whole.events, blocks.events)
    assert whole.n_bad_rows_skipped == blocks.n_bad_rows_skipped == 12
    assert whole.bad_row_examples == blocks.bad_row_examples
    assert whole.bad_row_examples[0].startswith(f"{path}:18: column 'timestamp'")
    with pytest.raises(DataFormatError, match=r":18: column 'timestamp'"):
        read_taobao(path)


def test_empty_missing_and_binary_files(tmp_path: Path) -> None:
    readers_by_name = {
        "taobao": read_taobao,
        "tianchi": read_tianchi,
        "yoochoose": read_yoochoose_clicks,
        "yoochoose_prepared": read_yoochoose_prepared,
        "diginetica": read_diginetica,
        "kuairec": read_kuairec,
    }
    urls = {
        "taobao": "tianchi.aliyun.com/dataset/649",
        "tianchi": "tianchi.aliyun.com",
        "yoochoose": "recsys.acm.org/recsys15",
        "yoochoose_prepared": "recsys.acm.org/recsys15",
        "diginetica": "competitions.codalab.org",
        "kuairec": "kuairec.com",
    }
    empty = _write(tmp_path / "empty.csv", "")
    blank = _write(tmp_path / "blank.csv", "\n  \n\n")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("1,2,3,pv,4\n".encode("utf-16"))
    for name, read in readers_by_name.items():
        for path in (empty, blank):
            with pytest.raises(DataFormatError, match=r"empty\.csv is empty|blank\.csv is empty"):
                read(path)
        with pytest.raises(FileNotFoundError, match=urls[name]):
            read(tmp_path / "absent.csv")
        with pytest.raises(DataFormatError, match="NUL bytes"):
            read(utf16)


# --------------------------------------------------------------------------- Tianchi

TIANCHI = (
    "user_id,item_id,behavior_type,user_geohash,item_category,time\n"
    "10001082,285259775,1,97lk14c,4076,2014-12-08 18\n"
    "10001082,4368907,4,,5503,2014-12-12 12\n"
    "10001082,4368907,2,,5503,2014-12-12 12\n"
    "100029775,53616768,3,96ufs4l,9762,2014-11-18 00\n"
)


def test_tianchi_fixture_parsed_exactly(tmp_path: Path) -> None:
    result = read_tianchi(_write(tmp_path / "tianchi_mobile_recommend_train_user.csv", TIANCHI))
    events = result.events
    assert result.format == "tianchi" and result.n_rows_read == 4
    assert list(events.columns) == ["user", "item", "timestamp", "behavior", "category"]
    assert events["user"].tolist() == [10001082, 10001082, 10001082, 100029775]
    assert events["item"].tolist() == [285259775, 4368907, 4368907, 53616768]
    assert events["behavior"].tolist() == ["click", "buy", "collect", "cart"]
    assert list(events["behavior"].cat.categories) == ["click", "collect", "cart", "buy"]
    assert events["category"].tolist() == [4076, 5503, 5503, 9762]
    assert events["timestamp"].tolist() == [
        _utc("2014-12-08 18:00:00"),
        _utc("2014-12-12 12:00:00"),
        _utc("2014-12-12 12:00:00"),
        _utc("2014-11-18 00:00:00"),
    ]
    assert events["timestamp"].iloc[0] == 1418061600.0
    # The folder is searched for the file; columns are found by name.
    assert len(read_dataset("tianchi", tmp_path).events) == 4
    reordered = (
        "time,item_category,user_geohash,behavior_type,item_id,user_id\n2014-12-08 18,4076,,1,7,9\n"
    )
    events = read_tianchi(_write(tmp_path / "reordered.csv", reordered)).events
    assert events.iloc[0].tolist() == [9, 7, 1418061600.0, "click", 4076]


def test_tianchi_bad_input(tmp_path: Path) -> None:
    header, first = TIANCHI.splitlines()[:2]
    cases = {
        "10001082,285259775,5,,4076,2014-12-08 18": (
            "column 'behavior_type': expected one of 1 = click, 2 = collect, 3 = cart, "
            "4 = buy, got '5'"
        ),
        "10001082,285259775,1,,4076,2014-12-08": (
            "column 'time': expected a time like '2014-12-06 02' (YYYY-MM-DD HH), got '2014-12-08'"
        ),
        "10001082,285259775,1,,cat,2014-12-08 18": (
            "column 'item_category': expected an integer id, got 'cat'"
        ),
    }
    for k, (row, detail) in enumerate(cases.items()):
        path = _write(tmp_path / f"bad{k}.csv", f"{header}\n{first}\n{row}\n")
        with pytest.raises(DataFormatError) as info:
            read_tianchi(path)
        assert str(info.value) == f"{path}:3: {detail}"
    text = "user_id,item_id,behavior_type,time\n1,2,1,2014-12-08 18\n"
    missing = _write(tmp_path / "missing.csv", text)
    with pytest.raises(DataFormatError, match=r"missing\.csv:1: column 'item_category': missing"):
        read_tianchi(missing)
    header_only = _write(tmp_path / "header.csv", header + "\n")
    with pytest.raises(DataFormatError, match="has a header but no data rows"):
        read_tianchi(header_only)
    skipped = read_tianchi(tmp_path / "bad0.csv", on_bad_rows="skip")
    assert skipped.n_rows_read == 2 and skipped.n_bad_rows_skipped == 1
    assert skipped.events["behavior"].tolist() == ["click"]


# --------------------------------------------------------------------------- YooChoose

YOOCHOOSE = (
    "1,2014-04-07T10:51:09.277Z,214536502,0\n"
    "1,2014-04-07T10:54:09.868Z,214536500,0\n"
    "1,2014-04-07T10:54:09.868Z,214536506,0\n"  # tie
    "2,2014-04-07T13:56:37.614Z,214662742,S\n"
    "3,2014-04-02T13:17:46.940Z,214716935,2053283376\n"
    "3,2014-04-02T13:26:02.515Z,214774687,12\n"
)


def test_yoochoose_clicks_fixture_parsed_exactly(tmp_path: Path) -> None:
    result = read_yoochoose_clicks(_write(tmp_path / "yoochoose-clicks.dat", YOOCHOOSE))
    events = result.events
    assert result.format == "yoochoose" and result.n_rows_read == 6
    assert list(events.columns) == ["user", "item", "timestamp", "category"]
    assert events["user"].dtype == np.int64 and events["item"].dtype == np.int64
    assert events["user"].tolist() == [1, 1, 1, 2, 3, 3]
    assert events["item"].tolist() == [
        214536502,
        214536500,
        214536506,
        214662742,
        214716935,
        214774687,
    ]
    assert events["timestamp"].tolist() == [
        1396867869.277,
        1396868049.868,
        1396868049.868,
        1396878997.614,
        1396444666.940,
        1396445162.515,
    ]
    assert isinstance(events["category"].dtype, pd.CategoricalDtype)
    assert events["category"].astype(str).tolist() == ["0", "0", "0", "S", "2053283376", "12"]
    assert read_dataset("yoochoose", tmp_path).n_rows_read == 6


def test_yoochoose_clicks_bad_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.dat", YOOCHOOSE + "4,2014-04-07 soon,214536502,0\n")
    with pytest.raises(DataFormatError) as info:
        read_yoochoose_clicks(path)
    assert str(info.value) == (
        f"{path}:7: column 'timestamp': expected an ISO-8601 time like "
        "'2014-04-07T10:51:09.277Z', got '2014-04-07 soon'"
    )
    path = _write(tmp_path / "d.dat", YOOCHOOSE + "4,2014-04-07T10:51:09.277Z,214536502,\n")
    with pytest.raises(DataFormatError, match=r"d\.dat:7: column 'category': missing value"):
        read_yoochoose_clicks(path)
    # The prepared TSV is read as such (tests/test_degenerate.py); an unknown layout is not.
    prepared = _write(tmp_path / "prepared.txt", "Session\tItem\tTime\n1\t2\t3.5\n")
    with pytest.raises(
        DataFormatError, match=r"prepared\.txt:1: expected 4 fields, got 1 .*no header"
    ):
        read_yoochoose_clicks(prepared)
    skipped = read_yoochoose_clicks(tmp_path / "c.dat", on_bad_rows="skip")
    assert skipped.n_bad_rows_skipped == 1 and len(skipped.events) == 6


PREPARED = (
    "SessionId\tItemId\tTime\n"
    "1\t214536502\t1396860669.277\n"
    "1\t214536506\t1396860886.998\n"
    "2\t214662742\t1396860886.998\n"  # tie across sessions
)


def test_yoochoose_prepared_fixture_and_bad_input(tmp_path: Path) -> None:
    result = read_yoochoose_prepared(_write(tmp_path / "train.txt", PREPARED))
    events = result.events
    assert result.format == "yoochoose_prepared"
    assert list(events.columns) == ["user", "item", "timestamp"]
    assert events["user"].tolist() == [1, 1, 2]
    assert events["item"].tolist() == [214536502, 214536506, 214662742]
    assert events["timestamp"].tolist() == [1396860669.277, 1396860886.998, 1396860886.998]
    bad = _write(tmp_path / "bad.txt", PREPARED + "3\t214662742\tsoon\n")
    with pytest.raises(DataFormatError) as info:
        read_yoochoose_prepared(bad)
    assert str(info.value) == f"{bad}:5: column 'Time': expected a number, got 'soon'"
    missing = _write(tmp_path / "missing.txt", "SessionId\tItemId\n1\t2\n")
    with pytest.raises(
        DataFormatError, match=r"missing\.txt:1: column 'Time': missing from the header"
    ):
        read_yoochoose_prepared(missing)
    assert read_dataset("yoochoose_prepared", bad, on_bad_rows="skip").n_bad_rows_skipped == 1


# --------------------------------------------------------------------------- DIGINETICA

DIGINETICA = (
    "session_id;user_id;item_id;timeframe;eventdate\n"
    "1;NA;81766;526309;2016-05-09\n"
    "1;NA;31331;1031018;2016-05-09\n"
    "1;NA;32118;243569;2016-05-09\n"
    "2;278;9654;75848;2016-05-09\n"
    "2;278;33043;75848;2016-05-09\n"  # tie
    "629;NA;1838;551953;2016-03-20\n"
    "629;NA;7659;728961;2016-03-21\n"  # the session crosses midnight
)


def test_diginetica_fixture_parsed_exactly(tmp_path: Path) -> None:
    result = read_diginetica(_write(tmp_path / "train-item-views.csv", DIGINETICA))
    events = result.events
    assert result.format == "diginetica" and result.n_rows_read == 7
    assert list(events.columns) == ["user", "item", "timestamp"]
    assert events["user"].tolist() == [1, 1, 1, 2, 2, 629, 629]
    assert events["item"].tolist() == [81766, 31331, 32118, 9654, 33043, 1838, 7659]
    may9, mar20 = _utc("2016-05-09 00:00:00"), _utc("2016-03-20 00:00:00")
    assert events["timestamp"].tolist() == [
        may9 + 526.309,
        may9 + 1031.018,
        may9 + 243.569,
        may9 + 75.848,
        may9 + 75.848,
        mar20 + 551.953,
        mar20 + 728.961,  # from the session's first date, not 2016-03-21
    ]
    assert read_dataset("diginetica", tmp_path).n_rows_read == 7


def test_diginetica_bad_input(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", DIGINETICA + "3;NA;1;100;09/05/2016\n")
    with pytest.raises(DataFormatError) as info:
        read_diginetica(path)
    assert str(info.value) == (
        f"{path}:9: column 'eventdate': expected a date like '2016-05-09' (YYYY-MM-DD), "
        "got '09/05/2016'"
    )
    path = _write(tmp_path / "b.csv", DIGINETICA + "3;NA;1;soon;2016-05-09\n")
    with pytest.raises(DataFormatError, match=r"b\.csv:9: column 'timeframe': expected a number"):
        read_diginetica(path)
    path = _write(tmp_path / "c.csv", DIGINETICA + "3;NA;1;100\n")
    with pytest.raises(DataFormatError, match=r"c\.csv:9: expected 5 fields, got 4"):
        read_diginetica(path)
    path = _write(tmp_path / "d.csv", "session_id;user_id;item_id;eventdate\n1;NA;2;2016-05-09\n")
    with pytest.raises(
        DataFormatError, match=r"d\.csv:1: column 'timeframe': missing from the header"
    ):
        read_diginetica(path)
    skipped = read_diginetica(tmp_path / "a.csv", on_bad_rows="skip")
    assert skipped.n_rows_read == 8 and skipped.n_bad_rows_skipped == 1
    assert len(skipped.events) == 7


# --------------------------------------------------------------------------- KuaiRec

KUAIREC = (
    "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
    "14,148,4381,6067,2020-07-05 05:27:48.378,20200705.0,1593898068.378,0.722103\n"
    "14,183,11635,6100,2020-07-05 05:28:00.057,20200705.0,1593898080.057,1.907377\n"
    "19,3649,22422,10867,2020-07-05 05:29:09.479,20200705.0,1593898149.479,\n"
)


def test_kuairec_fixture_parsed_exactly(tmp_path: Path) -> None:
    result = read_kuairec(_write(tmp_path / "small_matrix.csv", KUAIREC))
    events = result.events
    assert result.format == "kuairec" and result.n_rows_read == 3
    assert list(events.columns) == [
        "user",
        "item",
        "timestamp",
        "duration",
        "video_duration",
        "watch_ratio",
    ]
    assert events["user"].tolist() == [14, 14, 19]
    assert events["item"].tolist() == [148, 183, 3649]
    assert events["timestamp"].tolist() == [1593898068.378, 1593898080.057, 1593898149.479]
    assert events["duration"].tolist() == [4.381, 11.635, 22.422]
    assert events["video_duration"].tolist() == [6.067, 6.1, 10.867]
    assert events["watch_ratio"].tolist()[:2] == [0.722103, 1.907377]
    assert np.isnan(events["watch_ratio"].iloc[2])


def test_kuairec_bad_input(tmp_path: Path) -> None:
    no_time = "14,3649,22422,10867,,,,2.063311\n"
    path = _write(tmp_path / "a.csv", KUAIREC + no_time)
    with pytest.raises(DataFormatError) as info:
        read_kuairec(path)
    assert str(info.value) == f"{path}:5: column 'timestamp': missing value"
    skipped = read_kuairec(path, on_bad_rows="skip")
    assert skipped.n_rows_read == 4 and skipped.n_bad_rows_skipped == 1
    assert skipped.events["item"].tolist() == [148, 183, 3649]
    negative = "14,3649,-5,10867,2020-07-05 05:29:09.479,20200705.0,1593898149.479,0.1\n"
    path = _write(tmp_path / "b.csv", KUAIREC + negative)
    with pytest.raises(DataFormatError) as info:
        read_kuairec(path)
    assert str(info.value) == (
        f"{path}:5: column 'play_duration': expected a non-negative duration, got '-5'"
    )
    nan_time = "14,3649,22422,10867,,,nan,2.063311\n"
    with pytest.raises(DataFormatError, match=r"c\.csv:5: column 'timestamp': missing value"):
        read_kuairec(_write(tmp_path / "c.csv", KUAIREC + nan_time))
    header = "user_id,video_id,play_duration,time,date,timestamp,watch_ratio\n"
    with pytest.raises(DataFormatError, match=r"d\.csv:1: column 'video_duration': missing"):
        read_kuairec(_write(tmp_path / "d.csv", header + "1,2,3,,,4,0.5\n"))


# --------------------------------------------------------------------------- read_dataset


def test_read_dataset_dispatches_and_rejects_unknown_formats(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,timestamp\n1,2,3\n")
    assert read_dataset("csv", path).format == "csv"
    assert read_dataset("csv", path, sep=",").n_rows_read == 1
    assert read_dataset("taobao", _write(tmp_path / "t.csv", TAOBAO)).format == "taobao"
    ratings = _write(tmp_path / "ratings.dat", "1::2::3::4\n")
    assert read_dataset("movielens", ratings).format == "movielens-dat"
    with pytest.raises(ValueError, match="unknown data format 'criteo2'.*'kuairec'"):
        read_dataset("criteo2", path)
    with pytest.raises(ValueError, match="takes no options"):
        read_dataset("taobao", path, sep=",")
    with pytest.raises(ValueError, match="on_bad_rows"):
        read_dataset("taobao", path, on_bad_rows="ignore")


# --------------------------------------------------------------------------- shared samples


def test_shared_taobao_sample() -> None:
    result = read_dataset("taobao", _shared_file("taobao-userbehavior-subset/UserBehavior.csv"))
    events = result.events
    assert len(events) == result.n_rows_read == 84_287
    assert events["user"].nunique() == 814
    assert events["item"].nunique() == 55_233
    assert events["category"].nunique() == 2_911
    counts = events["behavior"].value_counts().to_dict()
    assert counts == {"pv": 75_693, "cart": 4_494, "fav": 2_351, "buy": 1_749}


def test_shared_yoochoose_prepared_sample() -> None:
    folder = "yoochoose-rsc15-100k-prepared"
    train = read_yoochoose_prepared(_shared_file(f"{folder}/yoochoose-clicks-100k_train_full.txt"))
    test = read_yoochoose_prepared(_shared_file(f"{folder}/yoochoose-clicks-100k_test.txt"))
    assert len(train.events) == train.n_rows_read == 70_278
    assert len(test.events) == test.n_rows_read == 13_568
    assert train.events["timestamp"].iloc[0] > 1.39e9
    # The test sessions come after the training ones (a temporal split of sessions).
    assert not set(train.events["user"]) & set(test.events["user"])


def test_shared_diginetica_sample() -> None:
    result = read_diginetica(_shared_file("diginetica-sample/sample_train-item-views.csv"))
    events = result.events
    assert len(events) == result.n_rows_read == 12_391
    assert events["user"].nunique() == 2_986
    assert events["item"].nunique() == 7_139
    # Within a session, time order is timeframe order.
    ordered = events.sort_values(["user", "timestamp"], kind="stable")
    assert ordered.groupby("user")["timestamp"].diff().dropna().ge(0).all()


@pytest.mark.parametrize(
    ("fmt", "text", "bad_row"),
    [
        ("taobao", TAOBAO, "1,2,3,pv,soon\n"),
        ("tianchi", TIANCHI, "1,2,9,,4,2014-12-08 18\n"),
        ("yoochoose", YOOCHOOSE, "1,soon,2,S\n"),
        ("yoochoose_prepared", PREPARED, "1\t2\n"),
        ("diginetica", DIGINETICA, "1;NA;2;3;soon\n"),
        ("kuairec", KUAIREC, "1,2,-3,4,,,5,0.5\n"),
    ],
)
def test_line_by_line_parser_agrees_with_the_fast_one(
    tmp_path: Path, fmt: str, text: str, bad_row: str
) -> None:
    """A block with a bad row is parsed line by line; its good rows must read the same."""
    clean = read_dataset(fmt, _write(tmp_path / "clean.txt", text))
    header, _, body = text.partition("\n") if fmt not in ("taobao", "yoochoose") else ("", "", text)
    head = header + "\n" if header else ""
    lines = body.splitlines(keepends=True)
    dirty = head + "".join(lines[:2]) + bad_row + "".join(lines[2:])
    skipped = read_dataset(fmt, _write(tmp_path / "dirty.txt", dirty), on_bad_rows="skip")
    assert skipped.n_bad_rows_skipped == 1
    assert skipped.n_rows_read == clean.n_rows_read + 1
    pd.testing.assert_frame_equal(skipped.events, clean.events)
    bad_line = 3 + (1 if header else 0)
    with pytest.raises(DataFormatError, match=rf"dirty\.txt:{bad_line}: "):
        read_dataset(fmt, tmp_path / "dirty.txt")
