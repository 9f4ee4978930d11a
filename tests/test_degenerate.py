"""Degenerate runs are called out: what preparation kept and the thresholds that stop a run with
too little data (`durgru_jax.data.funnel`), the training floor and ``train.stop_reason``
(`run_lib`, `lifecycle`, the single run and the vectorised sweep alike), and readers that
recognise another layout of their dataset (`durgru_jax.data.readers.original`).

Fixtures are written here in the datasets' original formats; the real samples of the shared
data folder are used only by the tests at the end, which skip when it is absent.
"""

from __future__ import annotations

import json
import logging as py_logging
import os
from pathlib import Path

import pytest

from durgru_jax import lifecycle, run_lib, train, vsweep
from durgru_jax.base_config import load_config, shared_sample
from durgru_jax.config import ConfigError, TrainConfig
from durgru_jax.data import funnel, sources
from durgru_jax.data.readers import (
    DataFormatError,
    read_diginetica,
    read_taobao,
    read_tianchi,
    read_yoochoose_clicks,
    read_yoochoose_prepared,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _results(workdir) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


# ----------------------------------------------------------------------- data thresholds


def _diginetica_views(camel_case: bool = False) -> str:
    """10 sessions 3 days apart, each viewing items 1, 2, 3 (10 views each) and one item of
    its own (1 view) in between: the 5-view item filter removes those 10 views."""
    header = "sessionId;userId;itemId" if camel_case else "session_id;user_id;item_id"
    rows = [f"{header};timeframe;eventdate"]
    for s in range(1, 11):
        day = f"2016-04-{1 + 3 * (s - 1):02d}"
        for k, item in enumerate((1, 100 + s, 2, 3)):
            rows.append(f"{s};NA;{item};{60_000 * k};{day}")
    return "\n".join(rows) + "\n"


def _diginetica(tmp_path, **data) -> object:
    c = load_config(f"{CONFIGS}/diginetica.py")
    c.data.path = _write(tmp_path / "train-item-views.csv", _diginetica_views())
    c.data.update(data)
    return c


def test_too_little_data_stops_the_run_naming_the_filter_and_the_numbers(tmp_path):
    """The split by hand: the last session's last view is day 27 + 180 s; sessions ending
    after day 20 + 180 s (days 21, 24, 27) are test, after day 13 + 180 s (15, 18) validation,
    days 0-12 training: 5 x 3 = 15 training views; every view of a held-out session but its
    first is a target: 2 x 2 = 4 validation and 3 x 2 = 6 test examples."""
    with pytest.raises(funnel.NotEnoughDataError) as err:
        lifecycle.setup(_diginetica(tmp_path), None)
    message = str(err.value)
    assert isinstance(err.value, ConfigError)
    assert message.startswith(
        "too little data remains to train and evaluate: 15 training events "
        "(config.data.min_train_events=2,000); 4 valid examples (config.data."
        "min_eval_examples=50); 6 test examples (config.data.min_eval_examples=50); the k-core "
        "(users >= 2, items >= 5) filter removed 10 of 40 events (25%). Kept: read: 40 "
        "events, 10 sequences, 13 items -> k-core (users >= 2, items >= 5): 30 events, "
        "10 sequences, 3 items -> sessions (gap > 1800 s): 30 events, 10 sequences, 3 items "
        "-> consecutive repeats: 30 events, 10 sequences, 3 items -> split (temporal): train "
        "15, valid 6, test 9 events, 3 items -> evaluation examples: valid 4, test 6 "
        "(targets unseen in training: valid 0, test 0)."
    )
    assert "configs/diginetica.py:sample" in message


def test_the_thresholds_are_config_keys_and_a_run_logs_what_was_kept(tmp_path, caplog):
    c = _diginetica(tmp_path, min_train_events=15, min_eval_examples=4)
    c.train.min_steps = 0
    with caplog.at_level(py_logging.INFO):
        run = lifecycle.setup(c, None)
    assert run.prepared.info["n_train"] == 15
    kept = [r.getMessage() for r in caplog.records if "data kept: " in r.getMessage()]
    assert len(kept) == 1 and "split (temporal): train 15, valid 6, test 9 events" in kept[0]
    c = _diginetica(tmp_path, min_train_events=16, min_eval_examples=4)
    with pytest.raises(funnel.NotEnoughDataError, match=r": 15 training events \(config"):
        lifecycle.setup(c, None)
    c = _diginetica(tmp_path, min_train_events=15, min_eval_examples=5)
    with pytest.raises(funnel.NotEnoughDataError, match=r": 4 valid examples \(config"):
        lifecycle.setup(c, None)


def test_a_k_core_that_keeps_nothing_names_every_stage(tmp_path):
    c = _diginetica(tmp_path, kcore_items=11)
    with pytest.raises(funnel.NotEnoughDataError) as err:
        lifecycle.setup(c, None)
    assert str(err.value) == (
        "no events left after k-core filtering: read: 40 events, 10 sequences, 13 items -> "
        "k-core (users >= 2, items >= 11): 0 events, 0 sequences, 0 items; lower "
        "config.data.kcore_users / kcore_items"
    )


# ----------------------------------------------------------------------- training floor


def test_select_and_stop_is_held_by_the_floor(tmp_path):
    """Patience 1: the floor holds two bad evaluations; the first past it stops."""
    log = run_lib.Jsonl(str(tmp_path / "m.jsonl"))
    meta = run_lib.new_meta()

    def select(epoch, value, floor):
        valid = {"valid/ndcg@10": value}
        return run_lib.select_and_stop(meta, valid, select_metric="valid/ndcg@10", patience=1,
                                       epoch=epoch, on_best=lambda: None, log=log, record={},
                                       floor_reached=floor)  # fmt: skip

    assert [select(0, 0.5, False), select(1, 0.5, False), select(2, 0.4, False)] == [False] * 3
    assert meta["floor_held"] and meta["bad_epochs"] == 2
    assert select(3, 0.5, True) is True
    assert run_lib.stop_reason("patience", meta, True) == "patience after floor"
    assert run_lib.stop_reason("epochs", {}, True) == "epochs"
    assert run_lib.stop_reason("time_budget", {}, False) == "time_budget before floor"
    with pytest.raises(ValueError, match="unknown stop reason 'bored'"):
        run_lib.stop_reason("bored", {}, True)


def test_floor_that_the_schedule_cannot_reach_stops_at_setup(tiny_config):
    """The tiny config: 4 steps per epoch (113 packed rows of windows), 3 epochs: 12 steps at
    most; 1,432 events less one validation and one test event of each of 120 users train."""
    tiny_config.train.min_steps = 13
    with pytest.raises(ConfigError) as err:
        lifecycle.setup(tiny_config, None)
    assert str(err.value).startswith(
        "the training floor (config.train.min_steps=13, min_epochs=0) cannot be reached: this "
        "run has at most 12 steps in 3 epochs (train.epochs=3; 4 steps per epoch: 113 rows of "
        "training windows from 1,192 training events, train.batch_size=32)."
    )
    tiny_config.train.min_steps, tiny_config.train.max_steps = 9, 8
    with pytest.raises(ConfigError, match="min_steps=9 exceeds config.train.max_steps=8"):
        lifecycle.setup(tiny_config, None)
    with pytest.raises(ConfigError, match="min_epochs=4 exceeds config.train.epochs=3"):
        TrainConfig(epochs=3, min_epochs=4)


def _stuck(config, seed=0, lr=1e-9, min_steps=14):
    """lr 1e-9 leaves the ranking as it is: validation never improves after epoch 0, so
    patience 1 alone stops after epoch 1 (8 steps)."""
    c = config.copy_and_resolve_references()
    c.model.cell, c.model.scan_unroll, c.model.dropout = "gru", 1, 0.0  # compiles fast
    c.seed, c.optim.learning_rate = seed, lr
    c.train.update(epochs=6, patience=1, min_steps=min_steps, log_every=4)
    return c


@pytest.fixture(scope="module")
def floor_runs(tmp_path_factory, make_tiny):
    """Single runs and the same two runs as one vectorised group."""
    root = tmp_path_factory.mktemp("floor")
    configs = [_stuck(make_tiny()), _stuck(make_tiny(), seed=1, lr=3e-3)]
    alone = [str(root / f"alone{k}") for k in range(2)]
    vec = [str(root / f"vec{k}") for k in range(2)]
    for c, w in zip(configs, alone, strict=True):
        train.train_and_evaluate(c, w)
    vsweep.train_and_evaluate_many(configs, vec)
    no_floor = str(root / "no_floor")
    train.train_and_evaluate(_stuck(make_tiny(), min_steps=0), no_floor)
    return alone, vec, no_floor


def test_the_floor_keeps_a_run_with_patience_1_training(floor_runs):
    """Floor 14 steps = 4 epochs of 4 steps: the bad evaluations of epochs 1 and 2 are held,
    epoch 3's (16 steps) stops."""
    alone, _, no_floor = floor_runs
    without = _results(no_floor)["train"]
    assert (without["steps"], without["epochs"], without["stop_reason"]) == (8, 2, "patience")
    held = _results(alone[0])["train"]
    assert (held["steps"], held["epochs"], held["best_epoch"]) == (16, 4, 0)
    assert held["stop_reason"] == "patience after floor"


def test_vsweep_records_the_stop_reasons_of_single_runs(floor_runs):
    alone, vec, _ = floor_runs
    for a, v in zip(alone, vec, strict=True):
        ra, rv = _results(a)["train"], _results(v)["train"]
        for key in ("stop_reason", "steps", "epochs", "best_epoch"):
            assert rv[key] == ra[key], (a, key)
    # lr 3e-3: a bad evaluation held by the floor, then improvements to the last epoch.
    reasons = [_results(v)["train"]["stop_reason"] for v in vec]
    assert reasons == ["patience after floor", "epochs after floor"]


# ----------------------------------------------------------------------- layouts


PREPARED = (
    "SessionId\tItemId\tTime\n"
    "1\t214536502\t1396860669.277\n"
    "1\t214536506\t1396860886.998\n"
    "2\t214662742\t1396860886.998\n"
)
CLICKS = "1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n"


def _layout_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "the first line fits" in r.getMessage()]


