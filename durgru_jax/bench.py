"""Speed benchmark of the real train step and the real full-ranking evaluation.

``python launch.py --config configs/bench.py --workdir W`` writes ``W/bench.json``.

The inputs are random but have the shapes of the workload (by default MovieLens-1M: 3,706
items, sequences up to 200 events, hidden size 100, batch 256, 6,040 users to rank); the code
measured is exactly the code a run uses (`train.make_train_step`, `train.evaluate`). The
matmul peak is measured in the same process, so the achieved FLOP/s of the train step can be
read against what this machine does on a large dense f32 matmul.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from durgru_jax import model as model_lib
from durgru_jax.config import from_config
from durgru_jax.train import evaluate, make_optimizer, make_train_step


def _random_batch(rng, b, t, n_items, n_in, n_tr, lengths):
    mask = np.arange(t)[None, :] < lengths[:, None]
    items = rng.integers(1, n_items + 1, (b, t)).astype(np.int32) * mask
    targets = rng.integers(1, n_items + 1, (b, t)).astype(np.int32) * mask
    return {
        "items": items,
        "targets": targets,
        "mask": mask,
        "reset": np.arange(t)[None, :].repeat(b, 0) == 0,
        "in_ctx": rng.integers(0, n_in, (b, t)).astype(np.int32),
        "tr_ctx": rng.integers(0, n_tr, (b, t)).astype(np.int32),
        "dur": rng.normal(3.0, 1.0, (b, t)).astype(np.float32),
        "dur_ok": mask.copy(),
        "dur_mean": np.full((b, t), 3.0, np.float32),
        "dur_std": np.ones((b, t), np.float32),
        "dur_user_ok": np.ones((b, t), bool),
        "rating_target": np.zeros((b, t), np.float32),
        "rating_ok": np.zeros((b, t), bool),
    }


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` f32 FLOP/s of an ``n x n @ n x n`` matmul on the default device."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def run(config, workdir: str) -> dict:
    b = config.bench
    os.makedirs(workdir, exist_ok=True)
    n_items, t, bs = int(b.n_items), int(b.max_len), int(config.train.batch_size)
    n_in, n_tr = int(b.n_input_contexts), int(b.n_transfer_contexts)
    is_agru = config.model.cell == "agru"
    rc = from_config(
        config,
        n_items=n_items,
        n_input_contexts=n_in if is_agru else 1,
        n_transfer_contexts=n_tr if is_agru else 1,
    )
    rng = np.random.default_rng(0)
    # Sequence lengths as in the workload: every row full (windows cut from long histories).
    lengths = np.full(bs, t) if b.full_rows else rng.integers(2, t + 1, bs)
    batches = [
        _random_batch(rng, bs, t, n_items, n_in, n_tr, lengths) for _ in range(int(b.n_batches))
    ]
    log_pop = jnp.asarray(np.log(np.full(n_items + 1, 1.0 / n_items)).astype(np.float32))
    tx = make_optimizer(rc.optim, 1000)
    step = make_train_step(rc, tx, log_pop)
    params = model_lib.init_params(rc.model, rc.seed)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "finite": jnp.asarray(True),
    }
    t0 = time.perf_counter()
    compiled = step.lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    step_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    state, _ = step(state, batches[0])  # warm-up
    jax.block_until_ready(state)
    n_events = 0
    t0 = time.perf_counter()
    for i in range(int(b.train_steps)):
        batch = batches[i % len(batches)]
        n_events += int(np.sum(batch["mask"] & (batch["targets"] > 0)))
        state, parts = step(state, batch)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t0
    step_s = train_s / int(b.train_steps)

    # Full-ranking evaluation of n_eval_users users, each with a history of max_len events.
    ne = int(b.n_eval_users)
    ev = _random_batch(rng, ne, t, n_items, n_in, n_tr, rng.integers(2, t + 1, ne))
    hist_len = ev["mask"].sum(1)
    examples = {k: ev[k] for k in ev if k not in ("targets", "rating_target", "rating_ok")}
    examples.update(
        target=rng.integers(1, n_items + 1, ne).astype(np.int32),
        target_rating=np.zeros(ne, np.float32),
        target_rating_ok=np.zeros(ne, bool),
        user=np.arange(ne),
        hist_offsets=np.concatenate([[0], np.cumsum(hist_len)]),
        hist_items=ev["items"][ev["mask"]],
    )
    evaluate(state["params"], rc, examples, n_items, "bench")  # compile
    t0 = time.perf_counter()
    evaluate(state["params"], rc, examples, n_items, "bench")
    eval_s = time.perf_counter() - t0

    peak = matmul_peak_flops(int(b.matmul_n))
    out = {
        "device": str(jax.devices()[0].device_kind),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "shapes": {
            "n_items": n_items,
            "max_len": t,
            "batch_size": bs,
            "hidden_dim": rc.model.hidden_dim,
            "embed_dim": rc.model.embed_dim,
            "cell": rc.model.cell,
            "duration_mode": rc.model.duration_mode,
            "loss_target": rc.loss.target,
            "aux_weight": rc.loss.aux_weight,
        },
        "compile_seconds": compile_s,
        "train_step_seconds": step_s,
        "train_events_per_second": n_events / train_s,
        "train_step_flops": step_flops,
        "train_step_flops_per_second": step_flops / step_s,
        "matmul_peak_flops_per_second": peak,
        "train_flops_fraction_of_peak": step_flops / step_s / peak,
        "eval_users": ne,
        "eval_seconds": eval_s,
        "eval_users_per_second": ne / eval_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "final_loss": float(parts["loss"]),
    }
    with open(os.path.join(workdir, "bench.json"), "w") as f:
        json.dump(out, f, indent=2)
    logging.info("bench: %s", json.dumps(out, indent=2))
    return out


def run_data(config, workdir: str) -> dict:
    """Preparation speed of a real dataset: a first run (read + prepare + write the cache) and
    a second run served from the cache, in fresh processes' conditions (empty cache dir)."""
    import importlib.util
    import shutil

    from durgru_jax.data import dataset as ds
    from durgru_jax.data.sources import load_prepared

    b = config.bench
    path, _, variant = str(b.data_config).partition(":")
    spec = importlib.util.spec_from_file_location("_bench_data_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data_cfg = (module.get_config(variant) if variant else module.get_config()).data
    data_cfg.path = str(b.data_path)
    for assignment in filter(None, str(b.get("data_overrides", "")).split(",")):
        from durgru_jax.runner import apply_override

        apply_override(data_cfg, assignment)
    cache_dir = os.path.join(workdir, "cache")
    shutil.rmtree(cache_dir, ignore_errors=True)
    data_cfg.cache_dir = cache_dir
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        p = load_prepared(data_cfg, int(config.seed))
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    windows = ds.train_windows(p, pack=bool(data_cfg.get("pack", True)))
    windows_s = time.perf_counter() - t0
    out = {
        "data_config": str(b.data_config),
        "data_path": str(b.data_path),
        "rows": int(p.info.get("rows_read", p.info["n_events"])),
        "first_run_seconds": times[0],
        "cached_run_seconds": times[1],
        "cache_speedup": times[0] / max(times[1], 1e-9),
        "rows_per_second_first_run": p.info.get("rows_read", 0) / times[0],
        "train_windows_seconds": windows_s,
        "train_rows": int(len(windows["items"])),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "info": {k: v for k, v in p.info.items() if not isinstance(v, (list, dict))},
    }
    with open(os.path.join(workdir, "bench_data.json"), "w") as f:
        json.dump(out, f, indent=2, default=str)
    logging.info("data bench: %s", json.dumps(out, indent=2, default=str))
    return out
