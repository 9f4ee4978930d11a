"""Config defaults live once; every config file and variant loads and builds; the shared
override setter, config-file loader and variant parser."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from durgru_jax import sweep
from durgru_jax.base_config import (
    RECOMMENDED_MODEL,
    RECOMMENDED_RATINGS,
    RECOMMENDED_REPEATS,
    RECOMMENDED_SEEN,
    apply_override,
    config_diff,
    config_module,
    get_base_config,
    get_data_config,
    load_config,
    parse_variant,
    positive_int,
    set_override,
    set_overrides,
    use_model,
)
from durgru_jax.config import GROUPS, ConfigError, ModelConfig, from_config, group_defaults
from durgru_jax.data.dataset import PrepConfig
from durgru_jax.data.sources import prep_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NAMES = sorted(p.stem for p in CONFIGS.glob("*.py"))
# Configs whose data group others copy (configs/pop.py, itemcf.py, mf.py: NAME[-VARIANT]).
DATASET_CONFIGS = (
    "default",
    "csv",
    "ml1m",
    "ml100k",
    "ml20m",
    "taobao",
    "tianchi",
    "yoochoose",
    "diginetica",
    "kuairec",
)
USE_DATASET = ("pop", "itemcf", "mf")
# The data group's keys that no dataclass holds: where the events come from.
SOURCE_KEYS = {
    "source",
    "path",
    "dataset",
    "download",
    "cache",
    "cache_dir",
    "on_bad_rows",
    "sep",
    "timestamp_unit",
    "columns",
    "synthetic",
}


def _variants(name: str) -> list[str]:
    """Every argument of ``configs/NAME.py``: each combination of its ``CHOICES``, a slot
    named or left at its default."""
    if name in USE_DATASET:
        out = ["", "synthetic"]
        for dataset in DATASET_CONFIGS:
            out += [dataset] + [f"{dataset}-{v}" for v in _variants(dataset) if v]
        return out
    choices = getattr(config_module(f"{CONFIGS / name}.py")[0], "CHOICES", None)
    if choices is None:
        return [""]
    combos = itertools.product(*(("", *names) for names in choices.values()))
    return list(dict.fromkeys(",".join(filter(None, combo)) for combo in combos))


def _typed(tree):
    """A value with its types spelt out, so 1 and 1.0 or (1,) and [1] compare unequal."""
    if isinstance(tree, dict):
        return {k: _typed(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return (type(tree).__name__, [_typed(v) for v in tree])
    return (type(tree).__name__, tree)


# ----------------------------------------------------------------------------- one source


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_config_dict_groups_hold_the_dataclass_defaults(group):
    got = get_base_config()[group].to_dict()
    assert _typed(got) == _typed(group_defaults(GROUPS[group]))


def test_data_group_holds_prep_config_defaults_and_the_source_keys():
    data = get_data_config().to_dict()
    prep = group_defaults(PrepConfig)
    assert prep.pop("seed") == 0  # config.seed seeds the preparation too
    assert _typed({k: data[k] for k in prep}) == _typed(prep)
    assert set(data) - set(prep) == SOURCE_KEYS
    assert prep_config(get_data_config(), seed=0) == PrepConfig()


def test_the_two_defaults_that_disagreed_keep_what_the_configs_ran_with():
    # The ConfigDict always won at run time; the dataclasses now hold the same values.
    c = get_base_config()
    assert c.model.scan_unroll == ModelConfig().scan_unroll == 4
    assert c.data.hour_buckets == PrepConfig().hour_buckets == 4
    assert load_config(str(CONFIGS / "ml1m.py")).data.hour_buckets == 0  # rating times


def test_fields_filled_in_from_the_data_are_not_config_keys():
    c = get_base_config()
    for name in ("n_items", "n_input_contexts", "n_transfer_contexts", "rating_head", "max_len"):
        assert name not in c.model
    rc = from_config(c, n_items=7, max_len=12)
    assert (rc.model.n_items, rc.model.max_len, rc.model.scan_unroll) == (7, 12, 4)
    c.model.n_items = 5
    with pytest.raises(ConfigError, match="n_items are filled in from the data"):
        from_config(c)


# ----------------------------------------------------------------------------- every config


@pytest.mark.parametrize("name", NAMES)
def test_every_config_file_and_variant_loads_and_builds(name):
    variants = _variants(name)
    assert variants
    for variant in variants:
        if name == "leaderboard" and _unrated_mf(variant):  # refused, naming why
            with pytest.raises(ValueError, match="mf needs ratings"):
                load_config(f"{CONFIGS / name}.py:{variant}")
            continue
        config = load_config(f"{CONFIGS / name}.py:{variant}")
        assert "seed" in config, variant
        if config.get("task", "") == "ctr":  # durgru_jax.ctr's own groups
            assert {"data", "model", "optim", "train", "eval"} <= set(config), variant
            continue
        prep_config(config.data, int(config.seed))
        from_config(config, n_items=10, max_len=int(config.data.max_len))


def _unrated_mf(variant: str) -> bool:
    """A leaderboard variant naming biased MF on a dataset without ratings."""
    parts = variant.split(",")
    return "mf" in parts and not ({"ml100k", "ml1m", "ml1m-gru4rec"} & set(parts))


def test_variant_lists_cover_the_documented_arguments():
    assert "ml100k,no_aux" in _variants("ablations")
    assert {"ml1m,bpr_max,ours", "ml1m,bpr_max,official"} <= set(_variants("gru4rec"))
    assert "ml100k,mf" in _variants("rating")
    assert "ml1m,sasrec" in _variants("ranking")
    assert "ml1m-rating" in _variants("mf") and "taobao" in _variants("pop")
    assert {"", "sample", "paper", "sample,paper"} <= set(_variants("taobao"))
    assert "diginetica-sample" in _variants("pop") and "taobao-sample" in _variants("itemcf")
    assert {"gru4rec", "paper", "gru4rec,paper", "rating,paper"} <= set(_variants("ml1m"))
    assert "ml100k,recommended_untied_output" in _variants("ablations")


SWEEPS = ("ablations", "leaderboard", "paper001", "ranking", "rating", "section43")


def test_sweeps_are_the_config_files_with_a_sweep_function():
    with_sweep = [n for n in NAMES if hasattr(config_module(f"{CONFIGS / n}.py")[0], "sweep")]
    assert tuple(with_sweep) == SWEEPS


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_run_builds(name):
    module = config_module(f"{CONFIGS / name}.py")[0]
    for arg in ("", *getattr(module, "CHOICES", {}).get("dataset", ())):
        config = load_config(f"{CONFIGS / name}.py:{arg}")
        runs = sweep.expand(sweep.load_sweep(f"{CONFIGS / name}.py:{arg}"))
        for overrides in runs:
            child = sweep.apply(config, overrides)
            if child.get("task", "") == "":
                from_config(child, n_items=10, max_len=int(child.data.max_len))


def test_unknown_variants_are_errors_listing_the_known_ones():
    with pytest.raises(ValueError, match="unknown MovieLens variant 'nope'.*default | gru4rec"):
        load_config(f"{CONFIGS}/ml1m.py:nope")
    with pytest.raises(ValueError, match="unknown ablation variant 'ml1m'.*synthetic"):
        load_config(f"{CONFIGS}/ablations.py:ml1m")
    with pytest.raises(ValueError, match="unknown sasrec variant 'ml20m'.*ml1m | ml100k"):
        load_config(f"{CONFIGS}/sasrec.py:ml20m")
    with pytest.raises(ValueError, match="unknown dataset variant"):
        load_config(f"{CONFIGS}/pop.py:nope")


# ----------------------------------------------------------------------------- composition


def test_dataset_configs_are_composed_from_the_dataset_files():
    def group(spec, name):
        return load_config(f"{CONFIGS}/{spec}")[name].to_dict()

    for method in ("sasrec", "adpr"):
        for dataset in ("ml1m", "ml100k"):
            data = group(f"{method}.py:{dataset}", "data")
            assert data == {**group(f"{dataset}.py", "data"), "max_len": 200}
            assert group(f"{method}.py:{dataset}", "eval") == group(f"{dataset}.py", "eval")
    assert group("ablations.py:ml100k", "data") == group("ml100k.py", "data")
    assert group("ablations.py:yoochoose", "data") == group("yoochoose.py:prepared", "data")
    for ablation, default in (("", "default.py:paper"), ("recommended", "default.py")):
        synthetic = load_config(f"{CONFIGS}/ablations.py:{ablation}")
        base = load_config(f"{CONFIGS}/{default}")
        assert synthetic.compare == () and base.compare
        synthetic.compare = base.compare
        assert synthetic.to_dict() == base.to_dict()
    for dataset, spec in (("ml100k", "ml100k.py:"), ("yoochoose", "yoochoose.py:prepared,")):
        paper = load_config(f"{CONFIGS}/ablations.py:{dataset}")
        rec = load_config(f"{CONFIGS}/ablations.py:{dataset},recommended")
        assert paper.model.to_dict() == group(f"{spec}paper", "model")
        assert rec.model.to_dict() == group(f"{spec}recommended", "model")
    s43 = load_config(f"{CONFIGS}/section43.py:ml100k")
    assert s43.data.to_dict() == group("ml100k.py:rating", "data")
    taobao, tianchi = group("taobao.py", "data"), group("tianchi.py", "data")
    for key in ("split", "session_gap_s", "kcore_users", "kcore_items", "eval_history"):
        assert taobao[key] == tianchi[key], key
    assert (taobao["max_len"], taobao["kcore_users"], taobao["session_gap_s"]) == (50, 5, 0.0)


def test_ablation_sweep_declares_each_variant_per_dataset():
    module = config_module(f"{CONFIGS}/ablations.py")[0]
    synthetic = sweep.expand(lambda add: module.sweep(add, ""))
    assert len(synthetic) == len(module.VARIANTS) * len(module.SEEDS)
    ml100k = sweep.expand(lambda add: module.sweep(add, "ml100k"))
    # No durations in MovieLens: the duration ablations would equal no_duration exactly.
    kept = [name for name in module.VARIANTS if name not in module.DURATION_VARIANTS]
    assert len(ml100k) == len(kept) * 3 == (10 - 3) * 3
    assert not any(r.get("data.shuffle_durations") for r in ml100k)
    c = module.get_config("yoochoose,no_aux")
    assert c.loss.aux_weight == 0.0 and c.data.source == "yoochoose_prepared"
    # The sweep declares the variants itself: one on the command line would sit under all.
    with pytest.raises(ValueError, match="unknown ablation sweep variant 'no_aux'"):
        sweep.expand(lambda add: module.sweep(add, "ml100k,no_aux"))
    # The recommended model's switches, each turned over once, on its own config.
    rec = sweep.expand(lambda add: module.sweep(add, "recommended"))
    assert [r for r in rec if r["seed"] == 0] == [
        {**o, "seed": 0}
        for name, o in module.RECOMMENDED_VARIANTS.items()
        if name not in module.SEEN_VARIANTS  # the synthetic model has no offset to drop
    ]
    rec_ml100k = sweep.expand(lambda add: module.sweep(add, "ml100k,recommended"))
    assert {k for r in rec_ml100k for k in r} == {
        "seed",
        "model.gap_input",
        "loss.aux_weight",
        "model.tie_output",
        "model.repeat_head",
        "model.seen_bias",
    }
    # every declared ML-100K variant builds (the repeat head replaces the offset there)
    for name in {n for n in module.RECOMMENDED_VARIANTS if n not in module.DURATION_VARIANTS}:
        c = module.get_config(f"ml100k,{name}")
        from_config(c, n_items=10)
        assert c.model.seen_bias == (name not in ("recommended_repeat_head", *module.SEEN_VARIANTS))
    c = module.get_config("recommended_untied_output")
    assert not c.model.tie_output and c.model.cell == "gru" and c.compare == ()
    assert module.get_config("recommended").model.tie_output
    with pytest.raises(ValueError, match="unknown ablation sweep variant 'recommended_untied_"):
        sweep.expand(lambda add: module.sweep(add, "recommended_untied_output"))


# ----------------------------------------------------------------------------- the model slot


def _paper_spec(spec: str) -> str:
    """``NAME.py[:VARIANT]`` with the paper's model (``:paper`` or ``:VARIANT,paper``)."""
    return f"{spec},paper" if ":" in spec else f"{spec}:paper"