def test_yoochoose_readers_read_the_other_yoochoose_layout_and_say_so(tmp_path, caplog):
    prepared = _write(tmp_path / "train.txt", PREPARED)
    clicks = _write(tmp_path / "yoochoose-clicks.dat", CLICKS)
    with caplog.at_level(py_logging.INFO):
        own, own_clicks = read_yoochoose_prepared(prepared), read_yoochoose_clicks(clicks)
        assert not _layout_logs(caplog)  # each in its own layout: nothing to say
        as_clicks = read_yoochoose_clicks(prepared)
        back = read_yoochoose_prepared(clicks)
    assert as_clicks.format == "yoochoose_prepared" and as_clicks.events.equals(own.events)
    assert back.format == "yoochoose" and back.events.equals(own_clicks.events)
    assert _layout_logs(caplog) == [
        f"{prepared}: the first line fits the prepared YOOCHOOSE TSV (TAB-separated header "
        "'SessionId ItemId Time'), not the yoochoose layout (no header, 4 fields "
        "'session,timestamp,item,category'): read as format yoochoose_prepared",
        f"{clicks}: the first line fits yoochoose-clicks.dat (no header, 4 fields "
        "'session,timestamp,item,category'), not the yoochoose_prepared layout (TAB-separated "
        "header 'SessionId ItemId Time'): read as format yoochoose",
    ]


