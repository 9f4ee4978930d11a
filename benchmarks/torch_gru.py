"""A straightforward PyTorch ``nn.GRU`` next-item model on the bench's shapes (the speed peer).

Not part of the package and not a dependency: install a CPU build of torch beside it
(``pip install torch==2.13.0``) to run it.

``python benchmarks/torch_gru.py --out runs/bench/torch_bench.json``

Shapes and measurement as ``configs/bench.py`` (MovieLens-1M): 3,706 items (+ padding id 0),
embedding 64, hidden 100, windows of T = 200 events, batch 256, every row full; item
embedding -> one-layer ``nn.GRU`` -> linear layer over all items, softmax cross-entropy at
every valid step (id 0 never a target), Adam (lr 1e-3). Random batches cycled as in the bench;
one warm-up step, then ``--steps`` timed steps; events = valid steps (mask and a next item),
exactly as ``train_events_per_second`` of ``bench.json``. ``torch.set_num_threads`` is set to
the same core count our run uses (all of them, ``os.cpu_count()``, unless ``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from torch import nn


class GRURec(nn.Module):
    def __init__(self, n_items: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.emb = nn.Embedding(n_items + 1, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, n_items + 1)

    def forward(self, items_BxT: torch.Tensor) -> torch.Tensor:
        hs, _ = self.gru(self.emb(items_BxT))
        return self.out(hs)  # [B, T, N + 1] logits


def _batch(rng, b, t, n_items):
    items = torch.from_numpy(rng.integers(1, n_items + 1, (b, t)).astype(np.int64))
    targets = torch.from_numpy(rng.integers(1, n_items + 1, (b, t)).astype(np.int64))
    return items, targets


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench/torch_bench.json")
    ap.add_argument("--n_items", type=int, default=3706)
    ap.add_argument("--embed_dim", type=int, default=64)
    ap.add_argument("--hidden_dim", type=int, default=100)
    ap.add_argument("--max_len", type=int, default=200)
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--n_batches", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="0: os.cpu_count()")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, b, t = args.n_items, args.batch_size, args.max_len
    model = GRURec(n, args.embed_dim, args.hidden_dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = [_batch(rng, b, t, n) for _ in range(args.n_batches)]

    def step(items, targets):
        logits = model(items)
        logits[..., 0] = float("-inf")  # padding is never a candidate, as in our loss
        # Every row is full and every target real here: all B x T steps are valid.
        loss = nn.functional.cross_entropy(logits.reshape(-1, n + 1), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step(*batches[0])  # warm-up
    n_events = 0
    times = []
    t0 = time.perf_counter()
    for i in range(args.steps):
        items, targets = batches[i % len(batches)]
        ts = time.perf_counter()
        loss = step(items, targets)
        times.append(time.perf_counter() - ts)
        n_events += int((targets > 0).sum())
    train_s = time.perf_counter() - t0
    out = {
        "framework": f"torch {torch.__version__}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "shapes": {
            "n_items": n,
            "max_len": t,
            "batch_size": b,
            "hidden_dim": args.hidden_dim,
            "embed_dim": args.embed_dim,
            "cell": "torch.nn.GRU",
            "loss_target": "full",
        },
        "train_steps_timed": args.steps,
        "train_step_seconds": train_s / args.steps,
        "train_step_seconds_median": float(np.median(times)),
        "train_events_per_second": n_events / train_s,
        "final_loss": float(loss.detach()),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