def _value(config, key: str):
    """The value at dotted ``key`` of ``config``."""
    for part in key.split("."):
        config = config[part]
    return config


REPEAT_LOGS = ("taobao",)  # the dataset configs whose recommended model has the repeat head
# each movie rated once: the seen-item offset (ml20m's sampled softmax cannot train it)
MOVIELENS = ("ml100k", "ml1m")


@pytest.mark.parametrize("name", DATASET_CONFIGS)
def test_dataset_configs_default_to_the_recommended_model_and_paper_gives_the_agru(name):
    for variant in [v for v in _variants(name) if "recommended" not in v and "paper" not in v]:
        spec = f"{CONFIGS / name}.py" + (f":{variant}" if variant else "")
        rec, paper = load_config(spec), load_config(_paper_spec(spec))
        # the two differ in the recommended model's settings only; on the Taobao log (users
        # come back to items) with the repeat-aware output
        repeats, ratings = name in REPEAT_LOGS, paper.loss.rating_weight > 0
        seen = name in MOVIELENS and not variant.startswith("rating")  # ranked, not rated
        want = {
            **RECOMMENDED_MODEL,
            **(RECOMMENDED_REPEATS if repeats else {}),
            **(RECOMMENDED_RATINGS if ratings else {}),  # where the rating head is trained
            **(RECOMMENDED_SEEN if seen else {}),
        }
        assert config_diff(rec, paper) == {
            k: v for k, v in want.items() if _value(paper, k) != v
        }, spec
        assert rec.model.repeat_head == repeats and not paper.model.repeat_head
        assert rec.model.seen_bias == seen and not paper.model.seen_bias
        again = use_model(load_config(_paper_spec(spec)), "recommended", repeats, seen)
        assert config_diff(rec, again) == {}
        assert (rec.model.cell, rec.model.duration_mode, rec.loss.aux_weight) == ("gru", "gate", 0)
        model = ModelConfig()
        assert (paper.model.cell, paper.model.duration_mode) == (model.cell, model.duration_mode)
        assert paper.model.cell == "agru" and paper.loss.aux_weight == 0.5
        assert paper.model.gap_input is False and paper.model.relevance is True


