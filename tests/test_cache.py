"""Tests for durgru_jax.data.cache: keys, round trips, atomic writes, memory maps, speed."""

from __future__ import annotations

import dataclasses
import mmap
import os
import time

import ml_collections
import numpy as np
import pandas as pd
import pytest

from durgru_jax.base_config import get_base_config
from durgru_jax.data import cache
from durgru_jax.data.dataset import Prepared, PrepConfig, eval_examples, prepare, train_windows


def _events(n_users: int, n_items: int, n_events: int, seed: int = 0, str_items: bool = False):
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, n_events)
    return pd.DataFrame(
        {
            "user": rng.integers(0, n_users, n_events),
            "item": [f"i{i}" for i in item] if str_items else item,
            "timestamp": rng.integers(0, 90 * 86400, n_events).astype(float),
            "duration": rng.lognormal(3.0, 1.0, n_events),
            "rating": rng.integers(1, 6, n_events).astype(float),
            "behavior": rng.choice(np.array(["pv", "cart", "fav", "buy"]), n_events),
        }
    )


def _prepared(str_items: bool = False, **kw) -> Prepared:
    kw.setdefault("max_len", 8)
    return prepare(_events(60, 40, 1500, str_items=str_items), PrepConfig(**kw))


def _assert_same(a: Prepared, b: Prepared) -> None:
    for f in dataclasses.fields(Prepared):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray), f.name
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            if x.dtype == object:
                assert x.tolist() == y.tolist(), f.name
                assert [type(v) for v in x.tolist()] == [type(v) for v in y.tolist()], f.name
            else:
                np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name
            assert type(x) is type(y), f.name


def _is_memory_mapped(arr: np.ndarray) -> bool:
    base = arr
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


@pytest.mark.parametrize("str_items", [False, True])
def test_round_trip_all_fields(tmp_path, str_items):
    p = _prepared(str_items=str_items, hour_buckets=4)
    assert p.item_ids[0] is None
    path = cache.save_prepared(p, tmp_path, "k1")
    assert os.path.isdir(path) and os.path.basename(path) == "k1"
    q = cache.load_prepared(tmp_path, "k1")
    assert q is not None
    _assert_same(p, q)
    # Downstream code works unchanged on the memory-mapped arrays.
    for split in ("valid", "test"):
        ea, eb = eval_examples(p, split), eval_examples(q, split)
        for k in ea:
            np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)
    wa, wb = train_windows(p), train_windows(q)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_loaded_arrays_are_memory_mapped_and_read_only(tmp_path):
    p = _prepared()
    cache.save_prepared(p, tmp_path, "k")
    q = cache.load_prepared(tmp_path, "k")
    for f in dataclasses.fields(Prepared):
        v = getattr(q, f.name)
        if isinstance(v, np.ndarray) and v.dtype != object and v.size:
            assert type(v) is np.ndarray, f.name  # a plain view, not the np.memmap subclass
            assert _is_memory_mapped(v), f.name
            assert not v.flags.writeable, f.name
    picked = q.item[np.array([0, 3, 5])]  # fancy indexing gives an ordinary, writable array
    assert type(picked) is np.ndarray and picked.flags.writeable
    with pytest.raises(ValueError):
        q.item[0] = 1


def test_absent_incomplete_or_foreign_entries_load_as_none(tmp_path):
    assert cache.load_prepared(tmp_path, "nothing") is None
    p = _prepared()
    entry = cache.save_prepared(p, tmp_path, "k")
    os.remove(os.path.join(entry, "item.npy"))  # a damaged entry
    assert cache.load_prepared(tmp_path, "k") is None
    # save replaces the damaged entry
    cache.save_prepared(p, tmp_path, "k")
    assert cache.load_prepared(tmp_path, "k") is not None
    # a truncated file (e.g. a crash before the data reached the disk)
    with open(os.path.join(entry, "timestamp.npy"), "r+b") as f:
        f.truncate(100)
    assert cache.load_prepared(tmp_path, "k") is None
    cache.save_prepared(p, tmp_path, "k")
    _assert_same(p, cache.load_prepared(tmp_path, "k"))
    assert os.listdir(tmp_path) == ["k"]
    # another cache version
    meta = os.path.join(entry, "meta.json")
    text = (
        open(meta)
        .read()
        .replace(
            f'"cache_version": {cache.CACHE_VERSION}', f'"cache_version": {cache.CACHE_VERSION + 1}'
        )
    )
    with open(meta, "w") as f:
        f.write(text)
    assert cache.load_prepared(tmp_path, "k") is None
    os.remove(meta)
    assert cache.load_prepared(tmp_path, "k") is None


