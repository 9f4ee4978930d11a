"""Data parallelism, item-table sharding, multi-host and bf16 (`durgru_jax/parallel.py`).

The multi-device runs need ``--xla_force_host_platform_device_count`` before jax is imported,
so they run in a subprocess: this file run as a script (``_child``) trains the tiny config
on 1 device, on a (4 data x 1 model) mesh and on a (2 x 2) mesh (item tables split, stopped
and resumed from its sharded checkpoint), and in bf16, and prints the results as JSON. The
multi-host test starts two ``launch.py`` processes of 2 CPU devices each on localhost.
Every subprocess compiles with ``--xla_backend_optimization_level=0`` (the compile, not the
run, is what costs time here); runs compared with each other use the same flags.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_force_host_platform_device_count="


def tiny_config(data_parallel: int = 1, model_parallel: int = 1, dtype: str = "float32"):
    """conftest's tiny config, 2 epochs, with the given mesh and compute dtype."""
    if TESTS not in sys.path:
        sys.path.insert(0, TESTS)
    from conftest import make_tiny_config

    c = make_tiny_config()
    c.train.epochs = 2
    c.train.log_every = 1
    c.optim.learning_rate = 1e-2  # the runs compared must move
    # Compile time is what costs here: the plain GRU cell (the sharding code does not depend
    # on the cell), no scan unrolling, one evaluation chunk.
    c.model.cell = "gru"
    c.model.scan_unroll = 1
    c.eval.batch_size = 128
    c.train.data_parallel = data_parallel
    c.train.model_parallel = model_parallel
    c.model.compute_dtype = dtype
    return c


def _losses(workdir: str) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]


def _summary(workdir: str, results: dict) -> dict:
    return {"losses": _losses(workdir), "metrics": results["metrics"], "train": results["train"]}


def _child(workdir: str) -> None:
    """Runs in a subprocess with 4 forced CPU devices; prints one JSON line."""
    import jax
    import jax.numpy as jnp

    from durgru_jax import loss as loss_lib
    from durgru_jax import model as model_lib
    from durgru_jax import parallel
    from durgru_jax import train as train_lib
    from durgru_jax.config import LossConfig, from_config
    from durgru_jax.data import dataset as ds
    from durgru_jax.data.sources import load_prepared

    assert jax.device_count() == 4
    out = {}
    for name, dp, mp, dtype in (("1x1", 1, 1, "float32"), ("4x1", 4, 1, "float32")):
        w = os.path.join(workdir, name)
        out[name] = _summary(w, train_lib.train_and_evaluate(tiny_config(dp, mp, dtype), w))
    # (2 x 2): item tables split over "model"; killed after one epoch, resumed from ckpt.
    w = os.path.join(workdir, "2x2")
    assert train_lib.train_and_evaluate(tiny_config(2, 2), w, stop_after_epochs=1)["interrupted"]
    out["2x2"] = _summary(w, train_lib.train_and_evaluate(tiny_config(2, 2), w))
    w = os.path.join(workdir, "bf16")
    out["bf16"] = _summary(w, train_lib.train_and_evaluate(tiny_config(1, 1, "bfloat16"), w))

    # Shardings of a (2 x 2) train state, and the padded item rows (81 -> 82).
    c = tiny_config(2, 2)
    p = load_prepared(c.data, seed=0)
    rc = from_config(
        c,
        n_items=p.n_items,
        max_len=12,
    )
    tx = train_lib.make_optimizer(rc.optim, 10)
    mesh = parallel.make_mesh(2, 2)
    params = model_lib.init_params(rc.model, 0, p.log_popularity)
    padded = parallel.pad_item_tables(params, parallel.padded_rows(p.n_items + 1, mesh))
    state = {"params": padded, "opt_state": tx.init(padded)}
    sh = parallel.state_shardings(state, mesh)
    adam = sh["opt_state"][1][0]
    out["specs"] = {
        "item_emb": str(sh["params"]["item_emb"].spec),
        "out.w": str(sh["params"]["out"]["w"].spec),
        "out.b": str(sh["params"]["out"]["b"].spec),
        "aux.w": str(sh["params"]["aux"]["w"].spec),
        "adam.mu.item_emb": str(adam.mu["item_emb"].spec),
        "adam.count": str(adam.count.spec),
    }
    out["rows"] = [int(params["item_emb"].shape[0]), int(padded["item_emb"].shape[0])]
    back = parallel.local_params(jax.device_put(state, sh)["params"], p.n_items + 1)
    out["unpadded_equal"] = bool(jax.tree.all(jax.tree.map(jnp.array_equal, params, back)))
    out["gathered_devices"] = len({d for x in jax.tree.leaves(back) for d in x.sharding.device_set})
    # Padded rows change no loss: all-masked batch rows (30 -> 32) and padded item rows.
    windows = ds.train_windows(p, pack=True)
    batch = next(ds.iterate_train_batches(windows, 30, 0, 0))
    place = parallel.BatchPlacer(parallel.make_mesh(4, 1), 32)
    key, lp = jax.random.key(0), jnp.asarray(p.log_popularity)
    det = LossConfig(aux_weight=0.0)  # no random draws whose shapes follow the batch
    ev = jax.jit(lambda q, b: loss_lib.losses(q, rc.model, det, b, key, lp, train=False)[0])
    on_mesh = jax.device_put(padded, parallel.replicated(place.mesh))
    out["pad_losses"] = [float(ev(params, batch)), float(ev(on_mesh, place(batch)))]
    # bf16: the dtypes of the matmuls and of the gradients (traced, not compiled).
    full = next(ds.iterate_train_batches(windows, 32, 0, 0))

    def loss_bf16(q):
        q2, b2 = parallel.cast_for_compute(q, full, "bfloat16")
        return loss_lib.losses(q2, rc.model, rc.loss, b2, key, lp)[0]

    grad_bf16 = jax.grad(loss_bf16)
    eqns = _eqns(jax.make_jaxpr(grad_bf16)(params).jaxpr)
    dots = {str(v.aval.dtype) for e in eqns if e.primitive.name == "dot_general" for v in e.invars}
    out["bf16_dots"] = sorted(dots)
    grads = jax.eval_shape(grad_bf16, params)
    out["bf16_grad_dtypes"] = sorted({str(g.dtype) for g in jax.tree.leaves(grads)})
    print("RESULT " + json.dumps(out), flush=True)


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs nested in it (scan bodies, pjit...)."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


