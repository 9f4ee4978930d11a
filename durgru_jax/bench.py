"""Speed benchmark of the real train step and the real full-ranking evaluation.

``python launch.py --config configs/bench.py --workdir W`` writes ``W/bench.json``
(``configs/bench.py:large``: a 1M-item catalogue with the sampled softmax).

The inputs are random but have the shapes of the workload (by default MovieLens-1M: 3,706
items, sequences up to 200 events, hidden size 100, batch 256, 6,040 users to rank); the code
measured is exactly the code a run uses (`train.make_train_step`, `train.evaluate`). The
matmul peak is measured in the same process, so the achieved FLOP/s of the train step can be
read against what this machine does on a large dense f32 matmul.

Recorded besides speed: compile time of each jitted function, peak host memory (after
training and at the end), device memory (``memory_stats()`` of the first local device: its
peak bytes in use on a GPU; the CPU backend reports none, recorded as null), and the memory
bounds of the loss and of the ranking (the largest score block held at once).
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from durgru_jax import evaluate as evaluate_lib
from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax.config import from_config
from durgru_jax.ctr.bench import peak_rss_bytes
from durgru_jax.data import dataset as ds
from durgru_jax.evaluate import evaluate
from durgru_jax.metrics import rank_and_topk
from durgru_jax.train import make_optimizer, make_train_step

F32_BYTES = 4


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


def eval_examples(rng, n_users, t, n_items, n_in, n_tr) -> dict[str, np.ndarray]:
    """Random evaluation examples in the layout of `dataset.eval_examples`: inputs of 2 to
    ``t`` events (uniform), the inputs as the exclusion history, a random target."""
    ev = _random_batch(rng, n_users, t, n_items, n_in, n_tr, rng.integers(2, t + 1, n_users))
    hist_len = ev["mask"].sum(1)
    examples = {k: ev[k] for k in ev if k not in ("targets", "rating_target", "rating_ok")}
    examples.update(
        target=rng.integers(1, n_items + 1, n_users).astype(np.int32),
        target_rating=np.zeros(n_users, np.float32),
        target_rating_ok=np.zeros(n_users, bool),
        user=np.arange(n_users),
        hist_offsets=np.concatenate([[0], np.cumsum(hist_len)]),
        hist_items=ev["items"][ev["mask"]],
    )
    return examples


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


def device_memory() -> dict | None:
    """``memory_stats()`` of the first local device (bytes in use, peak, limit), or None where
    the backend keeps no statistics (the CPU backend)."""
    stats = jax.local_devices()[0].memory_stats()
    if not stats:
        return None
    keys = ("bytes_in_use", "peak_bytes_in_use", "bytes_limit", "largest_alloc_size")
    return {k: int(stats[k]) for k in keys if k in stats}


def matmul_flops(fn, *args) -> float:
    """FLOPs of the matrix products that ``fn(*args)`` performs, from its jaxpr: ``2 x M x N x
    K`` per ``dot_general``, a scan body counted once per iteration.

    XLA's cost analysis counts a loop body once, whatever its trip count, so it misses all but
    one step of the recurrence and of the chunked softmax; elementwise work is left out here,
    so the figure compares with a matmul peak.
    """
    from jax.extend import core as jcore

    def count(jaxpr) -> float:
        total = 0.0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (contract, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                total += (
                    2.0 * np.prod([lhs[d] for d in contract]) * np.prod(eqn.outvars[0].aval.shape)
                )
            times = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
            for sub in jcore.jaxprs_in_params(eqn.params):
                total += times * count(sub)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def _memory_analysis(compiled) -> dict | None:
    """XLA's buffer plan of a compiled function (bytes): arguments, outputs, temporaries."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    names = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    return {k: int(getattr(m, k)) for k in names if hasattr(m, k)}