def _touch(path, mtime_ns):
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_key_depends_on_config_size_and_mtime_only(tmp_path):
    src = tmp_path / "u.data"
    src.write_text("1\t2\t3\t4\n")
    t = 1_700_000_000_000_000_000
    _touch(src, t)
    cfg = get_base_config().data
    cfg.source, cfg.path = "movielens", str(src)
    k = cache.cache_key(cfg, [str(src)])
    assert len(k) == 32 and int(k, 16) >= 0
    # Not otherwise: same inputs, a plain dict, reordered keys, another process.
    assert cache.cache_key(cfg, [str(src)]) == k
    as_dict = cfg.to_dict()
    assert cache.cache_key(as_dict, [str(src)]) == k
    assert cache.cache_key(dict(reversed(list(as_dict.items()))), [str(src)]) == k
    assert cache.cache_key(cfg, [os.path.relpath(src)]) == k  # same file, relative path
    # Keys that only say where to cache / download do not matter.
    assert cache.cache_key({**as_dict, "cache_dir": "/elsewhere"}, [str(src)]) == k
    # Config changes.
    for key, value in [("max_len", 7), ("on_bad_rows", "skip"), ("hour_buckets", 0)]:
        other = ml_collections.ConfigDict(as_dict)
        other[key] = value
        assert cache.cache_key(other, [str(src)]) != k, key
    other = ml_collections.ConfigDict(as_dict)
    other.columns.rating = "stars"
    assert cache.cache_key(other, [str(src)]) != k
    assert cache.cache_key(cfg, [str(src)], extra={"seed": 1}) != k
    assert cache.cache_key(cfg, [str(src)], extra={"seed": 1}) != cache.cache_key(
        cfg, [str(src)], extra={"seed": 2}
    )
    # The source changes: mtime only, then size with the mtime restored.
    _touch(src, t + 1)
    k_mtime = cache.cache_key(cfg, [str(src)])
    assert k_mtime != k
    src.write_text("1\t2\t3\t4\n5\t6\t7\t8\n")
    _touch(src, t)
    k_size = cache.cache_key(cfg, [str(src)])
    assert k_size not in (k, k_mtime)
    with pytest.raises(FileNotFoundError):
        cache.cache_key(cfg, [str(tmp_path / "missing")])


def test_key_follows_the_code_of_every_data_module(tmp_path, monkeypatch):
    names = {f.relative_to(cache._PKG).as_posix() for f in cache.pipeline_files()}
    # The readers package (the parsing code) is covered, not only the top-level modules.
    assert {"data/cache.py", "data/readers/generic.py", "duration.py"} <= names
    module = tmp_path / "reader.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(cache, "pipeline_files", lambda: [module])
    k = cache.cache_key({"source": "synthetic"}, [])
    assert cache.cache_key({"source": "synthetic"}, []) == k
    module.write_text("x = 2\n")
    assert cache.cache_key({"source": "synthetic"}, []) != k


def test_synthetic_keys_on_config_alone(tiny_config):
    k = cache.cache_key(tiny_config.data, [])
    assert k == cache.cache_key(tiny_config.data.to_dict(), [])
    tiny_config.data.synthetic.n_users += 1
    assert cache.cache_key(tiny_config.data, []) != k


def test_failed_write_leaves_no_entry_and_keeps_previous(tmp_path, monkeypatch):
    p = _prepared()
    old = cache.save_prepared(p, tmp_path, "old")
    before = {f: os.stat(os.path.join(old, f)).st_mtime_ns for f in os.listdir(old)}
    real_save = np.save
    calls = {"n": 0}

    def flaky_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk full (simulated)")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(OSError, match="simulated"):
        cache.save_prepared(_prepared(max_len=5), tmp_path, "new")
    assert calls["n"] == 4
    assert os.listdir(tmp_path) == ["old"]  # no new entry, no temporary directory
    assert cache.load_prepared(tmp_path, "new") is None
    # The previous entry is intact, and a writer of the same key leaves it as it is.
    calls["n"] = 0
    assert cache.save_prepared(_prepared(max_len=5), tmp_path, "old") == old
    assert {f: os.stat(os.path.join(old, f)).st_mtime_ns for f in os.listdir(old)} == before
    loaded = cache.load_prepared(tmp_path, "old")
    assert loaded is not None
    _assert_same(p, loaded)
    assert os.listdir(tmp_path) == ["old"]


def test_failed_rewrite_of_a_damaged_entry_leaves_nothing_half_written(tmp_path, monkeypatch):
    entry = cache.save_prepared(_prepared(), tmp_path, "k")
    os.remove(os.path.join(entry, "dur.npy"))

    def failing_save(*args, **kwargs):
        raise OSError("simulated")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError):
        cache.save_prepared(_prepared(), tmp_path, "k")
    assert cache.load_prepared(tmp_path, "k") is None
    assert [d for d in os.listdir(tmp_path) if d != "k"] == []


