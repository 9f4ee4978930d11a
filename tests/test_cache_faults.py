"""A damaged data-cache entry (bytes changed in place, size unchanged) is detected and rebuilt;
a cache write that runs out of disk space leaves nothing behind and says so (docs/faults.md)."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os

import numpy as np
import pandas as pd
import pytest

from durgru_jax import fault_injection
from durgru_jax.data import cache
from durgru_jax.data.dataset import Prepared, PrepConfig, prepare

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- data cache


def _prepared(seed: int = 0) -> Prepared:
    rng = np.random.default_rng(seed)
    n = 1500
    events = pd.DataFrame(
        {
            "user": rng.integers(0, 60, n),
            "item": rng.integers(0, 40, n),
            "timestamp": rng.integers(0, 90 * 86400, n).astype(float),
            "duration": rng.lognormal(3.0, 1.0, n),
        }
    )
    return prepare(events, PrepConfig(max_len=8))


@pytest.fixture
def small_blocks(monkeypatch):
    """256-byte blocks: the tiny arrays then have sampled and unsampled blocks."""
    monkeypatch.setattr(cache, "BLOCK", 256)
    return 256


def _sampled_ranges(size: int, block: int) -> list[tuple[int, int]]:
    n = cache.SAMPLE_BLOCKS
    return [
        (i * (size - block) // (n - 1), i * (size - block) // (n - 1) + block) for i in range(n)
    ]


def test_file_checksum_by_hand(tmp_path, small_blocks):
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    expected = hashlib.sha256(b"3\0abc").hexdigest()
    assert cache.file_checksum(small, "sample") == cache.file_checksum(small, "full") == expected
    data = bytes(range(256)) * 20  # 5120 bytes: 20 blocks, 8 of them sampled
    big = tmp_path / "big"
    big.write_bytes(data)
    starts = [0, 694, 1389, 2084, 2779, 3474, 4169, 4864]  # i * (5120 - 256) // 7
    assert [s for s, _ in _sampled_ranges(len(data), 256)] == starts
    h = hashlib.sha256(b"5120\0")
    for s in starts:
        h.update(data[s : s + 256])
    assert cache.file_checksum(big, "sample") == h.hexdigest()
    assert cache.file_checksum(big, "full") == hashlib.sha256(b"5120\0" + data).hexdigest()


def _counting_build(seed: int = 0):
    calls = []

    def build() -> Prepared:
        calls.append(1)
        return _prepared(seed)

    return build, calls


def _damage_warnings(caplog) -> list[str]:
    """The warnings of loads that found a damaged entry (not those of its replacement)."""
    return [
        r.getMessage()
        for r in caplog.records
        if "damaged entry" in r.getMessage() and "ignored" in r.getMessage()
    ]


def test_change_in_a_sampled_block_is_detected_and_rebuilt(tmp_path, caplog, small_blocks):
    build, calls = _counting_build()
    cfg = {"source": "synthetic", "max_len": 8}
    original, hit = cache.cached_prepare(cfg, [], tmp_path, build)
    assert not hit
    entry = tmp_path / cache.cache_key(cfg, [])
    path = entry / "timestamp.npy"
    size = os.path.getsize(path)
    assert size > cache.SAMPLE_BLOCKS * small_blocks  # really sampled, not hashed whole
    fault_injection.flip_byte(
        path, size - 1
    )  # in the last sampled block: the last timestamp changes
    assert np.load(path)[-1] != original.timestamp[-1]
    with caplog.at_level(logging.WARNING):
        again, hit = cache.cached_prepare(cfg, [], tmp_path, build)
    assert not hit and len(calls) == 2
    (warning,) = _damage_warnings(caplog)
    assert str(entry) in warning and "array 'timestamp'" in warning
    assert "does not match its sample checksum" in warning
    np.testing.assert_array_equal(again.timestamp, original.timestamp)
    # The entry was rebuilt: the next run hits it, with the right values.
    served, hit = cache.cached_prepare(cfg, [], tmp_path, build)
    assert hit and len(calls) == 2
    np.testing.assert_array_equal(served.timestamp, original.timestamp)
    assert sorted(os.listdir(tmp_path)) == [entry.name]


def test_full_check_detects_a_change_outside_the_sampled_blocks(
    tmp_path, caplog, monkeypatch, small_blocks
):
    build, calls = _counting_build()
    cfg = {"source": "synthetic", "max_len": 8}
    original, _ = cache.cached_prepare(cfg, [], tmp_path, build)
    path = tmp_path / cache.cache_key(cfg, []) / "timestamp.npy"
    size = os.path.getsize(path)
    ranges = _sampled_ranges(size, small_blocks)
    offset = ranges[3][1] + 8  # just after the 4th sampled block, before the 5th
    assert all(not (s <= offset < e) for s, e in ranges) and offset > 128  # data, not header
    fault_injection.flip_byte(path, offset)
    # The sampled check cannot see it (this is what "sample" means) ...
    served, hit = cache.cached_prepare(cfg, [], tmp_path, build)
    assert hit and not np.array_equal(served.timestamp, original.timestamp)
    del served
    # ... the full check, asked for by the environment or by the caller, does.
    monkeypatch.setenv(cache.VERIFY_ENV_VAR, "full")
    with caplog.at_level(logging.WARNING):
        rebuilt, hit = cache.cached_prepare(cfg, [], tmp_path, build)
    assert not hit and len(calls) == 2
    (warning,) = _damage_warnings(caplog)
    assert "array 'timestamp'" in warning and "does not match its full checksum" in warning
    np.testing.assert_array_equal(rebuilt.timestamp, original.timestamp)
    monkeypatch.delenv(cache.VERIFY_ENV_VAR)
    assert cache.load_prepared(tmp_path, path.parent.name, verify="full") is not None
    monkeypatch.setenv(cache.VERIFY_ENV_VAR, "everything")
    with pytest.raises(ValueError, match=r"\$DURGRU_CACHE_VERIFY='everything' is not one of"):
        cache.cached_prepare(cfg, [], tmp_path, build)


def test_changed_meta_or_an_entry_without_checksums_is_rebuilt(tmp_path, caplog):
    p = _prepared()
    entry = cache.save_prepared(p, tmp_path, "k")
    meta_path = os.path.join(entry, cache.META)
    meta = json.load(open(meta_path))
    meta["scalars"]["info"]["n_events"] += 1  # valid JSON, wrong number
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with caplog.at_level(logging.WARNING):
        assert cache.load_prepared(tmp_path, "k") is None
    assert any("meta.json changed" in m for m in _damage_warnings(caplog))
    cache.save_prepared(p, tmp_path, "k")  # replaced
    assert cache.load_prepared(tmp_path, "k").info["n_events"] == p.info["n_events"]
    # An entry as the first cache version wrote it: no checksums, version 1.
    meta = json.load(open(meta_path))
    for k in ("checksums", "meta_sha256"):
        del meta[k]
    meta["cache_version"] = 1
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with caplog.at_level(logging.INFO):
        assert cache.load_prepared(tmp_path, "k") is None
    assert any("cache version 1, not 2" in r.getMessage() for r in caplog.records)
    cache.save_prepared(p, tmp_path, "k")
    assert "checksums" in json.load(open(meta_path))
    assert cache.load_prepared(tmp_path, "k") is not None


def _enospc_on_call(monkeypatch, n: int) -> dict:
    """np.save writes half of its output, then fails with ENOSPC, on the n-th call."""
    real_save = np.save
    calls = {"n": 0}

    def save(file, arr, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            file.write(b"\x93NUMPY half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(file, arr, **kw)

    monkeypatch.setattr(np, "save", save)
    return calls


def _tree(path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(r, f), path): open(os.path.join(r, f), "rb").read()
        for r, _, files in os.walk(path)
        for f in files
    }


def test_disk_full_during_a_write_leaves_the_previous_entries_and_says_why(
    tmp_path, monkeypatch, caplog
):
    p = _prepared()
    cache.save_prepared(p, tmp_path, "old")
    damaged = cache.save_prepared(p, tmp_path, "k")
    fault_injection.flip_byte(os.path.join(damaged, "item.npy"), 200)
    before = _tree(tmp_path)
    calls = _enospc_on_call(monkeypatch, 3)
    for key in ("new", "k"):  # a new key, and the rewrite of a damaged entry
        calls["n"] = 0
        with pytest.raises(cache.CacheWriteError) as info:
            cache.save_prepared(p, tmp_path, key)
        assert str(info.value) == (
            f"could not write the data cache entry {tmp_path / key}: No space left on device"
        )
        assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
        assert _tree(tmp_path) == before  # no half entry, no temporary directory, no change
    monkeypatch.undo()
    assert cache.load_prepared(tmp_path, "old") is not None
    assert cache.load_prepared(tmp_path, "k") is None  # still seen as damaged
    # Through cached_prepare the run goes on with the data it built, and the log says why.
    _enospc_on_call(monkeypatch, 2)
    build, _ = _counting_build()
    with caplog.at_level(logging.WARNING):
        got, hit = cache.cached_prepare({"source": "synthetic"}, [], tmp_path, build)
    assert not hit and got.info["n_events"] == p.info["n_events"]
    key = cache.cache_key({"source": "synthetic"}, [])
    assert any(
        f"could not write the data cache entry {tmp_path / key}: No space left on device; "
        "the run goes on without caching" in r.getMessage()
        for r in caplog.records
    )
    assert sorted(os.listdir(tmp_path)) == ["k", "old"]