def test_use_model_names_the_models():
    c = get_base_config()
    assert use_model(c, "paper").to_dict() == get_base_config().to_dict()
    with pytest.raises(ValueError, match="model 'agru' is not one of"):
        use_model(c, "agru")
    with pytest.raises(ValueError, match="unknown MovieLens variant 'agru'.*paper"):
        load_config(f"{CONFIGS}/ml1m.py:gru4rec,agru")


def test_paper_table_sweeps_keep_the_paper_runs_and_add_the_recommended_one():
    module = config_module(f"{CONFIGS}/paper001.py")[0]
    agru = sweep.expand(lambda add: module.sweep(add, "agru"))
    methods = [{}] * 3 + [{"model.cell": "gru"}] * 3  # the table's runs, as declared before
    methods += [{"task": "baseline", "baseline.name": n} for n in ("itemcf", "pop")]
    seeds = [0, 1, 2, 0, 1, 2, 0, 0]
    assert agru[:8] == [{**m, "seed": s} for m, s in zip(methods, seeds, strict=True)]
    rec = {**RECOMMENDED_MODEL, **RECOMMENDED_REPEATS}  # on this log, with the repeat head
    assert agru[8:] == [{**rec, "seed": s} for s in (0, 1, 2)]
    # Around the recommended model (no variant), each run is its method's config.
    base = load_config(f"{CONFIGS}/paper001.py")
    runs = sweep.expand(module.sweep)
    assert runs[0] == {**rec, "seed": 0} and len(runs) == len(agru)
    for method in module.METHODS:
        want = load_config(f"{CONFIGS}/paper001.py:{method}").to_dict()
        assert any(sweep.apply(base, {**r, "seed": 0}).to_dict() == want for r in runs), method
    ranking = config_module(f"{CONFIGS}/ranking.py")[0]
    rec = load_config(f"{CONFIGS}/ranking.py:ml1m,rec")
    assert config_diff(rec, load_config(f"{CONFIGS}/ml1m.py")) == {}
    assert ranking.method_overrides("ml1m", "agru") == {}  # the table's reference: the paper's
    assert load_config(f"{CONFIGS}/ranking.py:ml1m").model.cell == "agru"
    assert load_config(f"{CONFIGS}/rating.py:ml1m").model.cell == "agru"
    # the rating table's recommended model is the rating protocol's default model
    rating_rec = load_config(f"{CONFIGS}/rating.py:ml1m,rec")
    default = load_config(f"{CONFIGS}/ml1m.py:rating")
    for key in {**RECOMMENDED_MODEL, **RECOMMENDED_RATINGS}:
        assert _value(rating_rec, key) == _value(default, key), key
    assert rating_rec.model.rating_input  # and not where no rating head is trained:
    assert not load_config(f"{CONFIGS}/ml1m.py").model.rating_input


