"""The Criteo CTR task: reader (both Kaggle formats), preprocessing, metrics, models, a run."""

from __future__ import annotations

import errno
import gc
import gzip
import importlib.util
import json
import math
import os
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from durgru_jax import cells
from durgru_jax.ctr import criteo, synthetic
from durgru_jax.ctr import model as ctr_model
from durgru_jax.ctr.metrics import auc, ctr_metrics
from durgru_jax.data.cache import CacheWriteError
from durgru_jax.data.readers import DataFormatError
from durgru_jax.errors import UserError

_SHARED = Path(
    os.environ.get("DURGRU_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
_TINY = _SHARED / "criteo-kaggle-tiny" / "train.tiny.csv"

# Three rows: negative, missing, > 8-digit integers; missing and non-hex categoricals.
_ROWS = [
    ["0", "1", "-3", "", "7", "123456789012", "0", "", "5", "", "", "2", "", "9"]
    + ["68fd1e64", "80e26c9b", "", "7b4723c4"] + ["a73ee510"] * 21 + ["e8b83407"],
    ["1", "", "0", "44", "1", "102", "8", "2", "2", "4", "1", "1", "", "4"]
    + ["68fd1e64", "f0cf0024", "6f67f7e5", "41274cd7"] + ["a73ee510"] * 21 + [""],
    ["0", "2", "-1", "1", "", "1382", "4", "15", "2", "181", "1", "2", "", "2"]
    + ["05db9164", "abc", "fb936136", "7B4723C4"] + ["3b08e48b"] * 21 + ["9727dd16"],
]  # fmt: skip


def _tsv(rows, sep="\t", header=False, ids=False, eol="\n") -> str:
    lines = []
    if header:
        names = (["Id"] if ids else []) + ["Label"] + list(criteo.FIELDS)
        lines.append(sep.join(names))
    for i, r in enumerate(rows):
        lines.append(sep.join(([str(10000000 + i)] if ids else []) + list(r)))
    return eol.join(lines) + eol


def _read(path, **kw):
    blocks = list(criteo.iter_blocks(path, **kw))
    cat = lambda name: np.concatenate([getattr(b, name) for b in blocks])  # noqa: E731
    return {k: cat(k) for k in ("labels", "ints", "ints_missing", "cat_keys", "cats_missing")}


def _check_fixture(got):
    assert got["labels"].tolist() == [0, 1, 0]
    assert got["ints"][0].tolist() == [1, -3, 0, 7, 123456789012, 0, 0, 5, 0, 0, 2, 0, 9]
    assert got["ints_missing"][0].tolist() == [
        False, False, True, False, False, False, True, False, True, True, False, True, False
    ]  # fmt: skip
    assert got["ints"][2, :3].tolist() == [2, -1, 1] and got["ints_missing"][2, 3]
    keys = got["cat_keys"]
    assert criteo.key_to_text(keys[0, :2]).tolist() == [b"68fd1e64", b"80e26c9b"]
    assert got["cats_missing"][0].tolist() == [False, False, True] + [False] * 23
    assert got["cats_missing"][1, 25] and not got["cats_missing"][1, :25].any()
    assert keys[0, 0] == keys[1, 0]  # the same value, the same key
    assert criteo.key_to_text(keys[2, 3]) == b"7B4723C4"  # raw bytes: case is kept
    assert keys[2, 3] != keys[0, 3]
    assert keys[2, 1] >= 2**63  # not 8 characters: hashed, top bit set
    assert keys[0, 2] == 0 and keys[1, 25] == 0  # missing


def test_kaggle_tsv_exact_values(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(_tsv(_ROWS))
    layout = criteo.detect_layout(path)
    assert layout.format == "criteo-tsv" and layout.header_lines == 0 and layout.n_cols == 40
    _check_fixture(_read(path))


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_kaggle_csv_variant_with_id_header_same_values(tmp_path, eol):
    path = tmp_path / "train.csv"
    path.write_text(_tsv(_ROWS, sep=",", header=True, ids=True, eol=eol), newline="")
    layout = criteo.detect_layout(path)
    assert layout.format == "criteo-csv" and layout.header_lines == 1 and layout.n_cols == 41
    assert layout.label_col == 1 and layout.int_cols[0] == 2 and layout.cat_cols[-1] == 40
    _check_fixture(_read(path))


def test_blocks_split_anywhere_give_the_same_rows(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(_tsv(_ROWS * 7).rstrip("\n"))  # no final newline either
    whole = _read(path)
    for block_bytes, workers in ((50, 0), (700, 2)):
        parts = _read(path, block_bytes=block_bytes, workers=workers)
        for k in whole:
            np.testing.assert_array_equal(parts[k], whole[k])
    assert len(whole["labels"]) == 21


def test_synthetic_file_matches_a_reference_parser(tmp_path):
    path = tmp_path / "gen.txt"
    synthetic.write_criteo_tsv(path, 300, seed=1, chunk_rows=128)
    got = _read(path, block_bytes=4096)
    lines = path.read_text().splitlines()
    assert len(lines) == 300 == len(got["labels"])
    for i in (0, 137, 299):
        f = lines[i].split("\t")
        assert len(f) == 40 and got["labels"][i] == int(f[0])
        for j in range(13):
            assert got["ints_missing"][i, j] == (f[1 + j] == "")
            assert got["ints"][i, j] == (int(f[1 + j]) if f[1 + j] else 0)
        for j in range(26):
            v = f[14 + j]
            assert got["cats_missing"][i, j] == (v == "")
            if v:
                assert criteo.key_to_text(got["cat_keys"][i, j]) == v.encode()
    assert (got["ints"][:, 1] < 0).any()  # I2 takes negative values, as in Kaggle


# ----------------------------------------------------------------------------- bad input


def _bad_file(tmp_path, bad_line: str, at: int = 3, n: int = 6, sep="\t") -> Path:
    rows = [sep.join(r) for r in (_ROWS * 3)[:n]]
    rows.insert(at - 1, bad_line)
    path = tmp_path / "train.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


_GOOD = "\t".join(_ROWS[1])


@pytest.mark.parametrize(
    "bad_line, where",
    [
        (_GOOD.rsplit("\t", 1)[0], "expected 40 fields, found 39"),
        (_GOOD + "\tx", "expected 40 fields, found 41"),
        (_GOOD.replace("\t44\t", "\t4.5\t", 1), "column 'I3': not an integer: '4.5'"),
        (_GOOD.replace("\t44\t", "\tabc\t", 1), "column 'I3': not an integer: 'abc'"),
        ("2" + _GOOD[1:], "column 'Label': label must be 0 or 1, got '2'"),
        ("\t" + _GOOD[2:], "column 'Label': label must be 0 or 1, got ''"),
        (_GOOD.replace("f0cf0024", "f0cf\x0124"), "column 'C2': control byte 0x01"),
        (_GOOD.replace("\t44\t", "\t4\u00e9\t", 1), "column 'I3': not an integer: '4\u00e9'"),
    ],
)
def test_bad_row_names_file_line_and_column(tmp_path, bad_line, where):
    path = _bad_file(tmp_path, bad_line, at=4)
    with pytest.raises(DataFormatError) as err:
        _read(path, block_bytes=64)  # several blocks: line numbers carry across them
    assert str(err.value).startswith(f"{path}:4: ")
    assert where in str(err.value)
    assert err.value.line == 4


def test_bad_rows_skipped_and_counted(tmp_path):
    path = _bad_file(tmp_path, _GOOD.replace("\t44\t", "\tabc\t", 1), at=2)
    with open(path, "a") as f:
        f.write("\n\n" + "7" + _GOOD[1:] + "\n")  # blank lines are ignored, not bad
    bad = criteo.BadRows()
    got = _read(path, on_bad_rows="skip", bad=bad)
    assert len(got["labels"]) == 6 and bad.count == 2
    assert bad.examples[0].startswith(f"{path}:2: column 'I3'")
    assert bad.examples[1].startswith(f"{path}:10: column 'Label'")
    out = criteo.prepare(path, tmp_path / "cache", min_count=1, on_bad_rows="skip")
    assert out.meta["n_bad_rows_skipped"] == 2 and out.meta["rows"] == 6
    assert len(out.meta["bad_row_examples"]) == 2


def test_bad_first_row_and_leading_blank_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\n" + _tsv([_ROWS[0][:-1]] + _ROWS))  # blank, then a 39-field row
    with pytest.raises(DataFormatError, match=r"train.txt:2: expected 40 fields, found 39"):
        _read(path)
    bad = criteo.BadRows()
    assert len(_read(path, on_bad_rows="skip", bad=bad)["labels"]) == 3 and bad.count == 1
    csv = tmp_path / "train.csv"
    csv.write_text("\n\n" + _tsv(_ROWS, sep=",", header=True, ids=True))
    assert criteo.detect_layout(csv).header_lines == 3
    _check_fixture(_read(csv))


def test_unreadable_files(tmp_path):
    cases = {
        "empty.txt": (b"", "is empty"),
        "blank.txt": (b"\n\n", "is empty"),
        "train.txt.gz": (gzip.compress(_tsv(_ROWS).encode()), "gzip-compressed"),
        "utf16.txt": (_tsv(_ROWS).encode("utf-16"), "NUL bytes"),
        "header_only.csv": (("Id,Label," + ",".join(criteo.FIELDS) + "\n").encode(), "no data"),
        "no_c26.csv": (("Label," + ",".join(criteo.FIELDS[:-1]) + "\n").encode(), "'c26'"),
        "other.csv": (b"user,item,timestamp\n1,2,3\n", "not a Criteo file"),
        "short.txt": (b"0\t1\t2\n", "expected 40 TAB-separated fields"),
        "test.txt": (_tsv([r[1:] for r in _ROWS]).encode(), "Kaggle test.txt"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataFormatError, match=message):
            _read(path)
    with pytest.raises(FileNotFoundError, match="Kaggle"):
        criteo.detect_layout(tmp_path / "missing.txt")


def test_failed_preprocessing_never_touches_the_cache(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(_tsv(_ROWS * 4))
    cache = tmp_path / "cache"
    first = criteo.prepare(path, cache, min_count=1)
    assert not first.from_cache
    entries = sorted(os.listdir(cache))
    tokens = np.array(first.tokens)
    again = criteo.prepare(path, cache, min_count=1)
    assert again.from_cache and again.dir == first.dir
    with open(path, "a") as f:  # the file changes: a new key, and this run fails
        f.write("0\tbad\n")
    with pytest.raises(DataFormatError, match=r"train.txt:13: expected 40 fields"):
        criteo.prepare(path, cache, min_count=1)
    assert sorted(os.listdir(cache)) == entries  # no partial entry, no temporary folder
    np.testing.assert_array_equal(np.load(Path(first.dir) / "tokens.npy"), tokens)


def test_a_bad_row_stops_the_parsing_threads_at_once(tmp_path):
    # The error's traceback keeps the reader's frames alive; its worker threads must still
    # stop now, not when a later garbage collection closes the reader (a thread join inside
    # a collection can deadlock the process).
    rows = [list(r) for r in _ROWS * 300]
    rows[-1][2] = "x!"  # the last block is bad: the earlier ones are parsed in the threads
    path = tmp_path / "train.txt"
    path.write_text(_tsv(rows))
    gc.disable()
    try:
        with pytest.raises(DataFormatError, match=r"train.txt:900: column 'I2'") as e:
            criteo.prepare(path, tmp_path / "cache", min_count=1, block_bytes=1 << 12)
        deadline = time.monotonic() + 10
        for t in threading.enumerate():
            if t.name.startswith("criteo"):
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threading.enumerate() if t.name.startswith("criteo")]
        assert alive == [] and e.value is not None
    finally:
        gc.enable()
    assert os.listdir(tmp_path / "cache") == []


def test_a_full_disk_names_the_cache_entry_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "train.txt"
    path.write_text(_tsv(_ROWS * 4))
    cache = tmp_path / "cache"
    real = criteo._prepare_into

    def disk_full(out, *args, **kwargs):
        real(out, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(out, "vocab.npz"))

    monkeypatch.setattr(criteo, "_prepare_into", disk_full)
    with pytest.raises(CacheWriteError, match=r"data cache entry .*cache/.*No space left") as e:
        criteo.prepare(path, cache, min_count=1)
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, UserError)
    assert os.listdir(cache) == []  # no partial entry, no temporary folder
    monkeypatch.setattr(criteo, "_prepare_into", real)
    assert not criteo.prepare(path, cache, min_count=1).from_cache  # room again: it is written


def test_cache_key_follows_the_parsing_code(tmp_path, monkeypatch):
    # Both modules are hashed: the parser (criteo_format) as well as the preprocessing.
    assert [f.name for f in criteo.code_files()] == ["criteo.py", "criteo_format.py"]
    path = tmp_path / "train.txt"
    path.write_text(_tsv(_ROWS))
    k = criteo.cache_key(path, {"min_count": 1})
    assert criteo.cache_key(path, {"min_count": 1}) == k
    parser = tmp_path / "criteo_format.py"
    parser.write_bytes(criteo.code_files()[1].read_bytes())
    monkeypatch.setattr(criteo, "code_files", lambda: [parser])
    k_copy = criteo.cache_key(path, {"min_count": 1})
    parser.write_bytes(parser.read_bytes() + b"# an edit\n")
    assert criteo.cache_key(path, {"min_count": 1}) not in (k, k_copy)


# ------------------------------------------------------------------------- preprocessing


def test_int_transform():
    x = np.array([[-3, 0, 2, 3, 10, 1000, 0]])
    miss = np.array([[False] * 6 + [True]])
    out = criteo.transform_ints(x, miss, "sqlog")
    assert out.tolist() == [[-3, 0, 2, 1, 5, 47, 0]]  # floor(ln(x)^2) for x > 2
    assert criteo.transform_ints(x, miss, "identity").tolist() == x.tolist()


def test_vocab_min_count_on_training_rows_only_and_temporal_split(tmp_path):
    # 10 rows: train 0..7, valid 8, test 9. C1: "aaaaaaaa" 3x in train (kept at
    # min_count 3), "bbbbbbbb" 2x in train and in valid/test (OOV), "cccccccc" only in test.
    c1 = ["aaaaaaaa"] * 3 + ["bbbbbbbb"] * 2 + [""] * 3 + ["bbbbbbbb", "cccccccc"]
    rows = []
    for i, v in enumerate(c1):
        r = list(_ROWS[1])
        r[0] = str(i % 2)
        r[14] = v
        r[1] = str(i)  # I1 = row number: rare values
        rows.append(r)
    path = tmp_path / "train.txt"
    path.write_text(_tsv(rows))
    p = criteo.prepare(path, tmp_path / "cache", min_count=3, int_transform="identity")
    assert p.meta["splits"] == {"train": [0, 8], "valid": [8, 9], "test": [9, 10]}
    assert p.split("test") == slice(9, 10)
    j = criteo.FIELDS.index("C1")
    assert p.tokens[:, j].tolist() == [2, 2, 2, 1, 1, 0, 0, 0, 1, 1]
    assert p.meta["vocab_sizes"][j] == 3
    vocab = np.load(Path(p.dir) / "vocab.npz")
    assert criteo.key_to_text(vocab["C1"]).tolist() == [b"aaaaaaaa"]
    assert p.tokens[:, 0].tolist() == [1] * 10  # every I1 value is rare: OOV
    assert p.tokens.dtype == np.int32 and p.labels.dtype == np.int8
    assert p.tokens.shape == (10, 39) and p.labels.tolist() == [0, 1] * 5
    assert p.meta["click_rate"]["train"] == 0.5


def test_codes_fallback_matches_pandas_hash_table():
    rng = np.random.default_rng(0)
    a, b = criteo._Codes(), criteo._Codes(use_pandas=False)
    for _ in range(3):
        keys = rng.integers(0, 50, 200).astype(np.uint64) * np.uint64(2**40)
        np.testing.assert_array_equal(a.codes(keys), b.codes(keys))
    np.testing.assert_array_equal(a.uniques(), b.uniques())
    assert a.size == b.size == len(np.unique(a.uniques()))


@pytest.mark.skipif(not _TINY.exists(), reason="shared Criteo sample not available")
def test_shared_kaggle_sample(tmp_path):
    got = _read(_TINY)
    assert len(got["labels"]) == 1999 and int(got["labels"].sum()) == 418
    # First row: 10000000,0,1,1,5,0,1382,4,15,2,181,1,2,,2,68fd1e64,80e26c9b,...,,3a171ecb,...
    assert got["ints"][0].tolist() == [1, 1, 5, 0, 1382, 4, 15, 2, 181, 1, 2, 0, 2]
    assert got["ints_missing"][0].tolist() == [False] * 11 + [True, False]
    assert criteo.key_to_text(got["cat_keys"][0, [0, 1, 25]]).tolist() == [
        b"68fd1e64", b"80e26c9b", b"9727dd16"
    ]  # fmt: skip
    assert got["cats_missing"][0, 21] and not got["cats_missing"][0, 20]
    p = criteo.prepare(_TINY, tmp_path / "cache", min_count=3)
    assert p.meta["format"] == "criteo-csv" and p.meta["rows"] == 1999
    assert p.meta["splits"]["test"] == [1799, 1999]
    assert int(np.asarray(p.labels).sum()) == 418
    assert all(v >= 2 for v in p.meta["vocab_sizes"])
    assert (p.tokens[:1599] < np.array(p.meta["vocab_sizes"])).all()


# ------------------------------------------------------------------------------- metrics


def test_auc_hand_computed_with_ties():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.3]) == 3.5 / 4  # one tied pair counts 1/2
    assert auc([0, 1, 1, 0], [0.5] * 4) == 0.5
    assert auc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0
    assert math.isnan(auc([1, 1], [0.1, 0.2]))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 7, 300).astype(float)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    brute = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(y, s) == pytest.approx(brute, abs=1e-12)


def test_ctr_metrics_on_probabilities():
    m = ctr_metrics(np.array([0, 1]), np.array([0.25, 0.5]), "test")
    assert m["test/rmse"] == pytest.approx(math.sqrt((0.25**2 + 0.5**2) / 2))
    assert m["test/mae"] == pytest.approx(0.375)
    assert m["test/logloss"] == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2)
    assert m["test/auc"] == 1.0 and m["test/n"] == 2