def test_concurrent_writer_wins(tmp_path, monkeypatch):
    """If another process completes the entry while we write, ours is discarded."""
    p = _prepared()
    real_write = cache._write_entry
    raced = []

    def write_then_race(prepared, directory, meta):
        real_write(prepared, directory, meta)
        if not raced:
            raced.append(1)
            cache.save_prepared(prepared, tmp_path, "k")  # the "other process" finishes first

    monkeypatch.setattr(cache, "_write_entry", write_then_race)
    assert cache.save_prepared(p, tmp_path, "k") == str(tmp_path / "k")
    assert raced and os.listdir(tmp_path) == ["k"]
    assert cache.load_prepared(tmp_path, "k") is not None


def test_cached_prepare_hit_and_miss(tmp_path):
    src = tmp_path / "events.csv"
    src.write_text("x")
    cfg = {"source": "csv", "path": str(src), "max_len": 8}
    built = []

    def build():
        built.append(1)
        return _prepared()

    p1, hit1 = cache.cached_prepare(cfg, [str(src)], tmp_path / "c", build)
    p2, hit2 = cache.cached_prepare(cfg, [str(src)], tmp_path / "c", build)
    assert (hit1, hit2) == (False, True) and len(built) == 1
    _assert_same(p1, p2)
    os.utime(src, ns=(1, 1))  # the source changed: miss
    _, hit3 = cache.cached_prepare(cfg, [str(src)], tmp_path / "c", build)
    assert not hit3 and len(built) == 2

    def broken():
        raise ValueError("bad row")

    cfg2 = {**cfg, "max_len": 9}
    with pytest.raises(ValueError, match="bad row"):
        cache.cached_prepare(cfg2, [str(src)], tmp_path / "c", broken)
    assert len([d for d in os.listdir(tmp_path / "c")]) == 2  # nothing new, nothing removed


def test_cached_prepare_missing_source_defers_to_the_reader(tmp_path):
    def build():
        raise FileNotFoundError("reader: no such file x.csv")

    with pytest.raises(FileNotFoundError, match="reader"):
        cache.cached_prepare({}, [str(tmp_path / "x.csv")], tmp_path, build)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "here"))
    assert cache.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(cache.ENV_VAR)
    assert str(cache.default_cache_dir()).endswith(os.path.join(".cache", "durgru_jax"))


def test_cli_list_and_clear(tmp_path, capsys):
    cache.save_prepared(_prepared(), tmp_path, "aaa", description={"config": {"source": "x"}})
    cache.save_prepared(_prepared(), tmp_path, "bbb")
    assert cache.main(["--dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "aaa" in out and "bbb" in out and "source=x" in out
    cache.main(["--dir", str(tmp_path), "clear", "aaa"])
    assert os.listdir(tmp_path) == ["bbb"]
    cache.main(["--dir", str(tmp_path), "clear"])
    assert os.listdir(tmp_path) == []


def test_loading_is_much_faster_than_preparing(tmp_path):
    """~1M events: loading the entry must beat `prepare` clearly (loose bound: 3x)."""
    events = _events(n_users=20_000, n_items=50_000, n_events=1_000_000, seed=1)
    cfg = PrepConfig(max_len=50, hour_buckets=4)
    t0 = time.perf_counter()
    p = prepare(events, cfg)
    t_prepare = time.perf_counter() - t0
    cache.save_prepared(p, tmp_path, "big")
    t_load = min(_timed_load(tmp_path) for _ in range(3))
    print(f"prepare {t_prepare:.3f} s, load {t_load:.4f} s, ratio {t_prepare / t_load:.0f}x")
    assert t_load < t_prepare / 3


def _timed_load(directory) -> float:
    t0 = time.perf_counter()
    q = cache.load_prepared(directory, "big")
    dt = time.perf_counter() - t0
    assert q is not None and q.info["n_events"] == 1_000_000
    return dt


def test_jsonable_exact_mode_keeps_what_is_read_back() -> None:
    """The cache's meta.json uses `run_lib.jsonable(exact=True)`: NaN stays a float (JSON's
    NaN), arrays become lists, and a type JSON cannot hold is refused naming the file."""
    from durgru_jax import run_lib

    value = {1: (np.int64(2), np.float32(np.nan)), "a": np.arange(3), "b": None}
    exact = run_lib.jsonable(value, exact=True)
    assert exact["1"][0] == 2 and type(exact["1"][0]) is int and np.isnan(exact["1"][1])
    assert exact["a"] == [0, 1, 2] and exact["b"] is None
    assert run_lib.jsonable(value)["1"] == [2, "nan"]  # results files: non-finite as strings
    with pytest.raises(TypeError, match=r"cannot store in meta\.json: a object is not JSON"):
        cache._jsonable({"x": object()})
