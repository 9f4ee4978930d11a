"""Recommending speed (users/s) on generated data of MovieLens-1M shapes, and on a 1M-item
catalogue with bounded memory.

``python benchmarks/recommend_speed.py --out runs/recommend_speed.json``

A model of ``configs/ml1m.py`` (aGRU, hidden 100, embedding 64, ``max_len`` 100, 5 time-gap
contexts; random parameters: speed does not depend on them) with its artifacts is built in
memory from a generated log: 6,040 users with 20 to ~2,000 events each (mean ~165, as
ML-1M), items drawn from a Zipf-like popularity over 3,706 items, so every item occurs. Timed,
after one warm-up call that compiles every shape (median and fastest of ``--repeats``, with
the process's CPU seconds and the load average, since the machine may be shared):

* ``training_users``: `Recommender.recommend_training_users` (``launch.py --recommend``
  without ``--events``: every user's full history from the prepared data);
* ``events``: `Recommender.recommend_many` on the whole event table (``--events FILE``
  after reading: featurisation with `dataset.prepare`, examples, encoder, ranker).

Large catalogue: the same model with 1,000,000 items (``item_ids`` 0..999,999), users with the
same histories (``--large_users``) ranked in chunks of ``eval.item_chunk`` items for
``batch_size`` users: the score block is ``batch_size x item_chunk`` floats whatever the
catalogue. Peak RSS (VmHWM) is reported after each part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import time

import jax
import numpy as np
import pandas as pd

from durgru_jax import artifacts as artifacts_lib
from durgru_jax import model as model_lib
from durgru_jax.base_config import load_config
from durgru_jax.config import from_config
from durgru_jax.data import dataset as ds
from durgru_jax.data import sources
from durgru_jax.recommend import Recommender

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def generate_log(n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    """Users with 20 + Geometric(1/145) events (capped at 2,000), Zipf(0.8)-like item draws,
    one event every ~10 minutes with a day's break now and then."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(20 + rng.geometric(1 / 145, n_users), 2000)
    n = int(lengths.sum())
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=n, p=weights / weights.sum())
    items[:n_items] = rng.permutation(n_items)  # every item occurs
    user = np.repeat(np.arange(n_users), lengths)
    gaps = rng.exponential(600.0, n) + (rng.random(n) < 0.02) * 86400.0
    start = 9.6e8 + rng.uniform(0, 3e7, n_users)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    csum = np.cumsum(gaps)
    ts = start[user] + csum - csum[first][user]
    rating = rng.integers(1, 6, n).astype(np.float32)
    return pd.DataFrame({"user": user, "item": items, "timestamp": ts, "rating": rating})


def build(events: pd.DataFrame, seed: int = 0) -> tuple[Recommender, ds.Prepared]:
    """A random model of configs/ml1m.py with the artifacts of ``events`` (as a run has)."""
    config = load_config(os.path.join(ROOT, "configs", "ml1m.py"))
    p = ds.prepare(events, sources.prep_config(config.data, seed))
    rc = from_config(
        config,
        n_items=p.n_items,
        n_input_contexts=p.n_input_contexts,
        n_transfer_contexts=p.n_transfer_contexts,
        max_len=int(config.data.max_len),
    )
    params = model_lib.init_params(rc.model, seed, p.log_popularity)
    users = events["user"].drop_duplicates().to_numpy()
    art = artifacts_lib.build_artifacts(p, rc, config.data, seed, users)
    return Recommender(params, art), p


def with_catalogue(rec: Recommender, n_items: int, seed: int = 0) -> Recommender:
    """``rec``'s model and preprocessing over ``n_items`` items (ids 0..n_items-1)."""
    art = rec.artifacts
    model = dataclasses.replace(art.run_config.model, n_items=n_items)
    rc = dataclasses.replace(art.run_config, model=model)
    rng = np.random.default_rng(seed)
    log_pop = np.log(rng.dirichlet(np.ones(n_items))).astype(np.float32)
    art = dataclasses.replace(
        art,
        run_config=rc,
        item_ids=np.arange(n_items, dtype=np.int64),
        log_popularity=np.concatenate([[-np.inf], log_pop]).astype(np.float32),
    )
    return Recommender(model_lib.init_params(model, seed, art.log_popularity), art)


def timed(fn, repeats: int) -> dict:
    """Wall and process CPU seconds of ``fn()`` after a first, compiling call: the median and
    the fastest repeat (on a shared machine the fastest is the least disturbed)."""
    t0 = time.perf_counter()
    out = fn()  # compiles every batch shape
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    n = len(out.users)
    return {
        "users": n,
        "seconds": float(np.median(times)),
        "seconds_all": times,
        "cpu_seconds_all": cpu,
        "users_per_second": n / float(np.median(times)),
        "users_per_second_fastest": n / min(times),
        "first_call_seconds": first,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/recommend_speed.json")
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--large_items", type=int, default=1_000_000)
    ap.add_argument("--large_users", type=int, default=2048)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch_size", type=int, default=0, help="users per batch (0: default)")
    args = ap.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "jax": jax.__version__,
        "load_average_before": os.getloadavg(),
        "k": args.k,
    }
    events = generate_log(args.users, args.items)
    rec, p = build(events)
    if args.batch_size:
        rec.batch_size = args.batch_size
    r = rec.rc
    result["shapes"] = {
        "users": args.users,
        "events": len(events),
        "items": rec.n_items,
        "cell": r.model.cell,
        "hidden_dim": r.model.hidden_dim,
        "embed_dim": r.model.embed_dim,
        "max_len": r.model.max_len,
        "batch_size": rec.batch_size,
        "eval_item_chunk": r.eval.item_chunk,
    }
    k = args.k
    result["training_users"] = timed(
        lambda: rec.recommend_training_users(k=k, prepared=p), args.repeats
    )
    print(json.dumps(result["training_users"]), flush=True)
    result["events"] = timed(lambda: rec.recommend_many(events, k=k), args.repeats)
    print(json.dumps(result["events"]), flush=True)
    if args.large_items:
        big = with_catalogue(rec, args.large_items)
        big.batch_size = rec.batch_size
        few = events[events["user"] < args.large_users]
        large = timed(lambda: big.recommend_many(few, k=k), max(1, args.repeats - 2))
        bs, chunk = big.batch_size, min(big.rc.eval.item_chunk, args.large_items + 1)
        large |= {"items": args.large_items, "score_block_bytes": bs * chunk * 4}
        result["large_catalogue"] = large
        print(json.dumps(large), flush=True)
    result["load_average_after"] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