# -------------------------------------------------------------------------------- models


def test_agru_field_inputs_equal_the_cells_general_form():
    e, h, f = 4, 5, 6

    @jax.jit
    def both(key):
        p = cells.init_agru(key, e, h, f, 1)
        x = jax.random.normal(jax.random.fold_in(key, 1), (3, f, e))
        ones = jnp.ones((3, f))
        ctx = jnp.broadcast_to(jnp.arange(f), (3, f))
        mask, reset = jnp.ones((3, f), bool), jnp.zeros((3, f), bool)
        return [
            (
                cells.agru_inputs(p, x, ones, ctx, mask, reset, "none", rel),
                ctr_model.agru_field_inputs(p, x, rel),
            )
            for rel in (True, False)
        ]

    for want, got in both(jax.random.key(0)):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lr_hashing_stays_in_range():
    tok = jnp.array([[0, 1, 5], [3, 0, 2]], jnp.int32)
    off = np.array([0, 10, 20], np.int32)
    assert ctr_model.lr_feature_index(tok, off, 0).tolist() == [[0, 11, 25], [3, 10, 22]]
    idx = np.asarray(ctr_model.lr_feature_index(tok, off, 4))
    assert idx.min() >= 0 and idx.max() < 16


# ---------------------------------------------------------------------------- end to end


