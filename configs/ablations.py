"""Ablations of paper 000's full model, or of the recommended model, as variants of one config.

One variant: ``python launch.py --config configs/ablations.py:no_duration --workdir W``.
All variants x 3 seeds: ``python launch.py --config configs/ablations.py --sweep --workdir W``.
Another dataset: ``--config configs/ablations.py:yoochoose`` (or ``:ml100k``), one variant on it
``--config configs/ablations.py:yoochoose,no_aux`` (give ``--config.data.path`` for real data).
The recommended model (docs/model_and_protocol.md) and its switches: ``recommended`` (its
sweep: ``configs/ablations.py:recommended --sweep``, on ML-100K ``:ml100k,recommended``), one
switch ``configs/ablations.py:ml100k,recommended_untied_output``.
``python launch.py --report W`` turns the sweep into the table (mean ± std, paired tests).

Variants of the paper's model (`VARIANTS`): full | no_duration | duration_gate | no_aux |
aux_w0.2 | aux_w1 | gru | no_relevance | reset_gate | shuffled_durations.
``aux_w0.2`` / ``aux_w1`` with ``full`` (0.5) and ``no_aux`` (0) are the auxiliary-loss weight
grid: "tuned" is the one with the best *validation* metric. ``shuffled_durations`` permutes each
user's durations among that user's events (per split): a control that keeps every statistic of
the factor but breaks its link to the events, so it must erase any gain that durations bring.

Variants of the recommended model (`RECOMMENDED_VARIANTS`), one switch each: recommended |
recommended_duration_input (the paper's input scaling instead of the gate) |
recommended_no_duration | recommended_(no_)gap_input (the time-gap input flipped) |
recommended_aux_w0.2 | recommended_untied_output (a separate output matrix instead of the item
embeddings) | recommended_repeat_head (the repeat-aware output, in place of the seen-item offset
on ML-100K) | recommended_shuffled_durations | recommended_no_seen_bias (ML-100K only: the
seen-item offset off).
"""

from durgru_jax.base_config import RECOMMENDED_MODEL, load_config, parse_variant, set_overrides

VARIANTS = {
    "full": {},
    "no_duration": {"model.duration_mode": "none"},
    "duration_gate": {"model.duration_mode": "gate"},
    "no_aux": {"loss.aux_weight": 0.0},
    "aux_w0.2": {"loss.aux_weight": 0.2},
    "aux_w1": {"loss.aux_weight": 1.0},
    "gru": {"model.cell": "gru"},
    "no_relevance": {"model.relevance": False},
    "reset_gate": {"model.reset_gate": True},
    "shuffled_durations": {"data.shuffle_durations": True},
}
_GAP = RECOMMENDED_MODEL["model.gap_input"]
_TIE = RECOMMENDED_MODEL["model.tie_output"]
RECOMMENDED_VARIANTS = {
    "recommended": {},
    "recommended_duration_input": {"model.duration_mode": "input"},
    "recommended_no_duration": {"model.duration_mode": "none"},
    f"recommended_{'no_' if _GAP else ''}gap_input": {"model.gap_input": not _GAP},
    "recommended_aux_w0.2": {"loss.aux_weight": 0.2},
    f"recommended_{'untied' if _TIE else 'tie'}_output": {"model.tie_output": not _TIE},
    # in place of the seen-item offset where the model has it (MovieLens): the mixture already
    # scores the window's items
    "recommended_repeat_head": {"model.repeat_head": True, "model.seen_bias": False},
    "recommended_shuffled_durations": {"data.shuffle_durations": True},
    "recommended_no_seen_bias": {"model.seen_bias": False},
}
# Variants that only change what the duration factor does: without durations (MovieLens) they
# equal the model they vary, so they are not declared there.
DURATION_VARIANTS = (
    "no_duration",
    "duration_gate",
    "shuffled_durations",
    "recommended_duration_input",
    "recommended_no_duration",
    "recommended_shuffled_durations",
)
# Variants of the seen-item offset, which only MovieLens's recommended model has: elsewhere
# they equal the model they vary, so they are declared on ML-100K only.
SEEN_VARIANTS = ("recommended_no_seen_bias",)
DATASETS = ("synthetic", "yoochoose", "ml100k")
SEEDS = (0, 1, 2)
# the argument after ":" (defaults first)
CHOICES = {"dataset": DATASETS, "variant": (*VARIANTS, *RECOMMENDED_VARIANTS)}
# The sweep's argument: a dataset, and "recommended" for the recommended model's switches.
SWEEP_CHOICES = {"dataset": DATASETS, "model": ("full", "recommended")}


def _dataset_config(dataset: str, model: str):
    """``dataset``'s config with ``model``, "paper" or "recommended" (configs/default.py etc.)."""
    if dataset == "synthetic":
        c = load_config(f"default.py:{model}", beside=__file__)  # the synthetic data
        c.compare = ()  # the variants are the comparisons
    elif dataset == "yoochoose":  # the prepared RecSys 2015 sample: sessions, derived dwell
        c = load_config(f"yoochoose.py:prepared,{model}", beside=__file__)
        # 6 steps per epoch: after 10 epochs validation recall@20 was still rising steeply,
        # so every variant trains until validation stops improving (patience 3).
        c.train.epochs = 60
    else:  # MovieLens-100K: no durations, so only the non-duration ablations are declared
        c = load_config(f"ml100k.py:{model}", beside=__file__)
    return c


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, config="ablation")
    if v["variant"] in RECOMMENDED_VARIANTS:
        c = _dataset_config(v["dataset"], "recommended")
        return set_overrides(c, RECOMMENDED_VARIANTS[v["variant"]])
    return set_overrides(_dataset_config(v["dataset"], "paper"), VARIANTS[v["variant"]])


def sweep(add, arg: str = ""):
    v = parse_variant(arg, SWEEP_CHOICES, config="ablation sweep")
    variants = RECOMMENDED_VARIANTS if v["model"] == "recommended" else VARIANTS
    for name, overrides in variants.items():
        if v["dataset"] == "ml100k" and name in DURATION_VARIANTS:
            continue  # no durations: these equal the model they vary exactly
        if v["dataset"] != "ml100k" and name in SEEN_VARIANTS:
            continue
        for seed in SEEDS:
            add(**overrides, seed=seed)