def _env(n_devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=XLA_FLAGS + str(n_devices), JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, TESTS, env.get("PYTHONPATH", "")])
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _start_two_processes(tmp: str) -> list[subprocess.Popen]:
    """Two launch.py processes on localhost, 2 CPU devices each; train.data_parallel=0 makes
    one 4 x 1 mesh over both."""
    cfg = os.path.join(tmp, "cfg.py")
    with open(cfg, "w") as f:
        f.write("from test_sharding import tiny_config\n\n\ndef get_config():\n")
        f.write("    return tiny_config(0)\n")
    addr = f"localhost:{_free_port()}"
    procs = []
    for i in range(2):
        cmd = [sys.executable, "launch.py", f"--config={cfg}", f"--workdir={tmp}/run"]
        cmd += [f"--coordinator_address={addr}", "--num_processes=2", f"--process_id={i}"]
        with open(os.path.join(tmp, f"log{i}.txt"), "w") as log:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=_env(2), stdout=log, stderr=log))
    return procs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The child's results and the two-process run's directory; the three processes run at
    the same time (each is mostly one compiling thread)."""
    multi = str(tmp_path_factory.mktemp("multihost"))
    procs = _start_two_processes(multi)
    workdir = str(tmp_path_factory.mktemp("sharding"))
    try:
        res = subprocess.run(
            [sys.executable, __file__, workdir],
            cwd=ROOT,
            env=_env(4),
            capture_output=True,
            text=True,
            timeout=600,
        )
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert res.returncode == 0, res.stderr[-4000:]
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    logs = [open(os.path.join(multi, f"log{i}.txt")).read() for i in range(2)]
    return {
        "child": json.loads(line[len("RESULT ") :]),
        "multi": {"codes": codes, "logs": logs, "workdir": os.path.join(multi, "run")},
    }


@pytest.fixture(scope="module")
def child(runs) -> dict:
    return runs["child"]


def _assert_same_run(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert len(a["losses"]) == len(b["losses"]) >= 4
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=rtol)
    assert a["train"]["steps"] == b["train"]["steps"]
    assert a["train"]["events"] == b["train"]["events"]
    assert a["train"]["best_epoch"] == b["train"]["best_epoch"]
    assert a["metrics"].keys() == b["metrics"].keys()
    for k, v in a["metrics"].items():
        assert b["metrics"][k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_data_parallel_matches_one_device(child) -> None:
    _assert_same_run(child["1x1"], child["4x1"])


def test_item_sharded_mesh_resumed_matches_one_device(child) -> None:
    # (2 x 2) with the tables split over "model", interrupted after epoch 0 and restored
    # from its sharded checkpoint: same losses and (best-checkpoint) metrics as one device.
    _assert_same_run(child["1x1"], child["2x2"])


def test_state_shardings_and_item_padding(child) -> None:
    assert child["specs"] == {
        "item_emb": "P('model',)",
        "out.w": "P(None, 'model')",
        "out.b": "P('model',)",
        "aux.w": "P()",
        "adam.mu.item_emb": "P('model',)",
        "adam.count": "P()",
    }
    assert child["rows"] == [81, 82]  # 80 items + padding id 0, rounded up to 2 shards
    assert child["unpadded_equal"] and child["gathered_devices"] == 1  # for evaluation


def test_padded_rows_change_no_loss(child) -> None:
    a, b = child["pad_losses"]
    assert b == pytest.approx(a, rel=1e-6)


def test_bf16_loss_and_dtypes(child) -> None:
    # The first logged loss is the loss of the initial params on the same batch and key.
    f32, bf16 = child["1x1"]["losses"][0], child["bf16"]["losses"][0]
    assert f32 != bf16  # it really computed in bf16...
    assert bf16 == pytest.approx(f32, rel=2e-3)  # ...and the f32 logsumexp kept it close
    assert child["bf16_dots"] == ["bfloat16"]
    assert child["bf16_grad_dtypes"] == ["float32"]


def test_bf16_training_matches_f32_within_noise(child) -> None:
    f32, bf16 = child["1x1"], child["bf16"]
    np.testing.assert_allclose(bf16["losses"], f32["losses"], rtol=5e-3)
    for k in ("test/ndcg@10", "test/hr@10", "valid/ndcg@10", "test/mrr@20"):
        assert bf16["metrics"][k] == pytest.approx(f32["metrics"][k], abs=0.03), k


def test_two_processes_match_single_process_mesh(runs) -> None:
    """Two launch.py processes (a 4 x 1 mesh over 2 x 2 CPU devices) give the one-process
    4 x 1 run's losses and metrics; only process 0 writes files."""
    multi = runs["multi"]
    for code, log in zip(multi["codes"], multi["logs"], strict=True):
        assert code == 0, log[-4000:]
    with open(os.path.join(multi["workdir"], "results.json")) as f:
        results = json.load(f)
    # Also: metrics.jsonl has each record once (same count as the one-process run).
    _assert_same_run(runs["child"]["4x1"], _summary(multi["workdir"], results))


def test_config_and_flag_errors() -> None:
    from durgru_jax import parallel
    from durgru_jax.config import ConfigError, ModelConfig, TrainConfig

    with pytest.raises(ConfigError, match="model.compute_dtype"):
        ModelConfig(compute_dtype="float16")
    with pytest.raises(ConfigError, match="train.data_parallel"):
        TrainConfig(data_parallel=-1)
    with pytest.raises(ConfigError, match="train.model_parallel"):
        TrainConfig(model_parallel=0)
    assert parallel.make_mesh(1, 1) is None  # the plain one-device path
    with pytest.raises(ConfigError, match=r"data_parallel=2 x config\.train\.model_parallel=1"):
        parallel.make_mesh(2, 1)  # this process has one CPU device
    with pytest.raises(ValueError, match="--process_id"):
        parallel.initialize_distributed("localhost:1234", num_processes=2)
    assert not parallel.initialize_distributed()  # no flags: nothing to do
    assert parallel.is_primary()
    assert parallel.round_up(30, 4) == 32 and parallel.round_up(32, 4) == 32


if __name__ == "__main__":
    _child(sys.argv[1])