def _compile_seconds(jitted, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    compiled = jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - t0, compiled


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
    compile_s, compiled = _compile_seconds(step, state, batches[0])
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    step_memory = _memory_analysis(compiled)
    step_flops = matmul_flops(step, state, batches[0])
    step = compiled  # the executable just compiled (calling the jitted function would again)
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
    rss_after_train = peak_rss_bytes()
    device_after_train = device_memory()

    # Full-ranking evaluation of n_eval_users users, each with a history of 2..max_len events.
    ne = int(b.n_eval_users)
    examples = eval_examples(rng, ne, t, n_items, n_in, n_tr)
    params = state["params"]
    eb = rc.eval.batch_size
    item_chunk = min(rc.eval.item_chunk, n_items + 1)
    # Compile time of the two jitted evaluation functions, on one full-width batch.
    batch0, hist0, _ = next(ds.iterate_eval_batches(examples, eb))
    fwd_compile_s, _ = _compile_seconds(evaluate_lib._eval_forward, params, rc.model, batch0)
    v, c = model_lib.score_factors(params, rc.model)
    u0 = jnp.zeros((eb, v.shape[0]), v.dtype)
    rank_compile_s, _ = _compile_seconds(
        rank_and_topk,
        u0,
        v,
        c,
        jnp.asarray(batch0["target"]),
        jnp.asarray(hist0),
        n_items=n_items,
        kmax=max(rc.eval.ks),
        item_chunk=item_chunk,
        exclude_history=rc.eval.exclude_history,
    )
    t0 = time.perf_counter()
    evaluate(params, rc, examples, n_items, "bench")  # compiles every batch shape
    eval_first_s = time.perf_counter() - t0
    eval_times = []
    for _ in range(int(b.eval_repeats)):
        t0 = time.perf_counter()
        evaluate(params, rc, examples, n_items, "bench")
        eval_times.append(time.perf_counter() - t0)
    eval_s = float(np.median(eval_times))

    peak = matmul_peak_flops(int(b.matmul_n))
    if rc.loss.target == "full":  # rows of the fused softmax held at once
        rows = min(max(8, loss_lib._SOFTMAX_CHUNK_ELEMENTS // (n_items + 1) // 8 * 8), bs * t)
        loss_block = rows * (n_items + 1)
    else:  # B*T rows against the positive, the B in-batch and the S sampled candidates
        loss_block = bs * t * (1 + bs + rc.loss.n_sampled)
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
            "n_sampled": rc.loss.n_sampled if rc.loss.target != "full" else None,
            "aux_weight": rc.loss.aux_weight,
            "eval_batch_size": eb,
            "eval_item_chunk": item_chunk,
        },
        "compile_seconds": compile_s,
        "compile_seconds_by_function": {
            "train_step": compile_s,
            "eval_forward (full width)": fwd_compile_s,
            "rank_and_topk": rank_compile_s,
            "first_evaluate_minus_steady": max(eval_first_s - eval_s, 0.0),
        },
        "train_steps_timed": int(b.train_steps),
        "train_step_seconds": step_s,
        "train_events_per_second": n_events / train_s,
        "train_step_flops": step_flops,
        "train_step_flops_note": (
            "matmul FLOPs from the jaxpr, scan bodies times their length (matmul_flops); "
            "XLA's cost analysis counts a loop body once"
        ),
        "train_step_flops_xla_cost_analysis": xla_flops,
        "train_step_flops_per_second": step_flops / step_s,
        "matmul_peak_flops_per_second": peak,
        "train_flops_fraction_of_peak": step_flops / step_s / peak,
        "eval_users": ne,
        "eval_seconds": eval_s,
        "eval_seconds_all": eval_times,
        "eval_users_per_second": ne / eval_s,
        "eval_first_call_seconds": eval_first_s,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_bytes_after_train": rss_after_train,
        "device_memory_after_train": device_after_train,
        "device_memory": device_memory(),
        "device_memory_note": (
            "memory_stats() of the first local device"
            if device_after_train is not None
            else "null: the CPU backend keeps no device-memory statistics (see peak_rss_bytes)"
        ),
        "train_step_xla_memory": step_memory,
        "memory_bounds_bytes": {
            "train_loss_block": loss_block * F32_BYTES,
            "eval_score_block": eb * item_chunk * F32_BYTES,
            "params": int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))),
        },
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
        "peak_rss_bytes": peak_rss_bytes(),
        "info": {k: v for k, v in p.info.items() if not isinstance(v, (list, dict))},
    }
    with open(os.path.join(workdir, "bench_data.json"), "w") as f:
        json.dump(out, f, indent=2, default=str)
    logging.info("data bench: %s", json.dumps(out, indent=2, default=str))
    return out