def test_config_diff_lists_the_fields_that_differ():
    base = get_base_config()
    other = set_overrides(get_base_config(), {"model.cell": "gru", "data.synthetic.n_users": 3})
    other.extra = 1  # a field base does not have: left out
    assert config_diff(other, base) == {"model.cell": "gru", "data.synthetic.n_users": 3}
    assert set_overrides(base, config_diff(other, base)).to_dict() == {
        k: v for k, v in other.to_dict().items() if k != "extra"
    }


# ----------------------------------------------------------------------------- the machinery


def test_set_override_casts_to_the_field_type():
    c = get_base_config()
    set_overrides(c, {"model.cell": "gru", "eval.ks": [5, 10], "loss.aux_weight": 1})
    assert c.model.cell == "gru" and c.eval.ks == (5, 10)
    assert c.loss.aux_weight == 1.0 and type(c.loss.aux_weight) is float
    set_override(c, "train.epochs", 4.0)  # a whole float is an int
    assert c.train.epochs == 4 and type(c.train.epochs) is int
    set_override(c, "model.relevance", "false")  # text as on a command line
    set_override(c, "optim.learning_rate", "1e-2")
    set_override(c, "data.synthetic.n_users", "33")
    assert c.model.relevance is False and c.optim.learning_rate == 0.01
    assert c.data.synthetic.n_users == 33
    apply_override(c, " eval.ks = (1, 3) ")
    apply_override(c, "compare=('model.duration_mode=none',)")
    assert c.eval.ks == (1, 3) and c.compare == ("model.duration_mode=none",)


