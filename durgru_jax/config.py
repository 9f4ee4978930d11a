"""Typed, frozen views of the experiment ConfigDict, and the one home of its defaults.

The model and the training loop never read the ConfigDict: `from_config` turns each group into
a frozen dataclass, checks every value, and fails naming the field when something is wrong.
Unknown keys are already rejected by the locked ConfigDict at the command line; the dataclass
constructors reject them again for configs built in Python.

Each field's default here is the default of ``config.<group>.<field>``: `base_config` builds
the ConfigDict groups from `group_defaults`. Fields marked `_from_data` (the catalogue size,
the context counts, ...) are not config keys; the training loop fills them in from the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from durgru_jax.attention import ATTENTION_CELLS
from durgru_jax.cells import CELLS, DURATION_MODES
from durgru_jax.errors import UserError


class ConfigError(ValueError, UserError):
    """A config value that cannot work, with the dotted key that holds it."""


def _choice(key: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"config.{key}={value!r} is not one of {list(choices)}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config.{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


_FROM_DATA = "from_data"


def _from_data(default: Any) -> Any:
    """A field filled in from the prepared data by the training loop, never by a config."""
    return dataclasses.field(default=default, metadata={_FROM_DATA: True})


def group_defaults(cls) -> dict[str, Any]:
    """``{field: default}`` of the keys a config sets in ``cls``'s group (not `_from_data`)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if not f.metadata.get(_FROM_DATA)}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    cell: str = "agru"  # "agru" (eq. 6-8) | "gru" (eq. 10-11) | "sasrec" | "adpr" (attention.py)
    duration_mode: str = "input"  # "none" | "input" (paper, eq. 10) | "gate" (AUGRU-style)
    embed_dim: int = 64  # item embedding size (the paper's k)
    hidden_dim: int = 100  # hidden state size
    dropout: float = 0.1  # on cell inputs and outputs
    # GRU / aGRU cells: the rate on the item embeddings entering the cell / on the states
    # leaving it (GRU4Rec's dropout_p_embed / dropout_p_hidden); -1: the rate of `dropout`.
    dropout_embed: float = -1.0
    dropout_hidden: float = -1.0
    tie_output: bool = False  # score with the item embeddings (eq. 12 with W_0 tied)
    relevance: bool = True  # aGRU: the relevance context C_A in the update gate (eq. 7)
    # GRU: a learned embedding of the time-gap bucket since the previous event (the aGRU's
    # transfer context, data.gap_buckets; bucket 0 = no previous event) joins the input
    gap_input: bool = False
    n_items: int = _from_data(0)  # catalogue size (ids 1..n_items, 0 = padding)
    n_input_contexts: int = _from_data(1)
    n_transfer_contexts: int = _from_data(1)
    rating_head: bool = _from_data(False)  # the data has ratings and loss.rating_weight > 0
    # GRU with the rating head: each input item also enters signed and scaled by the user's
    # rating of it (its deviation from the mean rating), so the state knows what the user liked
    rating_input: bool = False
    scan_unroll: int = 4  # lax.scan unroll factor (speed only; ~15% faster than 1 on CPU)
    init_bias_from_popularity: bool = True  # output bias starts at log training popularity
    # 0: an event's duration is known when the next item is predicted (measured dwell);
    # 1: only after the next event (dwell derived from the next click's time): the prediction
    # made at event t then uses a neutral factor for t, so the next click's time never leaks.
    duration_delay: int = 0
    reset_gate: bool = False  # aGRU ablation: a learned reset gate instead of the paper's r_t = I
    # alpha = duration_scale * sigmoid(z). 1.0 is eq. (9) as printed (an average event gets
    # 0.5); 2.0 gives an average or unknown event exactly 1, so "none" is the case z = 0.
    duration_scale: float = 2.0
    n_layers: int = 2  # sasrec: self-attention blocks
    n_heads: int = 1  # sasrec: attention heads (must divide hidden_dim)
    # sasrec's positional table size: like the catalogue size, filled in from data.max_len.
    # Attention cells need duration_mode=none.
    max_len: int = _from_data(0)
    # "bfloat16": the train step computes in bf16 from f32 master weights (logsumexp and
    # losses stay f32, gradients are f32); meant for GPUs/TPUs, slow on CPU. Evaluation is f32.
    compute_dtype: str = "float32"
    # RepeatNet-style output (durgru_jax/repeat.py): a learned mixture of re-consuming an item
    # of the input window and exploring the catalogue (needs loss.target="full")
    repeat_head: bool = False
    # one learned score offset for the items of the input window (durgru_jax/seen.py): users
    # who do not come back to items (b < 0) or do (b > 0); needs loss.target="full"
    seen_bias: bool = False

    def __post_init__(self):
        _choice("model.cell", self.cell, CELLS + ATTENTION_CELLS)
        if self.cell in ATTENTION_CELLS:
            self._check_attention()
        _choice("model.duration_mode", self.duration_mode, DURATION_MODES)
        _positive("model.embed_dim", self.embed_dim)
        _positive("model.hidden_dim", self.hidden_dim)
        for name in ("dropout", "dropout_embed", "dropout_hidden"):
            rate = getattr(self, name)
            if not (0.0 <= rate < 1.0 or (name != "dropout" and rate == -1.0)):
                allowed = "[0, 1)" if name == "dropout" else "[0, 1) or -1 (model.dropout)"
                raise ConfigError(f"config.model.{name}={rate!r} must be in {allowed}")
        _positive("model.scan_unroll", self.scan_unroll)
        _choice("model.duration_delay", self.duration_delay, (0, 1))
        _choice("model.compute_dtype", self.compute_dtype, ("float32", "bfloat16"))
        if self.rating_input and self.cell != "gru":
            raise ConfigError(
                f"config.model.rating_input=True needs config.model.cell='gru' (got {self.cell!r})"
            )
        if self.gap_input and self.cell != "gru":
            raise ConfigError(
                f"config.model.gap_input=True needs config.model.cell='gru' (got "
                f"{self.cell!r}; the aGRU's transition matrices already read the time gap)"
            )

    @property
    def embed_rate(self) -> float:
        """Dropout rate on the item embeddings entering the cell."""
        return self.dropout if self.dropout_embed == -1.0 else self.dropout_embed

    @property
    def hidden_rate(self) -> float:
        """Dropout rate on the hidden states leaving the cell."""
        return self.dropout if self.dropout_hidden == -1.0 else self.dropout_hidden

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
    target: str = "full"  # "full": softmax over all items (NLL) | "sampled" (log-Q) | "bpr_max"
    n_sampled: int = 1024  # target="sampled": shared negatives per batch
    sampler: str = "popularity"  # target="sampled": "uniform" | "popularity"
    aux_weight: float = 0.5  # alpha of eq. (14); 0 switches the auxiliary loss off
    aux_negatives: int = 1  # negatives per step for the auxiliary loss, eq. (13)
    aux_sampler: str = "uniform"  # "uniform" | "popularity"
    rating_weight: float = 0.0  # > 0 adds the next-item rating MSE (data with ratings)
    bpreg: float = 1.0  # target="bpr_max": weight of its score regulariser sum_j s_j r_j^2
    # sampler="popularity": draws from popularity^alpha (GRU4Rec's sample_alpha; 1: as is)
    sample_alpha: float = 1.0
    # target="bpr_max": > 0 passes every score (target and negatives) through ELU(alpha)
    # before the loss, as GRU4Rec's elu_param; 0: raw scores
    bpr_elu: float = 0.0

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
        _positive("loss.bpr_elu", self.bpr_elu, allow_zero=True)


OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad", "adagrad_momentum")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The ``config.optim`` group (read by ``durgru_jax.train.make_optimizer``)."""

    # "adam" | "adamw" | "sgd" | "adagrad" | "adagrad_momentum" (GRU4Rec's IndexedAdagradM,
    # `durgru_jax.optim.adagrad_momentum`)
    name: str = "adam"
    learning_rate: float = 1e-3  # peak learning rate
    schedule: str = "constant"  # "constant" | "cosine" | "linear" decay after warm-up
    warmup_steps: int = 0  # linear warm-up steps
    weight_decay: float = 0.0  # adamw only
    momentum: float = 0.0  # adagrad_momentum only
    clip_norm: float = 1.0  # global gradient-norm clipping (0: off)

    def __post_init__(self):
        _choice("optim.name", self.name, OPTIMIZERS)
        _choice("optim.schedule", self.schedule, ("constant", "cosine", "linear"))
        _positive("optim.learning_rate", self.learning_rate)
        _positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        _positive("optim.clip_norm", self.clip_norm, allow_zero=True)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"config.optim.momentum={self.momentum!r} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128  # sequences (windows) per step
    epochs: int = 20  # maximum epochs
    max_steps: int = 0  # stop after this many steps (0: no limit)
    patience: int = 3  # evaluations without validation improvement before early stopping
    # The training floor: early stopping never ends a run before min_steps steps and
    # min_epochs epochs (0: no floor). A run whose schedule (epochs, max_steps) cannot reach
    # the floor on its data stops at setup, naming the numbers.
    min_steps: int = 0
    min_epochs: int = 0
    select_metric: str = "valid/ndcg@10"  # model selection metric (validation only)
    log_every: int = 50  # steps between progress lines / metrics.jsonl records
    eval_every_epochs: int = 1  # validation every this many epochs
    # also validate every this many optimizer steps (and at step 0), appended to metrics.jsonl
    # for metric-vs-iteration curves (0: off); selection and early stopping stay at epoch ends
    eval_every_steps: int = 0
    time_budget_s: float = 0.0  # stop training after this many seconds (0: no limit)
    # Devices (durgru_jax/parallel.py): a (data_parallel x model_parallel) mesh. Batches are
    # split over data_parallel devices (0: all devices not used by model_parallel; batch_size
    # is padded with empty rows to a multiple of it); model_parallel > 1 splits the item
    # tables along the item axis. 1 x 1 is the plain one-device path.
    data_parallel: int = 1
    model_parallel: int = 1
    # Truncated BPTT (durgru_jax/bptt.py): > 0 cuts each batch's windows into chunks of this
    # many steps, one optimizer update per chunk, the state carried from chunk to chunk with
    # its gradient stopped; 1 is GRU4Rec's session-parallel one-step updates. 0: one update
    # per batch, BPTT over the whole window.
    bptt: int = 0

    def __post_init__(self):
        _positive("train.batch_size", self.batch_size)
        _positive("train.bptt", self.bptt, allow_zero=True)
        _positive("train.data_parallel", self.data_parallel, allow_zero=True)
        _positive("train.model_parallel", self.model_parallel)
        _positive("train.epochs", self.epochs)
        _positive("train.patience", self.patience)
        _positive("train.min_steps", self.min_steps, allow_zero=True)
        _positive("train.min_epochs", self.min_epochs, allow_zero=True)
        if self.min_epochs > self.epochs:
            raise ConfigError(
                f"config.train.min_epochs={self.min_epochs} exceeds "
                f"config.train.epochs={self.epochs}: the training floor cannot be reached"
            )
        if self.max_steps and self.min_steps > self.max_steps:
            raise ConfigError(
                f"config.train.min_steps={self.min_steps} exceeds "
                f"config.train.max_steps={self.max_steps}: the training floor cannot be reached"
            )
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
    ks: tuple[int, ...] = (5, 10, 20)  # cutoffs of every ranking metric
    exclude_history: bool = True  # never rank items the user already interacted with
    batch_size: int = 512  # users per evaluation chunk
    item_chunk: int = 65536  # items scored at once (memory: batch_size x item_chunk floats)
    unknown_targets: str = "miss"  # targets never seen in training: "miss" | "drop"
    # also paper 001's top-N protocol: one list per user (from its earliest held-out example)
    # against the set of items of its held-out period: topn_precision/recall/coverage@K
    user_topn: bool = False

    def __post_init__(self):
        if not self.ks or any(k <= 0 for k in self.ks):
            raise ConfigError(f"config.eval.ks={self.ks!r} must be positive integers")
        _choice("eval.unknown_targets", self.unknown_targets, ("miss", "drop"))
        _positive("eval.batch_size", self.batch_size)
        _positive("eval.item_chunk", self.item_chunk)