def test_yoochoose_config_reads_the_prepared_file(tmp_path):
    c = load_config(f"{CONFIGS}/yoochoose.py")
    c.data.path = _write(tmp_path / "train.txt", PREPARED)
    events, info = sources.load_events(c.data)
    assert (info["source"], info["format"], info["rows_read"]) == (
        "yoochoose",
        "yoochoose_prepared",
        3,
    )
    assert events["item"].tolist() == [214536502, 214536506, 214662742]


def test_diginetica_reads_the_cikm_header_and_the_prepared_tsv(tmp_path, caplog):
    snake = read_diginetica(_write(tmp_path / "a.csv", _diginetica_views()))
    with caplog.at_level(py_logging.INFO):
        camel = read_diginetica(_write(tmp_path / "b.csv", _diginetica_views(camel_case=True)))
        tsv = read_diginetica(_write(tmp_path / "c.txt", PREPARED))
    assert camel.format == "diginetica" and camel.events.equals(snake.events)
    assert tsv.format == "diginetica_prepared"
    assert tsv.events["timestamp"].tolist() == [1396860669.277, 1396860886.998, 1396860886.998]
    logs = _layout_logs(caplog)
    assert len(logs) == 2 and "CIKM Cup spells its header" in logs[0]
    assert "read as format diginetica_prepared" in logs[1]