def test_set_override_names_the_key_it_cannot_set():
    c = get_base_config()
    with pytest.raises(KeyError, match="'model.celll': no such config field"):
        set_overrides(c, {"model.celll": "gru"})
    with pytest.raises(KeyError, match="no config group 'modle'"):
        set_override(c, "modle.cell", "gru")
    with pytest.raises(KeyError, match="no config group 'seed'"):
        set_override(c, "seed.x", 1)
    with pytest.raises(KeyError, match="a config group, not a field"):
        set_override(c, "model", "gru")
    bad = [
        ("train.epochs", 2.5, "fraction"),
        ("train.epochs", True, "expected int"),
        ("train.epochs", "two", "expected int, got 'two'"),
        ("model.relevance", 2, "boolean"),
        ("model.relevance", "maybe", "boolean"),
        ("model.cell", 3, "string"),
        ("eval.ks", 5, "tuple"),
    ]
    for key, value, message in bad:
        with pytest.raises(ValueError, match=message):
            set_override(c, key, value)
    with pytest.raises(ValueError, match="key=value"):
        apply_override(c, "model.cell")
    assert c.to_dict() == get_base_config().to_dict()  # nothing was half set


def test_sweep_apply_copies_and_sets_typed_values():
    base = get_base_config()
    child = sweep.apply(base, {"optim.learning_rate": 1e-1, "model.tie_output": True})
    assert child.optim.learning_rate == 0.1 and child.model.tie_output is True
    assert base.optim.learning_rate == 1e-3 and base.model.tie_output is False


def test_load_config_reads_path_and_variant(tmp_path):
    (tmp_path / "a.py").write_text("def get_config(arg='x'):\n    return {'arg': arg}\n")
    (tmp_path / "b.py").write_text(
        "from durgru_jax.base_config import load_config\n\n"
        "def get_config(arg=''):\n    return load_config('a.py:' + arg, beside=__file__)\n"
    )
    assert load_config(f"{tmp_path}/a.py") == {"arg": "x"}
    assert load_config(f"{tmp_path}/a.py:y") == {"arg": "y"}
    assert load_config(f"{tmp_path}/b.py:z") == {"arg": "z"}  # a sibling, by its folder
    assert load_config(f"{tmp_path}/b.py") == {"arg": "x"}
    module, variant = config_module(f"{tmp_path}/a.py:v,w")
    assert variant == "v,w" and module.get_config()["arg"] == "x"
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(f"{tmp_path}/nope.py:v")


def test_parse_variant_defaults_order_extras_and_errors():
    known = {"dataset": ("ml1m", "ml100k"), "method": ("agru", "gru", "sasrec")}
    extras = {"seeds": positive_int}
    assert parse_variant("", known) == {"dataset": "ml1m", "method": "agru"}
    assert parse_variant(None, known) == {"dataset": "ml1m", "method": "agru"}
    got = parse_variant(" gru , ml100k,seeds=2", known, extras=extras)
    assert got == {"dataset": "ml100k", "method": "gru", "seeds": 2}
    with pytest.raises(ValueError, match=r"unknown x variant 'bert'; x takes dataset: ml1m \| "):
        parse_variant("ml1m,bert", known, extras=extras, config="x")
    with pytest.raises(ValueError, match="method: agru | gru | sasrec; seeds=..."):
        parse_variant("bert", known, extras=extras)
    with pytest.raises(ValueError, match="two values for dataset"):
        parse_variant("ml1m,ml100k", known)
    with pytest.raises(ValueError, match="unknown config variant 'seeds=2'"):
        parse_variant("seeds=2", known)  # no extras declared
    with pytest.raises(ValueError, match="'seeds=0': '0' is not a positive integer"):
        parse_variant("seeds=0", known, extras=extras)
