"""Latency floor of one recurrent step on this machine: a bare ``lax.scan`` whose step is one
``[B, H] x [H, 6H]`` matmul plus two gate nonlinearities (the shapes of the bench's aGRU step),
forward and forward+backward, per step.

``python benchmarks/scan_floor.py [--batch 256 --hidden 100 --steps 200]``

The aGRU step of the benchmark cannot be faster than this; the gap between the two is what the
step's extra work (context select, relevance attention, masks) costs.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def _median_seconds(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    b, h, t = args.batch, args.hidden, args.steps
    w_HxG = jax.random.normal(jax.random.PRNGKey(0), (h, 6 * h)) * 0.1
    x_TxBxG = jax.random.normal(jax.random.PRNGKey(1), (t, b, 6 * h))

    def run(w, x, unroll):
        def body(h_BxH, x_BxG):
            a = h_BxH @ w + x_BxG
            h_BxH = jnp.tanh(a[:, :h]) * jax.nn.sigmoid(a[:, h : 2 * h])
            return h_BxH, h_BxH

        _, hs = jax.lax.scan(body, jnp.zeros((b, h)), x, unroll=unroll)
        return jnp.sum(hs)

    flops = 2 * b * h * 6 * h
    for unroll in (1, 4):
        fwd = jax.jit(lambda w, x, u=unroll: run(w, x, u))
        grad = jax.jit(jax.grad(lambda w, x, u=unroll: run(w, x, u)))
        for name, fn, mult in (("forward", fwd, 1), ("forward+backward", grad, 3)):
            sec = _median_seconds(fn, w_HxG, x_TxBxG) / t
            print(
                f"unroll {unroll} {name:17s} {sec * 1e3:.3f} ms/step "
                f"({mult * flops / sec / 1e9:.0f} GFLOP/s of step matmuls)"
            )


if __name__ == "__main__":
    main()