def test_taobao_and_tianchi_files_name_the_config_to_use(tmp_path):
    tianchi = _write(
        tmp_path / "t.csv",
        "user_id,item_id,behavior_type,user_geohash,item_category,time\n"
        "10001082,285259775,1,97lk14c,4076,2014-12-08 18\n",
    )
    taobao = _write(tmp_path / "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n")
    with pytest.raises(DataFormatError) as err:
        read_taobao(tianchi)
    assert str(err.value) == (
        f"{tianchi} is in the layout of the Tianchi 2015 mobile log (header 'user_id,item_id,"
        "behavior_type,user_geohash,item_category,time'), not of taobao: use "
        "configs/tianchi.py (config.data.source='tianchi')"
    )
    with pytest.raises(DataFormatError, match=r"not of tianchi: use configs/taobao\.py"):
        read_tianchi(taobao)


# ----------------------------------------------------------------------- the real samples


def _sample(relative: str) -> str:
    path = shared_sample(relative)
    if not os.path.isfile(path):
        pytest.skip(f"shared sample {path} not available")
    return path


DIGINETICA = "diginetica-sample/sample_train-item-views.csv"
TAOBAO = "taobao-userbehavior-subset/UserBehavior.csv"


def test_full_filters_on_the_samples_stop_before_training():
    c = load_config(f"{CONFIGS}/diginetica.py")
    c.data.path = _sample(DIGINETICA)
    with pytest.raises(funnel.NotEnoughDataError, match=r"the k-core \(users >= 2, items >= 5\)"):
        lifecycle.setup(c, None)
    c = load_config(f"{CONFIGS}/taobao.py")
    c.data.path = _sample(TAOBAO)
    with pytest.raises(ConfigError, match=r"min_steps=100, min_epochs=0\) cannot be reached"):
        lifecycle.setup(c, None)


def test_the_prepared_yoochoose_sample_under_the_default_config(caplog):
    c = load_config(f"{CONFIGS}/yoochoose.py")
    c.data.path = _sample("yoochoose-rsc15-100k-prepared/yoochoose-clicks-100k_train_full.txt")
    with caplog.at_level(py_logging.INFO):
        events, info = sources.load_events(c.data)
    assert (info["format"], len(events)) == ("yoochoose_prepared", 70_278)
    assert len(_layout_logs(caplog)) == 1


@pytest.mark.parametrize("name,relative", [("diginetica", DIGINETICA), ("taobao", TAOBAO)])
def test_sample_variants_train_past_the_floor(tmp_path, name, relative):
    """The sample variant's data, batches and floor, with a small model and only the epochs
    its floor needs (the variant allows more: a minute instead of several)."""
    _sample(relative)
    c = load_config(f"{CONFIGS}/{name}.py:sample")
    c.model.update(hidden_dim=16, embed_dim=8)
    run = lifecycle.setup(c, None)
    assert run.total_steps >= c.train.min_steps == 100
    c.train.epochs = -(-c.train.min_steps // run.steps_per_epoch)
    t = train.train_and_evaluate(c, str(tmp_path))["train"]
    assert t["steps"] >= 100 and not t["stop_reason"].endswith("before floor")
