"""Interleaved A/B runs of the benchmark on a shared machine: medians of repeated runs.

``python benchmarks/ab.py --a PATH_A --b PATH_B --rounds 3 --out DIR [--config.x=y ...]``
runs ``launch.py --config configs/bench.py`` from checkout A, then B, then A, ... (each in a
fresh process), keeps every ``bench.json`` under ``DIR/{a,b}{round}``, and prints the median
of each figure for A and B. Interleaving spreads the load of other jobs over both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

KEYS = (
    "train_events_per_second",
    "train_step_seconds",
    "train_flops_fraction_of_peak",
    "matmul_peak_flops_per_second",
    "eval_seconds",
    "eval_users_per_second",
    "compile_seconds",
    "peak_rss_bytes",
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="configs/bench.py")
    ap.add_argument("--a_args", default="", help="extra flags for A only (space-separated)")
    ap.add_argument("--b_args", default="", help="extra flags for B only (space-separated)")
    args, extra = ap.parse_known_args()
    extra = [x for x in extra if x != "--"]
    results = {"a": [], "b": []}
    os.makedirs(args.out, exist_ok=True)
    for r in range(args.rounds):
        for side in ("a", "b"):
            root = os.path.abspath(getattr(args, side))
            workdir = os.path.abspath(os.path.join(args.out, f"{side}{r}"))
            cmd = [sys.executable, "launch.py", "--config", args.config, "--workdir", workdir]
            load = os.getloadavg()[0]
            with open(os.path.join(args.out, f"{side}{r}.log"), "w") as log:
                own = getattr(args, f"{side}_args").split()
                subprocess.run(cmd + extra + own, cwd=root, check=True, stdout=log, stderr=log)
            with open(os.path.join(workdir, "bench.json")) as f:
                res = json.load(f)
            res["_load_before"] = load
            results[side].append(res)
            print(
                f"round {r} {side}: load {load:.1f} "
                + " ".join(f"{k}={res[k]:.4g}" for k in KEYS if k in res),
                flush=True,
            )
    print("median over rounds:")
    for k in KEYS:
        vals = {s: [x[k] for x in results[s] if k in x] for s in results}
        if all(vals.values()):
            a, b = statistics.median(vals["a"]), statistics.median(vals["b"])
            print(f"  {k:32s} A {a:12.4g}  B {b:12.4g}  B/A {b / a:6.3f}")


if __name__ == "__main__":
    main()
