"""Typed, frozen views of the experiment ConfigDict.

The model and the training loop never read the ConfigDict: `from_config` turns each group into
a frozen dataclass, checks every value, and fails naming the field when something is wrong.
Unknown keys are already rejected by the locked ConfigDict at the command line; the dataclass
constructors reject them again for configs built in Python.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from durgru_jax.attention import ATTENTION_CELLS
from durgru_jax.cells import CELLS, DURATION_MODES


class ConfigError(ValueError):
    """A config value that cannot work, with the dotted key that holds it."""


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"config.{key}={value!r} is not one of {list(choices)}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config.{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    cell: str = "agru"
    duration_mode: str = "input"
    embed_dim: int = 64
    hidden_dim: int = 100
    dropout: float = 0.1
    tie_output: bool = False
    relevance: bool = True
    n_items: int = 0  # catalogue size, filled in from the data (ids 1..n_items, 0 = padding)
    n_input_contexts: int = 1  # filled in from the data
    n_transfer_contexts: int = 1  # filled in from the data
    rating_head: bool = False  # filled in from the data and loss.rating_weight
    scan_unroll: int = 1
    init_bias_from_popularity: bool = True
    duration_delay: int = 0  # 1: an event's duration is known only after the next event
    reset_gate: bool = False  # aGRU ablation: learn a reset gate instead of r_t = I
    duration_scale: float = 2.0  # alpha = scale * sigmoid(z); 1 is eq. (9) as printed
    n_layers: int = 2  # sasrec: self-attention blocks
    n_heads: int = 1  # sasrec: attention heads (must divide hidden_dim)
    max_len: int = 0  # sasrec: positional table size, filled in from data.max_len
    compute_dtype: str = "float32"  # train-step compute: "float32" | "bfloat16" (f32 weights)

    def __post_init__(self):
        _choice("model.cell", self.cell, CELLS + ATTENTION_CELLS)
        if self.cell in ATTENTION_CELLS:
            self._check_attention()
        _choice("model.duration_mode", self.duration_mode, DURATION_MODES)
        _positive("model.embed_dim", self.embed_dim)
        _positive("model.hidden_dim", self.hidden_dim)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config.model.dropout={self.dropout!r} must be in [0, 1)")
        _positive("model.scan_unroll", self.scan_unroll)
        _choice("model.duration_delay", self.duration_delay, (0, 1))
        _choice("model.compute_dtype", self.compute_dtype, ("float32", "bfloat16"))

    def _check_attention(self):
        if self.duration_mode != "none":
            raise ConfigError(
                f"config.model.cell={self.cell!r} does not use durations: set "
                f"config.model.duration_mode=none (got {self.duration_mode!r})"
            )
        _positive("model.n_layers", self.n_layers)
        _positive("model.n_heads", self.n_heads)
        if self.cell == "sasrec" and self.hidden_dim % self.n_heads:
            raise ConfigError(
                f"config.model.n_heads={self.n_heads} must divide "
                f"config.model.hidden_dim={self.hidden_dim}"
            )
        if self.cell == "sasrec" and self.max_len < 1:
            raise ConfigError(
                "config.model.max_len (sasrec's positional table) must be >= 1: the training "
                "loop fills it in from config.data.max_len"
            )


@dataclasses.dataclass(frozen=True)
class LossConfig:
    target: str = "full"  # "full" softmax over all items, "sampled" or "bpr_max"
    n_sampled: int = 1024  # shared sampled negatives per batch for target="sampled"
    sampler: str = "popularity"  # negatives of the sampled softmax: "uniform" | "popularity"
    aux_weight: float = 0.5  # alpha of eq. (14)
    aux_negatives: int = 1  # negatives per step in the auxiliary loss, eq. (13)
    aux_sampler: str = "uniform"  # "uniform" | "popularity"
    rating_weight: float = 0.0  # weight of the next-item rating MSE (rating data only)
    bpreg: float = 1.0  # target="bpr_max": weight of the score regulariser
    sample_alpha: float = 1.0  # sampler="popularity": sampled negatives ~ popularity^alpha

    def __post_init__(self):
        _choice("loss.target", self.target, ("full", "sampled", "bpr_max"))
        _choice("loss.sampler", self.sampler, ("uniform", "popularity"))
        _choice("loss.aux_sampler", self.aux_sampler, ("uniform", "popularity"))
        _positive("loss.aux_weight", self.aux_weight, allow_zero=True)
        _positive("loss.aux_negatives", self.aux_negatives)
        _positive("loss.n_sampled", self.n_sampled)
        _positive("loss.rating_weight", self.rating_weight, allow_zero=True)
        _positive("loss.bpreg", self.bpreg, allow_zero=True)
        _positive("loss.sample_alpha", self.sample_alpha)  # 0 is sampler="uniform"


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"  # "adam" | "adamw" | "sgd" | "adagrad"
    learning_rate: float = 1e-3
    schedule: str = "constant"  # "constant" | "cosine" | "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.0  # adamw only
    clip_norm: float = 1.0  # global-norm gradient clipping; 0 disables

    def __post_init__(self):
        _choice("optim.name", self.name, ("adam", "adamw", "sgd", "adagrad"))
        _choice("optim.schedule", self.schedule, ("constant", "cosine", "linear"))
        _positive("optim.learning_rate", self.learning_rate)
        _positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        _positive("optim.clip_norm", self.clip_norm, allow_zero=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    epochs: int = 20
    max_steps: int = 0  # stop after this many steps (0: no limit); for sweeps over iterations
    patience: int = 3  # epochs without validation improvement before stopping
    select_metric: str = "valid/ndcg@10"  # early stopping and model selection (never test)
    log_every: int = 50
    eval_every_epochs: int = 1
    eval_every_steps: int = 0  # extra validation records along the steps (0: off)
    time_budget_s: float = 0.0  # stop training after this many seconds (0: no limit)
    data_parallel: int = 1  # batch shards over the "data" mesh axis (0: all devices)
    model_parallel: int = 1  # item-table shards over the "model" mesh axis

    def __post_init__(self):
        _positive("train.batch_size", self.batch_size)
        _positive("train.data_parallel", self.data_parallel, allow_zero=True)
        _positive("train.model_parallel", self.model_parallel)
        _positive("train.epochs", self.epochs)
        _positive("train.patience", self.patience)
        _positive("train.log_every", self.log_every)
        _positive("train.eval_every_epochs", self.eval_every_epochs)
        _positive("train.eval_every_steps", self.eval_every_steps, allow_zero=True)
        if not self.select_metric.startswith("valid/"):
            raise ConfigError(
                f"config.train.select_metric={self.select_metric!r}: model selection must use a "
                "validation metric ('valid/...'), never the test set"
            )


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_history: bool = True
    batch_size: int = 512  # users per evaluation chunk
    item_chunk: int = 65536  # items scored at once; bounds memory at batch_size x item_chunk
    unknown_targets: str = "miss"  # target items never seen in training: "miss" | "drop"
    user_topn: bool = False  # also paper 001's per-user top-N set metrics (topn_*)

    def __post_init__(self):
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ConfigError(f"config.eval.ks={self.ks!r} must be positive integers")
        _choice("eval.unknown_targets", self.unknown_targets, ("miss", "drop"))
        _positive("eval.batch_size", self.batch_size)
        _positive("eval.item_chunk", self.item_chunk)


def _build(cls, cfg: Mapping[str, Any], group: str, **overrides):
    names = {f.name for f in dataclasses.fields(cls)}
    data = dict(cfg)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in config.{group}: {', '.join(unknown)}")
    if "ks" in data:
        data["ks"] = tuple(int(k) for k in data["ks"])
    data.update(overrides)
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int
    model: ModelConfig
    loss: LossConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig


def from_config(config: Mapping[str, Any], **model_overrides) -> RunConfig:
    """Builds the typed run config from a ConfigDict (or nested dict)."""
    return RunConfig(
        seed=int(config["seed"]),
        model=_build(ModelConfig, config["model"], "model", **model_overrides),
        loss=_build(LossConfig, config["loss"], "loss"),
        optim=_build(OptimConfig, config["optim"], "optim"),
        train=_build(TrainConfig, config["train"], "train"),
        eval=_build(EvalConfig, config["eval"], "eval"),
    )
