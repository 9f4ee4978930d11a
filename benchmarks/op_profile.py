"""Per-XLA-op time of the bench train step (or evaluation) from a `jax.profiler` trace.

``python benchmarks/op_profile.py [--what train|eval] [--top 30]`` runs a few steps under
`jax.profiler.trace`, reads the trace back with `jax.profiler.ProfileData` and prints the
HLO ops (thunks) that took the most time, summed over the traced steps.
"""

from __future__ import annotations

import argparse
import collections
import glob
import importlib.util
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import bench
from durgru_jax import model as model_lib
from durgru_jax.config import from_config
from durgru_jax.evaluate import evaluate
from durgru_jax.train import make_optimizer, make_train_step


def _config(variant):
    spec = importlib.util.spec_from_file_location("bench_cfg", "configs/bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(variant)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="train")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--variant", default="ml1m")
    ap.add_argument("--override", action="append", default=[])
    ap.add_argument("--hlo", default="", help="write the train step's optimised HLO here")
    args = ap.parse_args()
    config = _config(args.variant)
    from durgru_jax.runner import apply_override

    for o in args.override:
        apply_override(config, o)
    b = config.bench
    n_items, t, bs = int(b.n_items), int(b.max_len), int(config.train.batch_size)
    rc = from_config(config, n_items=n_items, n_input_contexts=4, n_transfer_contexts=5)
    rng = np.random.default_rng(0)
    params = model_lib.init_params(rc.model, 0)
    if args.what == "train":
        batch = bench._random_batch(rng, bs, t, n_items, 4, 5, np.full(bs, t))
        log_pop = jnp.full((n_items + 1,), -np.log(n_items), jnp.float32)
        tx = make_optimizer(rc.optim, 1000)
        step = make_train_step(rc, tx, log_pop)
        state = {
            "params": params,
            "opt_state": tx.init(params),
            "step": jnp.asarray(0, jnp.int32),
            "finite": jnp.asarray(True),
        }
        if args.hlo:
            with open(args.hlo, "w") as f:
                f.write(step.lower(state, batch).compile().as_text())
        state, _ = step(state, batch)
        jax.block_until_ready(state)

        def work():
            nonlocal state
            for _ in range(args.steps):
                state, _ = step(state, batch)
            jax.block_until_ready(state)
    else:
        examples = bench.eval_examples(rng, int(b.n_eval_users), t, n_items, 4, 5)
        evaluate(params, rc, examples, n_items, "p")

        def work():
            for _ in range(args.steps):
                evaluate(params, rc, examples, n_items, "p")

    d = tempfile.mkdtemp()
    with jax.profiler.trace(d):
        work()
    path = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
    total = collections.Counter()
    count = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                total[(plane.name, line.name, ev.name)] += ev.duration_ns
                count[(plane.name, line.name, ev.name)] += 1
    for (pl, ln, name), ns in total.most_common(args.top):
        n = count[(pl, ln, name)]
        print(f"{ns / 1e6 / args.steps:10.1f} ms/step {n:7d}x  {ln[:20]:20s} {name[:90]}")


if __name__ == "__main__":
    main()
