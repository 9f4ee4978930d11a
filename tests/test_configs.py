"""Every config file loads, for every variant, and its data group is accepted by the pipeline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from durgru_jax.config import from_config
from durgru_jax.data.sources import prep_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VARIANTS = {
    "ml1m": ("default", "gru4rec", "rating"),
    "ml100k": ("default", "gru4rec", "rating"),
    "yoochoose": ("clicks", "prepared"),
    "bench": ("ml1m", "large", "data"),
    "ablations": (
        "full",
        "no_duration",
        "gru",
        "reset_gate",
        "shuffled_durations",
        "aux_w0.2",
        "yoochoose",
        "ml100k,no_aux",
    ),
    "gru4rec": ("synthetic", "ml1m", "ml100k", "yoochoose", "prepared", "ml1m,bpr_max"),
}
RECSYS = (
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
    "ablations",
    "gru4rec",
)


def _load(name):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.py")))
def test_config_file_loads_for_every_variant(name):
    module = _load(name)
    for variant in VARIANTS.get(name, (None,)):
        config = module.get_config(variant) if variant else module.get_config()
        assert "seed" in config


@pytest.mark.parametrize("name", RECSYS)
def test_recsys_configs_build_typed_configs(name):
    module = _load(name)
    for variant in VARIANTS.get(name, (None,)):
        config = module.get_config(variant) if variant else module.get_config()
        prep_config(config.data, int(config.seed))
        from_config(config, n_items=10)


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="variant"):
        _load("ml1m").get_config("nope")


def test_ablation_sweep_declares_each_variant_per_dataset():
    from durgru_jax import sweep

    module = _load("ablations")
    synthetic = sweep.expand(lambda add: module.sweep(add, ""))
    assert len(synthetic) == len(module.VARIANTS) * len(module.SEEDS)
    ml100k = sweep.expand(lambda add: module.sweep(add, "ml100k"))
    # No durations in MovieLens: the duration ablations would equal no_duration exactly.
    assert len(ml100k) == (len(module.VARIANTS) - len(module.DURATION_VARIANTS)) * 3
    assert not any(r.get("data.shuffle_durations") for r in ml100k)
    c = module.get_config("yoochoose,no_aux")
    assert c.loss.aux_weight == 0.0 and c.data.source == "yoochoose_prepared"
    with pytest.raises(ValueError, match="unknown ablation argument"):
        module.get_config("nope")


def test_set_overrides_sets_dotted_keys_and_rejects_unknown_ones():
    from durgru_jax.base_config import get_base_config, set_overrides

    c = set_overrides(get_base_config(), {"model.cell": "gru", "eval.ks": [5, 10]})
    assert c.model.cell == "gru" and c.eval.ks == (5, 10)
    with pytest.raises(KeyError, match="model.celll"):
        set_overrides(c, {"model.celll": "gru"})
