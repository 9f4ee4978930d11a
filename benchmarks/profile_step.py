"""Timing breakdown of the bench train step and evaluation (ML-1M shapes).

``python benchmarks/profile_step.py`` prints the median seconds of each piece, each jitted on
its own: the encoder (forward + backward), the full softmax (forward + backward), the
auxiliary loss, the whole step, and the two halves of the evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import bench
from durgru_jax import loss as loss_lib
from durgru_jax import model as model_lib
from durgru_jax.config import from_config


def _time(f, *args, repeats=5):
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cfg", "configs/bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    b = config.bench
    n_items, t, bs = int(b.n_items), int(b.max_len), int(config.train.batch_size)
    rc = from_config(config, n_items=n_items, n_input_contexts=4, n_transfer_contexts=5)
    rng = np.random.default_rng(0)
    batch = bench._random_batch(rng, bs, t, n_items, 4, 5, np.full(bs, t))
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    params = model_lib.init_params(rc.model, 0)
    key = jax.random.key(0)
    log_pop = jnp.asarray(np.log(np.full(n_items + 1, 1.0 / n_items)).astype(np.float32))
    out = {}

    def enc_loss(p, batch):
        hs, _ = model_lib.encode(p, rc.model, batch, key)
        return jnp.sum(hs)

    if not args.only or "encode" in args.only:
        out["encode fwd"] = _time(jax.jit(enc_loss), params, batch, repeats=args.repeats)
        out["encode fwd+bwd"] = _time(
            jax.jit(jax.grad(enc_loss)), params, batch, repeats=args.repeats
        )
    u = jax.random.normal(key, (bs * t, rc.model.hidden_dim))
    tgt = batch["targets"].reshape(-1)
    v, c = params["out"]["w"], params["out"]["b"]

    def sm(u, v, c, tgt):
        return jnp.sum(loss_lib.full_softmax_loss(u, v, c, tgt))

    if not args.only or "softmax" in args.only:
        out["softmax fwd"] = _time(jax.jit(sm), u, v, c, tgt, repeats=args.repeats)
        out["softmax fwd+bwd"] = _time(
            jax.jit(jax.grad(sm, argnums=(0, 1, 2))), u, v, c, tgt, repeats=args.repeats
        )
    hs = u.reshape(bs, t, -1)
    neg = loss_lib.sample_negatives(key, batch["targets"], n_items, 1, None)
    valid = batch["mask"] & (batch["targets"] > 0)

    def aux(p, hs, batch, neg, valid):
        return loss_lib.aux_loss(p, hs, batch["targets"], neg, valid)

    if not args.only or "aux" in args.only:
        out["aux fwd+bwd"] = _time(
            jax.jit(jax.grad(aux, argnums=(0, 1))), params, hs, batch, neg, valid
        )

    def loss(p, batch):
        return loss_lib.losses(p, rc.model, rc.loss, batch, key, log_pop)[0]

    if not args.only or "loss" in args.only:
        out["losses fwd+bwd"] = _time(jax.jit(jax.grad(loss)), params, batch, repeats=args.repeats)
    if not args.only or "matmul" in args.only:
        out["matmul peak GFLOP/s"] = bench.matmul_peak_flops(2048) / 1e9
    for k, val in out.items():
        print(f"{k:24s} {val:8.3f}")


if __name__ == "__main__":
    main()