def _criteo_config_module():
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("criteo_config", root / "configs" / "criteo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_config(path, cache, cell="gru"):
    c = _criteo_config_module().get_config()
    c.data.path = str(path)
    c.data.cache_dir = str(cache)
    c.data.min_count = 2
    c.model.cell = cell
    c.model.embed_dim = 4
    c.model.hidden_dim = 8
    c.model.dropout = 0.0
    c.optim.learning_rate = 0.01
    c.train.batch_size = 100
    c.train.epochs = 4
    c.train.eval_every_steps = 0
    c.train.log_every = 5
    c.eval.batch_size = 256
    c.baseline.hash_bits = 12
    c.baseline.batch_size = 100
    c.baseline.epochs = 3
    c.baseline.learning_rate = 0.1
    return c


def test_end_to_end_on_a_generated_file(tmp_path):
    from durgru_jax import ctr

    path = tmp_path / "train.txt"
    synthetic.write_criteo_tsv(path, 2000, seed=3, cardinality_scale=1e-3)
    config = _small_config(path, tmp_path / "cache", cell="agru")
    work = tmp_path / "run"
    results = ctr.run(config, str(work))
    on_disk = json.loads((work / "results.json").read_text())
    assert on_disk["metrics"].keys() == results["metrics"].keys()
    for who in (results["metrics"], results["baselines"]["logistic_regression"]):
        for k in ("auc", "logloss", "rmse", "mae"):
            assert math.isfinite(who[f"test/{k}"]) and math.isfinite(who[f"valid/{k}"])
        assert who["test/auc"] > 0.55  # the label depends on C1, C6, C14, C9 and I1
    assert results["baselines"]["click_rate"]["test/auc"] == 0.5
    assert results["train"]["events_per_second"] > 0 and results["train"]["steps"] > 0
    assert json.loads((work / "config.json").read_text())["task"] == "ctr"
    lines = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert any("valid/auc" in r for r in lines) and lines[-1].get("final")
    assert (work / "params_best.npz").exists()


def test_preprocessing_benchmark_on_a_small_generated_file(tmp_path):
    from durgru_jax import runner

    c = _criteo_config_module().get_config("bench")
    c.bench.rows = 3000
    c.data.min_count = 2
    out = runner.run(c, str(tmp_path))  # the "bench" variant dispatches to ctr.bench.run
    saved = json.loads((tmp_path / "criteo_bench.json").read_text())
    assert saved["rows"] == out["rows"] == 3000 and saved["prepare"]["rows"] == 3000
    assert saved["peak_rss_gib"] > 0 and saved["prepare"]["peak_rss_bytes"] > 0
    assert saved["cached"]["from_cache"] and not saved["prepare"]["from_cache"]
    assert saved["rows_per_second"] > 0 and "rows_per_second_met" in saved["targets"]
    assert not (tmp_path / "criteo_bench.txt").exists()  # keep_file=False
    assert not (tmp_path / "criteo_bench_cache").exists()


def test_missing_file_says_where_to_get_it(tmp_path):
    from durgru_jax.ctr import train as ctr_train
    from durgru_jax.data.download import DatasetNotFoundError

    config = _small_config(tmp_path / "criteo" / "train.txt", tmp_path / "cache")
    with pytest.raises(DatasetNotFoundError, match="extract train.txt"):
        ctr_train.prepare_from_config(config)


def test_configs():
    criteo_config = _criteo_config_module()

    c = criteo_config.get_config()
    assert c.task == "ctr" and c.data.min_count == 10 and not c.bench.enabled
    assert criteo_config.get_config("bench").bench.enabled
    assert criteo_config.get_config("tiny").data.path.endswith("train.tiny.csv")
    with pytest.raises(ValueError, match="unknown criteo variant"):
        criteo_config.get_config("nope")
