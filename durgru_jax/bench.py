"""Speed benchmark of the real train step and the real full-ranking evaluation.

``python launch.py --config configs/bench.py --workdir W`` writes ``W/bench.json``
(``configs/bench.py:large``: a 1M-item catalogue with the sampled softmax).

The inputs are random but have the shapes of the workload (by default MovieLens-1M: 3,706
items, sequences up to 200 events, hidden size 100, batch 256, 6,040 users to rank); the code
measured is exactly the code a run uses (`train.make_train_step`, `evaluate.evaluate`). The
matmul peak is measured in the same process, so the achieved FLOP/s of the train step can be
read against what this machine does on a large dense f32 matmul.

Recorded besides speed: compile time of each jitted function, peak host memory (after
training and at the end), device memory (``memory_stats()`` of the first local device: its
peak bytes in use on a GPU; the CPU backend reports none, recorded as null), and the memory
bounds of the loss and of the ranking (the largest score block held at once).

Also here: `run_data` (``configs/bench.py:data``: preparation and cache speed of a real
dataset) and `vsweep_benchmark`, the cost of K runs in one vectorised step
(`durgru_jax.vsweep`) against one run:
``python -m durgru_jax.bench --config configs/default.py --k 8 [--rounds 6] [--chunks 0,1]``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import types
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from durgru_jax import evaluate as evaluate_lib
from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax.config import from_config
from durgru_jax.ctr.bench import peak_rss_bytes
from durgru_jax.data import dataset as ds
from durgru_jax.evaluate import evaluate
from durgru_jax.files import write_atomic
from durgru_jax.lifecycle import new_state
from durgru_jax.metrics import rank_and_topk
from durgru_jax.provenance import provenance
from durgru_jax.run_lib import jsonable, write_json
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


def _shapes(config):
    """``(rc, n_items, max_len, batch_size, n_input_contexts, n_transfer_contexts)`` of a
    config with a ``bench`` group (the aGRU's context counts, the gap buckets of
    ``model.gap_input``; 1 otherwise)."""
    b = config.bench
    n_items, t, bs = int(b.n_items), int(b.max_len), int(config.train.batch_size)
    agru = config.model.cell == "agru"
    n_in = int(b.n_input_contexts) if agru else 1
    n_tr = int(b.n_transfer_contexts) if agru or config.model.gap_input else 1
    rc = from_config(config, n_items=n_items, n_input_contexts=n_in, n_transfer_contexts=n_tr)
    return rc, n_items, t, bs, n_in, n_tr


def _uniform_log_popularity(n_items: int) -> np.ndarray:
    return np.log(np.full(n_items + 1, 1.0 / n_items)).astype(np.float32)


def run(config, workdir: str) -> dict:
    """Times the train step and the full-ranking evaluation on random inputs of the
    ``config.bench`` shapes; writes ``workdir/bench.json``."""
    b = config.bench
    os.makedirs(workdir, exist_ok=True)
    rc, n_items, t, bs, n_in, n_tr = _shapes(config)
    n_in, n_tr = int(b.n_input_contexts), int(b.n_transfer_contexts)  # drawn for every cell
    rng = np.random.default_rng(0)
    # Sequence lengths as in the workload: every row full (windows cut from long histories).
    lengths = np.full(bs, t) if b.full_rows else rng.integers(2, t + 1, bs)
    batches = [
        _random_batch(rng, bs, t, n_items, n_in, n_tr, lengths) for _ in range(int(b.n_batches))
    ]
    train, params = _time_train(rc, batches, int(b.train_steps), n_items)
    rss_after_train = peak_rss_bytes()
    device_after_train = device_memory()
    # Full-ranking evaluation of n_eval_users users, each with a history of 2..max_len events.
    examples = eval_examples(rng, int(b.n_eval_users), t, n_items, n_in, n_tr)
    ev = _time_evaluation(rc, params, examples, n_items, int(b.eval_repeats))
    peak = matmul_peak_flops(int(b.matmul_n))
    eb = rc.eval.batch_size
    item_chunk = min(rc.eval.item_chunk, n_items + 1)
    if rc.loss.target == "full":  # rows of the fused softmax held at once
        rows = loss_lib._row_chunks(bs * t, n_items + 1)[0]
        loss_block = rows * (n_items + 1)
    else:  # B*T rows against the positive, the B in-batch and the S sampled candidates
        loss_block = bs * t * (1 + bs + rc.loss.n_sampled)
    step_s, step_flops = train["train_step_seconds"], train["train_step_flops"]
    fwd_compile_s = ev.pop("eval_forward_compile_seconds")
    rank_compile_s = ev.pop("rank_and_topk_compile_seconds")
    out = {
        "provenance": provenance(),  # the commit, CPU and libraries
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
        "compile_seconds_by_function": {
            "train_step": train["compile_seconds"],
            "eval_forward (full width)": fwd_compile_s,
            "rank_and_topk": rank_compile_s,
            "first_evaluate_minus_steady": max(
                ev["eval_first_call_seconds"] - ev["eval_seconds"], 0.0
            ),
        },
        **train,
        "train_step_flops_note": (
            "matmul FLOPs from the jaxpr, scan bodies times their length (matmul_flops); "
            "XLA's cost analysis counts a loop body once"
        ),
        "train_step_flops_per_second": step_flops / step_s,
        "matmul_peak_flops_per_second": peak,
        "train_flops_fraction_of_peak": step_flops / step_s / peak,
        **ev,
        "peak_rss_bytes": peak_rss_bytes(),
        "peak_rss_bytes_after_train": rss_after_train,
        "device_memory_after_train": device_after_train,
        "device_memory": device_memory(),
        "device_memory_note": (
            "memory_stats() of the first local device"
            if device_after_train is not None
            else "null: the CPU backend keeps no device-memory statistics (see peak_rss_bytes)"
        ),
        "memory_bounds_bytes": {
            "train_loss_block": loss_block * F32_BYTES,
            "eval_score_block": eb * item_chunk * F32_BYTES,
            "params": int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))),
        },
    }
    write_json(os.path.join(workdir, "bench.json"), out)
    logging.info("bench: %s", json.dumps(jsonable(out), indent=2))
    return out


def _time_train(rc, batches, n_steps: int, n_items: int) -> tuple[dict, object]:
    """Compile time, FLOPs, XLA's buffer plan and speed of `train.make_train_step` (after one
    warm-up step); returns the figures and the trained parameters."""
    log_pop = jnp.asarray(_uniform_log_popularity(n_items))
    tx = make_optimizer(rc.optim, 1000)
    step = make_train_step(rc, tx, log_pop)
    state = new_state(model_lib.init_params(rc.model, rc.seed), tx)
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
    for i in range(n_steps):
        batch = batches[i % len(batches)]
        n_events += int(np.sum(batch["mask"] & (batch["targets"] > 0)))
        state, parts = step(state, batch)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t0
    figures = {
        "compile_seconds": compile_s,
        "train_steps_timed": n_steps,
        "train_step_seconds": train_s / n_steps,
        "train_events_per_second": n_events / train_s,
        "train_step_flops": step_flops,
        "train_step_flops_xla_cost_analysis": xla_flops,
        "train_step_xla_memory": step_memory,
        "final_loss": float(parts["loss"]),
    }
    return figures, state["params"]


def _time_evaluation(rc, params, examples, n_items: int, repeats: int) -> dict:
    """Compile time of the two jitted evaluation functions (on one full-width batch) and the
    speed of `evaluate` (median of ``repeats`` after the compiling call)."""
    eb = rc.eval.batch_size
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
        item_chunk=min(rc.eval.item_chunk, n_items + 1),
        exclude_history=rc.eval.exclude_history,
    )
    t0 = time.perf_counter()
    evaluate(params, rc, examples, n_items, "bench")  # compiles every batch shape
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate(params, rc, examples, n_items, "bench")
        times.append(time.perf_counter() - t0)
    eval_s = float(np.median(times))
    n_users = len(examples["target"])
    return {
        "eval_forward_compile_seconds": fwd_compile_s,
        "rank_and_topk_compile_seconds": rank_compile_s,
        "eval_users": n_users,
        "eval_seconds": eval_s,
        "eval_seconds_all": times,
        "eval_users_per_second": n_users / eval_s,
        "eval_first_call_seconds": first_s,
    }


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
    write_atomic(
        os.path.join(workdir, "bench_data.json"),
        lambda f: json.dump(out, f, indent=2, default=str),
    )
    logging.info("data bench: %s", json.dumps(out, indent=2, default=str))
    return out


# --------------------------------------------------------------------------------------
# Vectorised sweeps: ``python -m durgru_jax.bench --config configs/default.py --k 8``
# --------------------------------------------------------------------------------------


def vsweep_benchmark(
    config: ml_collections.ConfigDict, k: int = 8, rounds: int = 6, chunks=(0, 1)
) -> dict:
    """Cost of K runs in one step (`durgru_jax.vsweep`) against one run of ``config``, per
    train step and per epoch, for each ``chunk`` of `vsweep.make_vmapped_train_step` (0: all
    K vmapped at once).

    The variants are timed interleaved (``rounds`` rounds of one step of each, medians), so a
    shared machine's changing load hits them alike; CPU seconds (all threads) are recorded
    beside wall seconds. An epoch's cost is ``steps_per_epoch`` steps plus the validation of
    every model (timed after a warm-up). A config with a ``bench`` group (``configs/bench.py``)
    is timed on random batches of its shapes, as `run`, without validation; any other on its
    own data. The K runs differ in seed and learning rate; the single run is
    `train.make_train_step` itself.
    """
    from durgru_jax import vsweep

    runs, per, init = _vsweep_runs(config, k)
    r0 = runs[0]
    tx = make_optimizer(r0.rc.optim, r0.total_steps)
    variants = {
        "single": (
            make_train_step(r0.rc, tx, jnp.asarray(r0.prepared.log_popularity)),
            new_state(init(r0), tx),
            per[0],
            (),
        )
    }
    args = (*vsweep.stacked_inputs(runs), jnp.ones((k,), bool))
    stacked = [{f: np.stack([p[i][f] for p in per]) for f in per[0][0]} for i in range(len(per[0]))]
    for chunk in chunks:
        step = vsweep.make_vmapped_train_step(
            vsweep.signature_rc(r0.rc), r0.total_steps, int(chunk)
        )
        state = vsweep.stack([new_state(init(r), tx) for r in runs])
        variants[f"chunk{int(chunk)}"] = (step, state, stacked, args)
    shapes_only = "bench" in config
    out: dict[str, Any] = {
        "provenance": provenance(),
        "k": k,
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "rounds": rounds,
        "batch_size": int(config.train.batch_size),
        "events_per_step": float(np.mean([np.sum(b["mask"] & (b["targets"] > 0)) for b in per[0]])),
        "steps_per_epoch": None if shapes_only else len(per[0]),
    }
    timings, trained = _time_interleaved(variants, rounds)
    out.update(timings)
    if not shapes_only:
        params = trained["single"]["params"]
        out["valid_seconds_per_model"] = _median_validation_seconds(r0, params)
    one = out["single"]["step_seconds"]
    for name, res in ((n, out[n]) for n in variants):
        n_models = 1 if name == "single" else k
        res["train_events_per_second"] = n_models * out["events_per_step"] / res["step_seconds"]
        res["step_cost_vs_one_run"] = res["step_seconds"] / one
        if not shapes_only:
            res["epoch_seconds"] = (
                out["steps_per_epoch"] * res["step_seconds"]
                + n_models * out["valid_seconds_per_model"]
            )
    if not shapes_only:
        for name in variants:
            out[name]["epoch_cost_vs_one_run"] = (
                out[name]["epoch_seconds"] / out["single"]["epoch_seconds"]
            )
    return out


def _vsweep_runs(config, k: int):
    """K runs of ``config`` (seeds ``seed + i``, learning rates ``lr * (1 + 0.25 i)``), the
    batches of each (random ones of the ``bench`` shapes, else the first epoch's of its data)
    and how each starts its parameters."""
    from durgru_jax import lifecycle
    from durgru_jax.lifecycle import Run

    configs = []
    for i in range(k):
        c = ml_collections.ConfigDict(config.to_dict())
        c.seed = int(config.seed) + i
        c.optim.learning_rate = float(config.optim.learning_rate) * (1.0 + 0.25 * i)
        configs.append(c)
    if "bench" not in config:
        runs = [lifecycle.setup(c, None) for c in configs]
        bs = runs[0].rc.train.batch_size
        per = [list(ds.iterate_train_batches(r.windows, bs, r.rc.seed, 0)) for r in runs]
        return runs, per, lifecycle.init_params
    _, n_items, t, bs, n_in, n_tr = _shapes(config)
    rng = np.random.default_rng(0)
    per = [[_random_batch(rng, bs, t, n_items, n_in, n_tr, np.full(bs, t))] for _ in range(k)]
    prepared = types.SimpleNamespace(
        log_popularity=_uniform_log_popularity(n_items), n_items=n_items
    )
    runs = [
        Run(c, "", _shapes(c)[0], prepared, {}, {}, {}, steps_per_epoch=1, total_steps=1000)
        for c in configs
    ]
    return runs, per, lambda r: model_lib.init_params(r.rc.model, r.rc.seed)


def _time_interleaved(variants: dict, rounds: int) -> tuple[dict, dict]:
    """First-call (compiling) seconds, then the median wall and CPU seconds of a step of
    each variant ``name -> (step, state, batches, extra args)``, timed in turn; returns them
    and each variant's last state."""
    out: dict[str, dict] = {}
    states = {}
    for name, (step, state, batches, a) in variants.items():
        t = time.perf_counter()
        states[name], _ = step(state, batches[0], *a)
        jax.block_until_ready(states[name])
        out[name] = {"first_call_seconds": time.perf_counter() - t}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        names = list(variants)
        for name in names[i % len(names) :] + names[: i % len(names)]:
            step, _, batches, a = variants[name]
            t, c = time.perf_counter(), time.process_time()
            states[name], _ = step(states[name], batches[(i + 1) % len(batches)], *a)
            jax.block_until_ready(states[name])
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    for name, res in out.items():
        res["step_seconds"] = float(np.median(wall[name]))
        res["step_cpu_seconds"] = float(np.median(cpu[name]))
        res["steps_per_second"] = 1.0 / res["step_seconds"]
    return out, states


def _median_validation_seconds(run, params) -> float:
    ev = [run.rc, run.valid_ex, run.n_items, "valid"]
    evaluate(params, *ev)  # compiles
    times = []
    for _ in range(3):
        t = time.perf_counter()
        evaluate(params, *ev)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv) -> None:
    """``python -m durgru_jax.bench --config C [--k 8] [--rounds 6] [--chunks 0,1] [--out F]``:
    `vsweep_benchmark`, printed as JSON."""
    from absl import flags
    from ml_collections import config_flags

    del argv
    config = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).")
    k = flags.DEFINE_integer("k", 8, "Models in the vmapped step.")
    rounds = flags.DEFINE_integer("rounds", 6, "Timed steps of each variant, interleaved.")
    chunks = flags.DEFINE_list("chunks", ["0", "1"], "Step variants (0: all K vmapped).")
    out = flags.DEFINE_string("out", "", "Also write the JSON here.")
    flags.FLAGS(sys.argv)
    result = vsweep_benchmark(config.value, k.value, rounds.value, [int(c) for c in chunks.value])
    print(json.dumps(jsonable(result), indent=2))
    if out.value:
        write_json(out.value, result)


if __name__ == "__main__":
    main(sys.argv)
