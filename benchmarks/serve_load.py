"""Load benchmark of the HTTP service (`durgru_jax.serve`): requests/s and latency percentiles
at several numbers of concurrent clients.

```bash
python benchmarks/serve_load.py --workdir runs/default [--requests 400] [--concurrency 1,8,64]
```

Starts ``python -m durgru_jax.serve`` on 127.0.0.1 at a free port (a subprocess), waits for
``/health``, sends every history length once untimed (each new input length compiles the
encoder once), then for each concurrency sends ``--requests`` POST /recommend requests from
that many concurrent clients (httpx.AsyncClient, one connection each), and stops the server.
Histories are drawn from the run's catalogue by training popularity (artifacts/), lengths
from ``--lengths``, durations log-normal: the work per request is the model's, not the data's.
Prints a table and writes it, with the CPU model, load average and commit, to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np

from durgru_jax import artifacts as artifacts_lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        return f"{names[0]} ({len(names)} logical CPUs)" if names else "unknown"
    except OSError:
        return "unknown"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True)
        return out.stdout.decode().strip() or "unknown"
    except OSError:
        return "unknown"


def bodies(workdir: str, n: int, lengths: list[int], seed: int = 0) -> list[dict]:
    """``n`` request bodies: histories of the run's items by training popularity."""
    art = artifacts_lib.load_artifacts(workdir)
    p = np.exp(np.where(np.isfinite(art.log_popularity[1:]), art.log_popularity[1:], -np.inf))
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = lengths[i % len(lengths)]
        items = art.item_ids[rng.choice(art.n_items, size=m, p=p)].tolist()
        ts = 1.7e9 + np.cumsum(rng.exponential(120.0, size=m))
        dur = rng.lognormal(3.0, 1.0, size=m)
        events = [
            {"item": it, "timestamp": float(t), "duration": float(d)}
            for it, t, d in zip(items, ts, dur, strict=True)
        ]
        out.append({"events": events, "k": 10, "exclude_seen": True})
    return out


def start_server(workdir: str, port: int, timeout_s: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "durgru_jax.serve", "--workdir", workdir, "--port", str(port)]
    proc = subprocess.Popen(cmd)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    proc.wait(10)
    raise RuntimeError(f"the server did not answer /health within {timeout_s:.0f} s")


async def load(url: str, reqs: list[dict], concurrency: int) -> dict:
    """Sends ``reqs`` from ``concurrency`` clients; latency per request, total throughput."""
    latencies: list[float] = []
    queue = list(reversed(reqs))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300.0) as client:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/recommend", json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"/recommend answered {r.status_code}: {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1e3
    return {
        "concurrency": concurrency,
        "requests": len(reqs),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(reqs) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished run with artifacts/")
    parser.add_argument("--requests", type=int, default=400, help="per concurrency")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--lengths", default="5,20,50", help="history lengths, in turn")
    parser.add_argument("--out", default="serve_load.json")
    parser.add_argument("--startup_timeout_s", type=float, default=300.0)
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    reqs = bodies(args.workdir, args.requests, lengths)
    load_before = [round(x, 2) for x in os.getloadavg()]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.workdir, port, args.startup_timeout_s)
    try:
        asyncio.run(load(url, reqs[: len(lengths)], 1))  # warm-up: one compile per length
        rows = [asyncio.run(load(url, reqs, int(c))) for c in args.concurrency.split(",")]
    finally:
        proc.terminate()
        proc.wait(30)
    result = {
        "workdir": args.workdir,
        "cpu": cpu_model(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "commit": commit(),
        "lengths": lengths,
        "rows": rows,
    }
    print(
        f"CPU: {result['cpu']}, {result['usable_cpus']} usable; load average before "
        f"{load_before}, after {result['load_average_after']}; commit {result['commit']}"
    )
    print("| concurrent clients | requests | requests/s | p50 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['concurrency']} | {r['requests']} | {r['requests_per_s']} | {r['p50_ms']} "
            f"| {r['p99_ms']} |"
        )
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
