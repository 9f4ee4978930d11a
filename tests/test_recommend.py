"""Recommending with a finished run: artifacts, exactness against the evaluator, bad input."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from durgru_jax import artifacts as artifacts_lib
from durgru_jax import evaluate, model_export
from durgru_jax import recommend_inputs as inputs
from durgru_jax.data import dataset as ds
from durgru_jax.data import sources, synthetic
from durgru_jax.recommend import (
    CheckpointMismatchError,
    Recommender,
    RunNotReadyError,
)

VARIANTS = [
    ("agru", "input"),
    ("agru", "gate"),
    ("agru", "none"),
    ("gru", "input"),
    ("recommended", "gate"),
    ("repeat", "gate"),
    ("sasrec", "none"),
]


def _raw_events(config) -> pd.DataFrame:
    events = synthetic.generate_synthetic(**config.data.synthetic.to_dict())
    return events[[c for c in events.columns if not c.startswith("_")]]


def _evaluator_topk(rec: Recommender, p: ds.Prepared, k: int):
    """Top-k and their scores for every test example, by the evaluator's loop
    (`evaluate.rank_examples`: its batching, trimming, model and ranker)."""
    rc = rec.rc
    ex = ds.eval_examples(p, "test")
    r = evaluate.rank_examples(
        evaluate.model_scorer(rec.params, rc),
        ex,
        p.n_items,
        kmax=k,
        batch_size=rc.eval.batch_size,
        item_chunk=rc.eval.item_chunk,
        exclude_history=rc.eval.exclude_history,
        with_scores=True,
    )
    return ex, r.top, r.top_score


# ---------------------------------------------------------------------- artifacts


def test_artifacts_hold_what_training_fitted(runs) -> None:
    workdir, config = runs()
    art = artifacts_lib.load_artifacts(workdir)
    p = sources.load_prepared(config.data, seed=int(config.seed))
    assert art.item_ids.dtype == np.int64
    np.testing.assert_array_equal(art.item_ids, p.item_ids[1:].astype(np.int64))
    np.testing.assert_array_equal(art.log_popularity, p.log_popularity)
    np.testing.assert_array_equal(art.gap_edges, p.gap_edges)
    assert art.n_transfer_contexts == p.n_transfer_contexts
    assert art.hour_buckets == 4 and art.behaviors == ()
    assert art.duration_source == "column" and art.has_durations
    # Synthetic users are 0..n-1 in file order, one sequence each.
    np.testing.assert_array_equal(art.user_ids[art.seq_owner], np.arange(p.n_users))
    np.testing.assert_array_equal(art.dur_mean[art.seq_owner], p.dur_mean)
    np.testing.assert_array_equal(art.dur_std[art.seq_owner], p.dur_std)
    np.testing.assert_array_equal(art.dur_ok[art.seq_owner], p.dur_user_ok)
    with open(os.path.join(workdir, "results.json")) as f:
        model = json.load(f)["model"]
    assert dataclasses.asdict(art.run_config.model) == model
    assert art.data_config["synthetic"]["n_users"] == 120
    assert not [f for f in os.listdir(workdir) if ".tmp-" in f or ".old-" in f]


def test_original_ids_keep_their_dtype() -> None:
    ints = artifacts_lib.original_ids(np.array([None, 3, np.int64(7)], object)[1:])
    assert ints.dtype == np.int64 and ints.tolist() == [3, 7]
    text = artifacts_lib.original_ids(np.array(["a", "b7"], object))
    assert text.dtype.kind == "U" and text.tolist() == ["a", "b7"]
    assert artifacts_lib.original_ids(np.array([1, "x"], object)).tolist() == ["1", "x"]
    like = np.array([3, 7])
    got = inputs.coerce_ids(["7", 3, "x", None, 3.5], like)
    assert list(pd.Index(like).get_indexer(got)) == [1, 0, -1, -1, -1]


# ---------------------------------------------------------------------- exactness


@pytest.mark.parametrize("cell,mode", VARIANTS)
def test_recommend_equals_the_evaluators_topk(runs, cell, mode) -> None:
    """For every test user, recommending from the evaluator's visible history (every event
    before the test target) gives the evaluator's top-K: same items, same order."""
    workdir, config = runs(cell, mode)
    rec = Recommender.load(workdir)
    p = sources.load_prepared(config.data, seed=int(config.seed))
    k = max(rec.rc.eval.ks)
    ex, top, want_scores = _evaluator_topk(rec, p, k)
    events = _raw_events(config)
    visible = events.groupby("user", sort=False).head(-1)  # all but each user's last event
    want_items = rec.item_ids[top - 1]
    seen = bool(rec.rc.eval.exclude_history)  # the evaluator's exclusion
    table = rec.recommend_many(visible, k=k, exclude_seen=seen).table
    for e, user in enumerate(ex["user"]):
        got = table[table["user"] == user]
        np.testing.assert_array_equal(got["item"].to_numpy(), want_items[e])
        np.testing.assert_array_equal(got["rank"].to_numpy(), np.arange(1, k + 1))
        np.testing.assert_allclose(got["score"].to_numpy(), want_scores[e], rtol=1e-5, atol=1e-5)
    for e, user in list(enumerate(ex["user"]))[:: max(1, len(ex["user"]) // 6)]:
        r = rec.recommend(visible[visible["user"] == user], k=k, exclude_seen=seen)
        assert r.items == tuple(want_items[e].tolist()), user
        np.testing.assert_allclose(r.scores, want_scores[e], rtol=1e-5, atol=1e-5)
        assert (r.user, r.fallback, r.resorted, r.n_unknown_dropped) == (user, None, False, 0)
        r10 = rec.recommend(visible[visible["user"] == user], k=10, exclude_seen=seen)
        assert r10.items == r.items[:10]


def test_training_users_get_their_full_history(runs) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    all_users = rec.recommend_training_users(k=10)
    events = _raw_events(config)
    from_events = rec.recommend_many(events, k=10)
    pd.testing.assert_frame_equal(all_users.table, from_events.table)
    pd.testing.assert_frame_equal(all_users.users, from_events.users)
    assert len(all_users.users) == 120 and (all_users.table.groupby("user").size() == 10).all()
    seen = set(zip(events["user"], events["item"], strict=True))
    recommended = zip(all_users.table.user, all_users.table.item, strict=True)
    assert not any((u, i) in seen for u, i in recommended)
    keep = rec.recommend_training_users(k=10, exclude_seen=False).table
    assert any((u, i) in seen for u, i in zip(keep.user, keep.item, strict=True))


def test_candidates_and_score_agree_with_the_ranking(runs) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    events = _raw_events(config)
    ue = events[events["user"] == 7]
    full = rec.recommend(ue, k=5)
    restricted = rec.recommend(ue, k=5, candidates=list(rec.item_ids) + ["nope"])
    assert restricted.items == full.items
    np.testing.assert_allclose(restricted.scores, full.scores, rtol=1e-5, atol=1e-5)
    s = rec.score(ue, list(full.items) + [10**9])
    np.testing.assert_allclose(s[:-1], full.scores, rtol=1e-5, atol=1e-5)
    assert np.isnan(s[-1])
    two = rec.recommend(ue, k=2, candidates=[full.items[3], full.items[1], full.items[3]])
    assert two.items == (full.items[1], full.items[3])


# ---------------------------------------------------------------------- bad input


def test_unknown_items_are_dropped_and_counted(runs) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    ue = _raw_events(config).query("user == 11")
    clean = rec.recommend(ue, k=10)
    ts = ue["timestamp"].to_numpy()
    between = ts[2] + (ts[3] - ts[2]) * np.array([0.3, 0.6])
    junk = pd.DataFrame({"user": 11, "item": [10**9, -5], "timestamp": between, "duration": 4.0})
    r = rec.recommend(pd.concat([ue.iloc[:3], junk, ue.iloc[3:]]), k=10)
    assert r.n_unknown_dropped == 2 and r.n_events == len(ue) + 2
    assert r.items == clean.items and r.fallback is None


def test_empty_or_unknown_history_falls_back_to_popularity(runs) -> None:
    workdir, _ = runs()
    rec = Recommender.load(workdir)
    pop = np.argsort(-rec.artifacts.log_popularity[1:], kind="stable")[:5]
    for events in ([], pd.DataFrame(columns=["item", "timestamp", "duration"])):
        r = rec.recommend(events, k=5)
        assert r.fallback == "popularity" and r.n_events == 0
        assert r.items == tuple(rec.item_ids[pop].tolist())
        np.testing.assert_allclose(r.scores, rec.artifacts.log_popularity[1:][pop])
    none = rec.recommend_many(pd.DataFrame(columns=["user", "item", "timestamp", "duration"]))
    assert len(none.table) == 0 and len(none.users) == 0
    r = rec.recommend([{"item": "nope", "timestamp": 1.0, "duration": 3.0}], k=5)
    assert (r.fallback, r.n_unknown_dropped, r.n_events) == ("popularity", 1, 1)
    assert r.items == tuple(rec.item_ids[pop].tolist())


def test_out_of_order_events_are_sorted_and_flagged(runs) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    ue = _raw_events(config).query("user == 4")
    in_order = rec.recommend(ue, k=10)
    shuffled = rec.recommend(ue.sample(frac=1.0, random_state=1), k=10)
    assert shuffled.resorted and not in_order.resorted
    assert shuffled.items == in_order.items
    many = rec.recommend_many(pd.concat([ue.iloc[::-1], _raw_events(config).query("user == 5")]))
    assert many.users.set_index("user")["resorted"].to_dict() == {4: True, 5: False}


def test_missing_column_is_named(runs) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    assert rec.required_columns == ("item", "timestamp", "duration")
    ue = _raw_events(config).query("user == 4")
    for col in ("item", "timestamp", "duration"):
        with pytest.raises(ValueError, match=f"no '{col}' column"):
            rec.recommend(ue.drop(columns=col))
    with pytest.raises(ValueError, match="no 'user' column"):
        rec.recommend_many(ue.drop(columns="user"))
    with pytest.raises(ValueError, match="'timestamp' row 1: 'soon' is not a number"):
        bad = [1.0, "soon"] + [2.0] * (len(ue) - 2)
        rec.recommend(ue.astype({"timestamp": object}).assign(timestamp=bad))
    with pytest.raises(ValueError, match="one user's events, got 2 users"):
        rec.recommend(_raw_events(config).query("user in (4, 5)"))


def test_unseen_user_gets_statistics_from_the_events_given(runs) -> None:
    """A user of the training data keeps their training statistics; anyone else gets
    statistics fitted on the events given: equal durations have no spread, so every factor is
    neutral, exactly as with no durations at all (eq. (9))."""
    workdir, config = runs()
    rec = Recommender.load(workdir)
    ue = _raw_events(config).query("user == 9")
    known = rec.recommend(ue, k=10)
    assert known.user == 9
    stranger = rec.recommend(ue.assign(user="someone new"), k=10)
    anonymous = rec.recommend(ue.drop(columns="user"), k=10)
    assert anonymous.user is None and stranger.scores == anonymous.scores
    assert known.scores != stranger.scores  # training stats differ from these events' stats
    flat = rec.recommend(ue.drop(columns="user").assign(duration=5.0), k=10)
    missing = rec.recommend(ue.drop(columns="user").assign(duration=np.nan), k=10)
    assert flat.items == missing.items and flat.scores == missing.scores


# ---------------------------------------------------------------------- loading


def test_load_errors_say_what_is_missing(runs, tmp_path) -> None:
    workdir, _ = runs()
    with pytest.raises(RunNotReadyError, match="no results.json"):
        Recommender.load(str(tmp_path))
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    with pytest.raises(ValueError, match="'best' or 'latest'"):
        Recommender.load(copy, checkpoint="worst")
    shutil.rmtree(os.path.join(copy, "ckpt", "latest"))
    with pytest.raises(RunNotReadyError, match="no checkpoint in ckpt/latest"):
        Recommender.load(copy, checkpoint="latest")
    manifest = os.path.join(copy, "artifacts", "manifest.json")
    with open(manifest) as f:
        m = json.load(f)
    m["run_config"]["model"]["hidden_dim"] = 17
    with open(manifest, "w") as f:
        json.dump(m, f)
    with pytest.raises(CheckpointMismatchError, match=r"\['cell'\]\['u_k'\] has shape \(16, 16\)"):
        Recommender.load(copy)
    shutil.rmtree(os.path.join(copy, "artifacts"))
    with pytest.raises(artifacts_lib.MissingArtifactsError, match="no artifacts/manifest.json"):
        Recommender.load(copy)


# ---------------------------------------------------------------------- command line


def _launch(*args: str) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=root, capture_output=True, text=True, timeout=300
    )


def _check_table(table: pd.DataFrame, k: int) -> None:
    assert list(table.columns) == ["user", "rank", "item", "score"]
    for _, g in table.groupby("user"):
        assert g["rank"].tolist() == list(range(1, len(g) + 1)) and len(g) <= k
        assert (np.diff(g["score"].to_numpy()) <= 0).all()


def test_command_recommends_for_training_users_and_event_files(runs, tmp_path) -> None:
    workdir, config = runs()
    rec = Recommender.load(workdir)
    out = tmp_path / "recs.csv"
    res = _launch("--recommend", "--workdir", workdir, "--k", "7", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    got = pd.read_csv(out)
    _check_table(got, 7)
    want = rec.recommend_training_users(k=7).table
    pd.testing.assert_frame_equal(got[["user", "rank", "item"]], want[["user", "rank", "item"]])
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-6)
    assert not [f for f in os.listdir(tmp_path) if f != "recs.csv"]  # no temporary left

    events = _raw_events(config).query("user < 5")
    events = pd.concat([events.iloc[::-1], pd.DataFrame([{"user": 99, "item": 10**9}])])
    events["timestamp"] = events["timestamp"].fillna(1.7e9)
    events["duration"] = events["duration"].fillna(3.0)
    path = tmp_path / "events.parquet"
    events.to_parquet(path)
    out = tmp_path / "recs.parquet"
    args = ("--workdir", workdir, "--out", str(out), "--events", str(path), "--noexclude_seen")
    res = _launch("--recommend", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    got = pd.read_parquet(out)
    _check_table(got, 10)
    want = rec.recommend_many(events, k=10, exclude_seen=False)
    cols = ["user", "rank", "item"]
    pd.testing.assert_frame_equal(got[cols], want.table[cols])
    assert want.users.set_index("user").loc[99, "fallback"] == "popularity"
    assert '"users_resorted": 5' in res.stderr and '"popularity_fallback": 1' in res.stderr
    seen = set(zip(events["user"], events["item"], strict=True))
    assert any((u, i) in seen for u, i in zip(got["user"], got["item"], strict=True))


def test_training_users_need_the_data_file(runs, tmp_path) -> None:
    workdir, _ = runs()
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    manifest = os.path.join(copy, "artifacts", "manifest.json")
    with open(manifest) as f:
        m = json.load(f)
    m["data_config"].update(source="csv", path=str(tmp_path / "gone.csv"))
    with open(manifest, "w") as f:
        json.dump(m, f)
    with pytest.raises(FileNotFoundError, match="gone.csv' is gone.*--events"):
        Recommender.load(copy).recommend_training_users()


# ---------------------------------------------------------------------- export


def _loader():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "export_loader", os.path.join(root, "docs", "export_loader.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_process_scores(rec: Recommender, events: pd.DataFrame) -> np.ndarray:
    """Every catalogue id's score by the evaluator's model and `evaluate.scores_at`."""
    ui = inputs.from_events(rec.artifacts, events)
    out = np.zeros((len(ui.users), rec.n_items + 1), np.float32)
    for batch, _, idx in rec._batches(ui.examples):
        f = evaluate.Factors(*rec._scorer.factors(idx, batch))
        ids = jnp.broadcast_to(jnp.arange(rec.n_items + 1), (len(batch["items"]), rec.n_items + 1))
        out[idx] = np.asarray(evaluate.scores_at(f, ids))[: len(idx)]
    return out


@pytest.mark.parametrize("cell,mode", [("agru", "input"), ("repeat", "gate"), ("seen", "gate")])
def test_exported_scores_equal_the_in_process_model(runs, tmp_path, cell, mode) -> None:
    workdir, config = runs(cell, mode)
    out = tmp_path / "exported"
    res = _launch("--export", "--workdir", workdir, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["export.json", "items.npz", "params.npz", "score.jax"]
    rec = Recommender.load(workdir)
    events = _raw_events(config).query("user < 20")
    model_inputs, users = rec.model_inputs(events)
    assert list(users) == list(range(20))
    score, item_ids = _loader().load(str(out))
    np.testing.assert_array_equal(item_ids, rec.item_ids)
    got = score(model_inputs)
    want = _in_process_scores(rec, events)
    assert got.shape == (20, rec.n_items + 1) and np.isneginf(got[:, 0]).all()
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-5, atol=1e-5)
    one = score({k: v[3:4] for k, v in model_inputs.items()})  # padded to the export's minimum
    np.testing.assert_allclose(one[0, 1:], want[3, 1:], rtol=1e-5, atol=1e-5)
    top = np.argsort(-got, axis=1, kind="stable")[:, :10]
    r = rec.recommend(events.query("user == 5"), k=10, exclude_seen=False)
    assert tuple(item_ids[top[5] - 1].tolist()) == r.items


def test_exported_sasrec_and_gru_take_a_symbolic_batch(runs) -> None:
    for cell, mode in (("sasrec", "none"), ("gru", "input")):
        workdir, config = runs(cell, mode)
        rec = Recommender.load(workdir)
        exported = model_export.export_scoring(rec.params, rec.rc.model, rec.artifacts.max_len)
        assert str(exported.in_avals[-1].shape[0]) == "b"
        events = _raw_events(config).query("user < 12")
        model_inputs, _ = rec.model_inputs(events)
        flat = model_export.flat_params(rec.params)
        got = np.asarray(exported.call(flat, model_inputs))
        want = _in_process_scores(rec, events)
        np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- CTR


def test_ctr_run_scores_the_rows_of_a_criteo_file(tmp_path) -> None:
    from durgru_jax import ctr, recommend_cli
    from durgru_jax.base_config import load_config
    from durgru_jax.ctr import criteo, serve
    from durgru_jax.ctr import synthetic as ctr_synthetic

    path = tmp_path / "train.txt"
    ctr_synthetic.write_criteo_tsv(path, 1500, seed=3, cardinality_scale=1e-3)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c = load_config(os.path.join(root, "configs", "criteo.py"))
    c.data.path, c.data.cache_dir, c.data.min_count = str(path), str(tmp_path / "cache"), 2
    c.model.cell, c.model.embed_dim, c.model.hidden_dim = "gru", 4, 8
    c.train.batch_size, c.train.epochs, c.train.eval_every_steps = 100, 1, 0
    c.baseline.enabled = False
    work = str(tmp_path / "run")
    ctr.run(c, work)
    out = tmp_path / "probs.csv"
    summary = recommend_cli.recommend(work, str(out), events=str(path))
    got = pd.read_csv(out)
    assert summary["rows"] == 1500 and list(got.columns) == ["row", "label", "click_probability"]
    prepared = ctr.train.prepare_from_config(c)
    tokens, labels = serve.tokenise(str(path), prepared.dir, "sqlog")
    np.testing.assert_array_equal(tokens, prepared.tokens)  # the training vocabulary
    np.testing.assert_array_equal(got["label"], prepared.labels)
    params, mcfg, _ = serve.load_model(work)
    want = 1 / (1 + np.exp(-np.asarray(ctr.model.logits(params, mcfg, prepared.tokens[:64]))))
    np.testing.assert_allclose(got["click_probability"][:64], want, rtol=1e-5)
    assert criteo.OOV in tokens  # values rare in training share the OOV token


def test_a_run_whose_data_file_vanished_keeps_its_results(runs, tmp_path, caplog) -> None:
    workdir, config = runs()
    p = sources.load_prepared(config.data, seed=int(config.seed))
    rc = artifacts_lib.load_artifacts(workdir).run_config
    gone = config.copy_and_resolve_references()
    gone.data.source, gone.data.path = "csv", str(tmp_path / "moved.csv")
    assert artifacts_lib.save_artifacts(str(tmp_path), gone, p, rc) is None
    assert "moved.csv" in caplog.text and not os.path.exists(tmp_path / "artifacts")