def _build(cls, cfg: Mapping[str, Any], group: str, **overrides):
    names = set(group_defaults(cls))
    data = dict(cfg)
    from_data = sorted(set(data) & ({f.name for f in dataclasses.fields(cls)} - names))
    if from_data:
        raise ConfigError(
            f"config.{group}: {', '.join(from_data)} are filled in from the data; remove them"
        )
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in config.{group}: {', '.join(unknown)}")
    if "ks" in data:
        data["ks"] = tuple(int(k) for k in data["ks"])
    data.update(overrides)
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int  # seeds parameters, data order, dropout and negative sampling
    model: ModelConfig
    loss: LossConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig

    def __post_init__(self):
        m = self.model
        if self.train.bptt and (m.cell != "gru" or m.rating_head or m.repeat_head):
            raise ConfigError(
                f"config.train.bptt={self.train.bptt} needs config.model.cell='gru' without a "
                f"rating head or repeat head (got cell={m.cell!r}, rating_head="
                f"{m.rating_head}, repeat_head={m.repeat_head}): only the GRU state crosses "
                "from chunk to chunk"
            )
        if self.train.bptt and (self.optim.schedule != "constant" or self.optim.warmup_steps):
            raise ConfigError(
                f"config.train.bptt={self.train.bptt} makes several optimizer updates per "
                "batch: the schedule counts batches, so use config.optim.schedule='constant' "
                "and config.optim.warmup_steps=0"
            )
        if self.model.repeat_head and self.loss.target != "full":
            raise ConfigError(
                "config.model.repeat_head=True needs config.loss.target='full' (its mixture "
                f"likelihood uses the full softmax's log-normaliser); got {self.loss.target!r}"
            )
        if m.seen_bias and (m.repeat_head or self.loss.target != "full" or self.train.bptt):
            raise ConfigError(
                "config.model.seen_bias=True needs config.loss.target='full', no repeat head "
                "(whose mixture already scores the window's items) and config.train.bptt=0 (a "
                f"chunk's window is not the user's); got target={self.loss.target!r}, "
                f"repeat_head={m.repeat_head}, bptt={self.train.bptt}"
            )


# The ConfigDict group each typed config is built from (and whose defaults it holds).
GROUPS = {
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def from_config(config: Mapping[str, Any], **model_overrides) -> RunConfig:
    """Builds the typed run config from a ConfigDict (or nested dict); ``model_overrides`` are
    the `_from_data` fields of `ModelConfig` (``n_items=...``)."""
    groups = {
        group: _build(cls, config[group], group, **(model_overrides if group == "model" else {}))
        for group, cls in GROUPS.items()
    }
    return RunConfig(seed=int(config["seed"]), **groups)
