"""Preprocessing benchmark of the Criteo pipeline on a generated file of the real format.

``python launch.py --config configs/criteo.py:bench --workdir W [--config.bench.rows=N]``

1. writes ``W/criteo_bench.txt``: ``bench.rows`` rows in the Kaggle ``train.txt`` format
   (`durgru_jax.ctr.synthetic`, Criteo-like cardinalities and missing rates);
2. runs `durgru_jax.ctr.criteo.prepare` on it in a fresh subprocess (so that its peak
   resident memory, ``VmHWM``, is the pipeline's own and not this process's) and measures
   wall time, CPU time (user and system) and rows/s;
3. runs it again in another subprocess, now served from the cache, for the cache speed-up;
4. writes ``W/criteo_bench.json`` with the figures, the targets (>= 500k rows/s,
   peak RSS < 4 GB at 45M rows) and the machine's load average, since other processes on a
   2-core machine slow the measurement down.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

from absl import logging

from durgru_jax.ctr import synthetic
from durgru_jax.files import write_atomic

TARGET_ROWS_PER_S = 500_000
TARGET_PEAK_RSS = 4 * 1024**3


def peak_rss_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` of /proc/self/status (Linux; not
    inherited from the parent, unlike ``ru_maxrss``, which Linux carries across exec), else
    ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


def _child(path: str, cache_dir: str, options_json: str) -> None:
    """Subprocess body: prepare and print one JSON line of measurements."""
    from durgru_jax.ctr import criteo

    options = json.loads(options_json)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    prepared = criteo.prepare(path, cache_dir, **options)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    rss = peak_rss_bytes()
    out = {
        "rows": int(prepared.meta["rows"]),
        "from_cache": prepared.from_cache,
        "wall_s": wall,
        "cpu_s": user + system,
        "user_s": user,
        "system_s": system,
        "peak_rss_bytes": rss,
        "phases_s": prepared.meta["seconds"],
        "vocab_tokens": int(sum(prepared.meta["vocab_sizes"])),
        "distinct_values": int(sum(prepared.meta["distinct_values_all_rows"])),
    }
    print("BENCH " + json.dumps(out), flush=True)


def measure(path: str, cache_dir: str, options: dict) -> dict:
    """Run `_child` in a subprocess and return its measurements."""
    code = "import sys; from durgru_jax.ctr.bench import _child; _child(*sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, path, cache_dir, json.dumps(options)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return json.loads(line[len("BENCH ") :])


def run(config, workdir: str) -> dict:
    from durgru_jax.provenance import provenance  # called after the measured subprocesses
    from durgru_jax.run_lib import write_json  # jax: not needed by the measured subprocess

    b, d = config.bench, config.data
    os.makedirs(workdir, exist_ok=True)
    rows = int(b.rows)
    path = os.path.join(workdir, "criteo_bench.txt")
    stamp = path + ".json"
    want = {"rows": rows, "seed": int(b.seed), "generator": 1}
    t0 = time.perf_counter()
    reuse = os.path.exists(path) and os.path.exists(stamp) and json.load(open(stamp)) == want
    if not reuse:
        logging.info("criteo bench: generating %d rows into %s", rows, path)
        synthetic.write_criteo_tsv(path, rows, seed=int(b.seed))
        write_atomic(stamp, lambda f: json.dump(want, f))
    gen_s = time.perf_counter() - t0
    size = os.path.getsize(path)
    cache_dir = os.path.join(workdir, "criteo_bench_cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    options = {
        "min_count": int(d.min_count),
        "valid_ratio": float(d.valid_ratio),
        "test_ratio": float(d.test_ratio),
        "int_transform": d.int_transform,
        "on_bad_rows": d.on_bad_rows,
        "block_bytes": int(d.block_mib * (1 << 20)),
        "workers": int(d.workers),
    }
    load_before = os.getloadavg()
    first = measure(path, cache_dir, options)
    load_after = os.getloadavg()
    second = measure(path, cache_dir, options)
    rate = first["rows"] / first["wall_s"]
    result = {
        "rows": first["rows"],
        "file_bytes": size,
        "generate_seconds": gen_s if not reuse else None,
        "prepare": first,
        "rows_per_second": rate,
        "rows_per_cpu_second": first["rows"] / max(first["cpu_s"], 1e-9),
        "mb_per_second": size / first["wall_s"] / 1e6,
        "peak_rss_gib": first["peak_rss_bytes"] / 1024**3,
        "cached": second,
        "cache_speedup": first["wall_s"] / max(second["wall_s"], 1e-9),
        "targets": {
            "rows_per_second": TARGET_ROWS_PER_S,
            "peak_rss_bytes": TARGET_PEAK_RSS,
            "rows_per_second_met": rate >= TARGET_ROWS_PER_S,
            "peak_rss_met": first["peak_rss_bytes"] < TARGET_PEAK_RSS,
            "cache_10x_met": first["wall_s"] >= 10 * second["wall_s"],
        },
        "machine": {
            "provenance": provenance(),  # the commit, CPU and libraries
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "options": options,
    }
    write_json(os.path.join(workdir, "criteo_bench.json"), result)
    logging.info(
        "criteo bench: %d rows, %.0f rows/s (%.0f per CPU-second), peak RSS %.2f GiB, "
        "cache %.0fx faster",
        result["rows"], rate, result["rows_per_cpu_second"], result["peak_rss_gib"],
        result["cache_speedup"],
    )  # fmt: skip
    shutil.rmtree(cache_dir, ignore_errors=True)
    if not b.keep_file:
        os.remove(path)
        os.remove(stamp)
    return result
