"""End-to-end tests of durgru_jax.train and durgru_jax.runner on the tiny config."""

from __future__ import annotations

import json
import math
import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from durgru_jax import run_lib, runner
from durgru_jax import train as train_lib
from durgru_jax.config import ConfigError, from_config
from durgru_jax.data import dataset as ds
from durgru_jax.errors import UserError


def _read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _train_records(records: list[dict]) -> dict[int, dict]:
    return {r["step"]: r for r in records if "train/loss" in r}


def _valid_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "valid/ndcg@10" in r and not r.get("final")]


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, make_tiny):
    """One uninterrupted tiny run, shared by the tests that only read its outputs."""
    workdir = str(tmp_path_factory.mktemp("run_a"))
    results = train_lib.train_and_evaluate(make_tiny(), workdir)
    return workdir, results


def test_end_to_end_outputs(run_a) -> None:
    workdir, results = run_a
    with open(os.path.join(workdir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model"]["hidden_dim"] == 16 and cfg["data"]["max_len"] == 12

    records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert _train_records(records) and _valid_records(records)
    assert all(math.isfinite(r["train/loss"]) for r in _train_records(records).values())
    assert records[-1].get("final") is True
    # The test set is evaluated once, at the end, never during training.
    assert not any(k.startswith("test/") for r in records[:-1] for k in r)

    with open(os.path.join(workdir, "results.json")) as f:
        on_disk = json.load(f)
    assert on_disk["metrics"] == pytest.approx(results["metrics"])
    m = results["metrics"]
    for key in ("test/ndcg@10", "valid/hr@10", "test/mrr@20", "test/item_coverage@5"):
        assert key in m and 0.0 <= m[key] <= 1.0, key
    assert m["test/n_examples"] == 120 and m["valid/n_examples"] == 120
    assert m["test/hr@5"] <= m["test/hr@10"] <= m["test/hr@20"]
    tr = results["train"]
    assert tr["seconds"] > 0 and tr["events_per_second"] > 0
    assert tr["epochs"] == 3 and tr["selected_on"] == "valid/ndcg@10"
    windows = ds.train_windows(ds.prepare(*_tiny_events(cfg)), pack=True)
    assert tr["steps"] == 3 * ds.n_train_batches(windows, 32)
    assert tr["events"] == 3 * int((windows["mask"] & (windows["targets"] > 0)).sum())
    pop = results["baselines"]["most_popular"]
    assert "test/ndcg@10" in pop and "valid/hr@10" in pop
    assert os.path.isdir(os.path.join(workdir, "ckpt", "latest"))
    assert os.path.isdir(os.path.join(workdir, "ckpt", "best"))


def _tiny_events(cfg: dict):
    from durgru_jax.data.sources import load_events, prep_config

    events, _ = load_events(cfg["data"])
    events = events[[c for c in events.columns if not c.startswith("_")]]
    return events, prep_config(cfg["data"], seed=cfg["seed"])


def test_best_checkpoint_is_selected_on_validation(run_a) -> None:
    workdir, results = run_a
    valid = _valid_records(_read_jsonl(os.path.join(workdir, "metrics.jsonl")))
    assert [r["epoch"] for r in valid] == [0, 1, 2]
    scores = [r["valid/ndcg@10"] for r in valid]
    best = int(np.argmax(scores))  # first maximum: later ties do not replace the best
    assert results["train"]["best_epoch"] == valid[best]["epoch"]
    assert results["train"]["best_step"] == valid[best]["step"]
    # The reported validation metrics are those of the restored best checkpoint.
    assert results["metrics"]["valid/ndcg@10"] == pytest.approx(scores[best], abs=1e-6)


def test_kill_and_resume_reproduces_the_uninterrupted_run(run_a, tmp_path, tiny_config) -> None:
    dir_a, res_a = run_a
    dir_b = str(tmp_path / "b")
    first = train_lib.train_and_evaluate(tiny_config, dir_b, stop_after_epochs=1)
    assert first == {"interrupted": True, "epoch": 0}
    assert not os.path.exists(os.path.join(dir_b, "results.json"))
    res_b = train_lib.train_and_evaluate(tiny_config, dir_b)

    assert res_b["metrics"].keys() == res_a["metrics"].keys()
    for k, v in res_a["metrics"].items():
        assert res_b["metrics"][k] == pytest.approx(v, abs=1e-6), k
    for k in ("steps", "epochs", "best_epoch", "best_step", "events"):
        assert res_b["train"][k] == res_a["train"][k], k

    rec_a = _read_jsonl(os.path.join(dir_a, "metrics.jsonl"))
    rec_b = _read_jsonl(os.path.join(dir_b, "metrics.jsonl"))
    train_a, train_b = _train_records(rec_a), _train_records(rec_b)
    assert sorted(train_a) == sorted(train_b)
    resumed = [s for s in train_a if train_a[s]["epoch"] >= 1]
    assert resumed
    for s in train_a:
        for k in ("train/loss", "train/target_loss", "train/aux_loss"):
            assert train_b[s][k] == pytest.approx(train_a[s][k], abs=1e-6), (s, k)
    for ra, rb in zip(_valid_records(rec_a), _valid_records(rec_b), strict=True):
        assert rb["valid/ndcg@10"] == pytest.approx(ra["valid/ndcg@10"], abs=1e-6)


def _restore_latest(workdir: str):
    path = os.path.join(workdir, "ckpt", "latest")
    with ocp.CheckpointManager(path) as mngr:
        step = mngr.latest_step()
        restored = mngr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    return step, restored.state, dict(restored.meta)


def test_nan_after_the_first_epoch_keeps_the_last_good_checkpoint(
    tmp_path, tiny_config, monkeypatch
) -> None:
    workdir = str(tmp_path / "nan")
    real = ds.iterate_train_batches

    def poisoned(windows, batch_size, seed, epoch, start_batch=0):
        for batch in real(windows, batch_size, seed, epoch, start_batch):
            if epoch >= 1:  # a NaN duration reaches the loss through the duration factor
                batch = dict(batch, dur=np.full_like(batch["dur"], np.nan))
            yield batch

    monkeypatch.setattr(ds, "iterate_train_batches", poisoned)
    with pytest.raises(run_lib.NonFiniteLossError) as err:
        train_lib.train_and_evaluate(tiny_config, workdir)
    assert isinstance(err.value, UserError)  # launch.py prints its message as one line
    steps_per_epoch = ds.n_train_batches(
        ds.train_windows(ds.prepare(*_tiny_events(tiny_config.to_dict())), pack=True), 32
    )
    msg = str(err.value)
    # log_every=2: the first check after the poisoned epoch starts.
    fail_step = 2 * (steps_per_epoch // 2 + 1)
    assert f"step {fail_step}" in msg and "epoch 1" in msg
    assert f"step {steps_per_epoch})" in msg
    assert os.path.join(workdir, "ckpt", "latest") in msg
    assert not os.path.exists(os.path.join(workdir, "results.json"))

    step, state, meta = _restore_latest(workdir)
    assert step == steps_per_epoch and meta["epoch"] == 0
    assert int(state["step"]) == steps_per_epoch
    leaves = jax.tree.leaves(state["params"])
    assert leaves and all(np.isfinite(np.asarray(x)).all() for x in leaves)

    # Without the poison, the run resumes from that checkpoint and finishes.
    monkeypatch.setattr(ds, "iterate_train_batches", real)
    results = train_lib.train_and_evaluate(tiny_config, workdir)
    assert results["train"]["steps"] == 3 * steps_per_epoch
    assert all(math.isfinite(v) for v in results["metrics"].values())


def test_diverging_config_raises_naming_step_and_checkpoint(tmp_path, tiny_config) -> None:
    tiny_config.optim.name = "sgd"
    tiny_config.optim.learning_rate = 1e30
    tiny_config.optim.clip_norm = 0.0
    tiny_config.train.epochs = 1
    workdir = str(tmp_path / "div")
    with pytest.raises(run_lib.NonFiniteLossError) as err:
        train_lib.train_and_evaluate(tiny_config, workdir)
    msg = str(err.value)
    assert re.search(r"by step \d+ \(epoch 0", msg), msg
    assert "no checkpoint had been written yet" in msg
    latest = os.path.join(workdir, "ckpt", "latest")
    assert not os.path.isdir(latest) or not [d for d in os.listdir(latest) if d.isdigit()]


def test_apply_override_casts_types_and_rejects_unknown_keys(tiny_config) -> None:
    c = tiny_config
    runner.apply_override(c, "train.epochs=7")
    runner.apply_override(c, "optim.learning_rate=1")
    runner.apply_override(c, "eval.exclude_history=false")
    runner.apply_override(c, "eval.ks=(1, 3)")
    runner.apply_override(c, " model.duration_mode = none ")
    runner.apply_override(c, "data.synthetic.n_users=33")
    assert c.train.epochs == 7 and type(c.train.epochs) is int
    assert c.optim.learning_rate == 1.0 and type(c.optim.learning_rate) is float
    assert c.eval.exclude_history is False
    assert c.eval.ks == (1, 3)
    assert c.model.duration_mode == "none"
    assert c.data.synthetic.n_users == 33
    from_config(c)  # the result still builds

    with pytest.raises(KeyError, match="hiden_dim"):
        runner.apply_override(c, "model.hiden_dim=5")
    with pytest.raises(KeyError, match="modle"):
        runner.apply_override(c, "modle.hidden_dim=5")
    with pytest.raises(ValueError, match="key=value"):
        runner.apply_override(c, "model.hidden_dim")
    with pytest.raises(ValueError, match="boolean"):
        runner.apply_override(c, "eval.exclude_history=maybe")


def test_apply_override_rejects_lossy_casts(tiny_config) -> None:
    with pytest.raises(ValueError):
        runner.apply_override(tiny_config, "train.epochs=2.5")


def test_runner_run_writes_comparisons(tmp_path, tiny_config) -> None:
    tiny_config.train.epochs = 1
    tiny_config.compare = ("model.duration_mode=none",)
    workdir = str(tmp_path / "cmp")
    results = runner.run(tiny_config, workdir)
    comp = results["comparisons"]
    assert list(comp) == ["model.duration_mode=none"]
    assert "test/ndcg@10" in comp["model.duration_mode=none"]["metrics"]
    assert comp["model.duration_mode=none"]["train"]["steps"] == results["train"]["steps"]
    with open(os.path.join(workdir, "results.json")) as f:
        on_disk = json.load(f)
    assert on_disk["comparisons"]["model.duration_mode=none"]["metrics"] == pytest.approx(
        comp["model.duration_mode=none"]["metrics"]
    )
    assert on_disk["model"]["duration_mode"] == "input"
    (sub,) = os.listdir(os.path.join(workdir, "compare"))
    with open(os.path.join(workdir, "compare", sub, "config.json")) as f:
        child = json.load(f)
    assert child["model"]["duration_mode"] == "none" and child["compare"] == []
    assert tiny_config.model.duration_mode == "input"  # the parent config is untouched


def test_select_metric_on_test_is_rejected(tmp_path, tiny_config) -> None:
    tiny_config.train.select_metric = "test/ndcg@10"
    with pytest.raises(ConfigError, match="select_metric"):
        from_config(tiny_config)
    with pytest.raises(ConfigError, match="never the test set"):
        train_lib.train_and_evaluate(tiny_config, str(tmp_path / "sel"))
    assert not os.path.exists(tmp_path / "sel" / "ckpt")


def _write_ratings(path, n_users: int = 40, per_user: int = 15, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, 61), size=per_user, replace=False)
        ts = 978300000 + np.sort(rng.choice(10**6, size=per_user, replace=False))
        ratings = rng.integers(1, 6, size=per_user)
        lines += [f"{u}::{i}::{r}::{t}" for i, r, t in zip(items, ratings, ts, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_movielens_ratings_with_rating_head(tmp_path, tiny_config) -> None:
    path = tmp_path / "ratings.dat"
    _write_ratings(path)
    c = tiny_config
    c.data.source = "movielens"
    c.data.path = str(path)
    c.data.hour_buckets = 0
    c.loss.rating_weight = 1.0
    c.train.epochs = 1
    results = train_lib.train_and_evaluate(c, str(tmp_path / "ml"))
    m = results["metrics"]
    for split in ("valid", "test"):
        rmse, mae = m[f"{split}/rmse"], m[f"{split}/mae"]
        assert math.isfinite(rmse) and 0.0 <= mae <= rmse, (split, rmse, mae)
    assert results["model"]["rating_head"] is True
    assert results["data"]["format"] == "movielens-dat" and results["data"]["rows_read"] == 600
    assert "test/rmse" not in results["baselines"]["most_popular"]


def test_error_metrics_are_minimised_in_model_selection() -> None:
    from durgru_jax.run_lib import higher_is_better as _higher_is_better

    assert _higher_is_better("valid/ndcg@10")
    assert _higher_is_better("valid/recall@20")
    assert not _higher_is_better("valid/rmse")
    assert not _higher_is_better("valid/mae")
    assert not _higher_is_better("valid/logloss")


def test_select_and_stop_keeps_the_first_best_and_counts_patience(tmp_path) -> None:
    """An error metric (minimised), patience 2: a tie is not an improvement, a missing or NaN
    metric is a bad evaluation, and the second bad evaluation in a row stops."""
    log = run_lib.Jsonl(str(tmp_path / "m.jsonl"))
    meta, saved = run_lib.new_meta(), []

    def select(epoch, valid):
        return run_lib.select_and_stop(
            meta,
            valid,
            select_metric="valid/rmse",
            patience=2,
            epoch=epoch,
            on_best=lambda: saved.append(epoch),
            log=log,
            record={"step": 10 * epoch, "epoch": epoch},
        )

    assert [select(0, {"valid/rmse": 0.5}), select(1, {"valid/rmse": 0.4})] == [False, False]
    assert [select(2, {"valid/rmse": 0.4}), select(3, {"valid/rmse": 0.3})] == [False, False]
    assert saved == [0, 1, 3] and meta["best_epoch"] == 3 and meta["best_metric"] == -0.3
    assert [select(4, {"valid/rmse": math.nan}), select(5, {"valid/mae": 0.1})] == [False, True]
    assert meta["bad_epochs"] == 2 and saved == [0, 1, 3]
    assert [r["step"] for r in _read_jsonl(log.path)] == [0, 10, 20, 30, 40, 50]


def test_check_finite_message() -> None:
    run_lib.check_finite(np.bool_(True), step=1, epoch=0, loss=math.nan)  # finite: no error
    with pytest.raises(run_lib.NonFiniteLossError) as err:
        run_lib.check_finite(False, step=7, epoch=2, loss=np.float32(np.inf), who="lr: ",
                             hint="Try a lower learning rate.")  # fmt: skip
    assert str(err.value) == (
        "lr: non-finite training loss by step 7 (epoch 2; last loss inf). "
        "Try a lower learning rate."
    )


def test_gap_input_sizes_its_table_from_the_datas_gap_buckets(tmp_path, tiny_config) -> None:
    c = tiny_config
    c.model.cell = "gru"
    c.model.gap_input = True
    c.train.epochs = 1
    results = train_lib.train_and_evaluate(c, str(tmp_path / "gap"))
    # 4 quantile buckets of the time gap plus bucket 0 (no previous event), as the aGRU's
    assert c.data.gap_buckets == 4 and results["model"]["n_transfer_contexts"] == 5
    assert math.isfinite(results["metrics"]["test/ndcg@10"])
