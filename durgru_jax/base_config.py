"""The experiment ConfigDict: `get_base_config` and the dataset bases the files in ``configs/``
start from; the model slot of the dataset configs (`MODELS`: the recommended model,
`RECOMMENDED_MODEL`, or paper 000's aGRU; `use_model`); and the machinery those files share:
the one dotted-override setter (`set_override`) and difference (`config_diff`), the one
config-file loader (`load_config`, ``PATH.py[:VARIANT]``) and the one variant parser
(`parse_variant`).

No default is written here twice: the ``model`` / ``loss`` / ``optim`` / ``train`` / ``eval``
groups are built from the typed dataclasses of `durgru_jax.config`, and the preprocessing keys
of ``data`` from `durgru_jax.data.dataset.PrepConfig`; only the keys no dataclass holds (the
data source, ``seed``, ``compare``) are set here.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import types
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import ml_collections

from durgru_jax import shared_data
from durgru_jax.config import GROUPS, OptimConfig, group_defaults
from durgru_jax.data.dataset import PrepConfig


def _group(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(group_defaults(cls))


def get_optim_config() -> ml_collections.ConfigDict:
    """The ``config.optim`` group (`durgru_jax.config.OptimConfig`'s defaults)."""
    return _group(OptimConfig)


def get_data_config() -> ml_collections.ConfigDict:
    """The ``config.data`` group: where the events come from, then the preprocessing switches
    of `PrepConfig` (all but its ``seed``, which is the run's ``config.seed``)."""
    d = ml_collections.ConfigDict()
    d.source = "synthetic"  # "synthetic" | "movielens" | "csv"
    d.path = ""  # input file for movielens / csv
    d.dataset = ""  # registry name (durgru_jax/data/download.py) to fetch a missing file
    d.download = True  # fetch a missing registered dataset from its official source
    d.cache = True  # cache the prepared arrays (keyed by config + source size/mtime)
    d.cache_dir = ""  # "" = $DURGRU_CACHE or ~/.cache/durgru_jax
    d.on_bad_rows = "error"  # "error": stop at the first bad row; "skip": drop and count them
    d.sep = ""  # csv only: field separator ("" = from the file extension)
    d.timestamp_unit = "s"  # csv only: unit of numeric timestamps, "s" | "ms"
    d.columns = ml_collections.ConfigDict()  # csv only: canonical name -> column in the file
    d.columns.user = "user"
    d.columns.item = "item"
    d.columns.timestamp = "timestamp"
    d.columns.duration = ""  # "" = use a column named "duration" if the file has one
    d.columns.rating = ""
    d.columns.behavior = ""
    d.synthetic = ml_collections.ConfigDict()  # keyword arguments of generate_synthetic
    d.synthetic.n_users = 2000  # users
    d.synthetic.n_items = 1000  # catalogue size
    d.synthetic.n_topics = 20  # interest topics (items are split among them)
    d.synthetic.min_len = 20  # shortest user sequence
    d.synthetic.max_len = 60  # longest user sequence
    d.synthetic.noise_rate = 0.3  # share of short-dwell noise clicks
    d.synthetic.drift = 0.1  # per-event probability of switching topic
    d.synthetic.seed = 0  # generator seed (independent of the run's seed)
    d.update({k: v for k, v in group_defaults(PrepConfig).items() if k != "seed"})
    return d


def get_base_config() -> ml_collections.ConfigDict:
    """The base experiment config (the synthetic data and every default); each file in
    ``configs/`` starts from it or from one of the dataset bases below."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds parameters, data order, dropout and negative sampling
    c.data = get_data_config()
    for group, cls in GROUPS.items():
        c[group] = _group(cls)
    # Extra runs trained beside this one, each "key=value[,key=value]" of overrides; their
    # metrics are stored under "comparisons" in results.json.
    c.compare = ()
    return c


# ----------------------------------------------------------------------------- the model

# A dataset config's model slot (the argument after ":", default first): "recommended" or
# "paper", paper 000's aGRU exactly as the dataclass defaults of `durgru_jax.config` hold it.
MODELS = ("recommended", "paper")

# The recommended model, as overrides of the paper's (docs/model_and_protocol.md, "The
# recommended model"; the measurements behind each line are in docs/ablations.md):
RECOMMENDED_MODEL = types.MappingProxyType(
    {
        # the plain GRU of eq. (10)-(11), learned reset gate: better than the aGRU on every dataset
        "model.cell": "gru",
        # the duration factor scales the update gate (AUGRU): better than scaling the input on the
        # synthetic logs; exactly neutral (factor 1) where the data has no durations
        "model.duration_mode": "gate",
        # the time gap since the previous event (the aGRU's transfer context) as a GRU input:
        # better on ML-100K validation, neutral on the synthetic logs
        "model.gap_input": True,
        # no auxiliary loss (eq. 13-14): within noise everywhere but a small gain on YOOCHOOSE
        "loss.aux_weight": 0.0,
        # the output scores with the input item embeddings (GRU4Rec's constrained embedding):
        # far better on DIGINETICA's sample, level on ML-100K, the synthetic logs and Taobao
        "model.tie_output": True,
    }
)


# Added to it on logs where users come back to items and seen items stay rankable, where it
# wins on validation (the Taobao configs: docs/model_and_protocol.md, "The recommended model"):
# the repeat-aware output, a learned mixture of re-consuming and exploring (`durgru_jax.repeat`)
RECOMMENDED_REPEATS = types.MappingProxyType({"model.repeat_head": True})
# Added to it where the rating head is trained (``loss.rating_weight > 0``): each input item
# also enters scaled by the user's rating of it (ML-1M sample, validation RMSE:
# docs/model_and_protocol.md, "The recommended model")
RECOMMENDED_RATINGS = types.MappingProxyType({"model.rating_input": True})
# Added to it on logs where users do not come back to items (MovieLens: each movie is rated
# once), where it wins on validation (ML-1M and ML-100K samples, both protocols:
# docs/model_and_protocol.md, "The recommended model"): one learned score offset for the
# window's items (`durgru_jax.seen`). Where the history is excluded it cannot change a ranking
# but still changes training: the softmax stops spending the model on the already-rated movies.
RECOMMENDED_SEEN = types.MappingProxyType({"model.seen_bias": True})


def recommended_model(
    config: ml_collections.ConfigDict, repeats: bool = False, seen: bool = False
) -> ml_collections.ConfigDict:
    """Sets `RECOMMENDED_MODEL` in ``config`` (in place; returns it), with ``repeats`` also
    `RECOMMENDED_REPEATS`, with ``seen`` `RECOMMENDED_SEEN`, and `RECOMMENDED_RATINGS` if the
    config trains the rating head. The dataset settings (data, protocol, sizes, learning rate,
    ``duration_delay``) are left as they are."""
    ratings = config.loss.rating_weight > 0
    overrides = {
        **RECOMMENDED_MODEL,
        **(RECOMMENDED_REPEATS if repeats else {}),
        **(RECOMMENDED_RATINGS if ratings else {}),
        **(RECOMMENDED_SEEN if seen else {}),
    }
    return set_overrides(config, overrides)


def use_model(
    config: ml_collections.ConfigDict, model: str, repeats: bool = False, seen: bool = False
) -> ml_collections.ConfigDict:
    """``config`` with the model of the slot ``model`` (one of `MODELS`): "recommended" sets
    `RECOMMENDED_MODEL` (with ``repeats`` `RECOMMENDED_REPEATS`: a log where users come back to
    items; with ``seen`` `RECOMMENDED_SEEN`: a log where they do not),
    "paper" keeps paper 000's aGRU (in place; returns ``config``)."""
    if model not in MODELS:
        raise ValueError(f"model {model!r} is not one of {list(MODELS)}")
    if model == "paper":
        return config
    return recommended_model(config, repeats, seen)


def get_session_config() -> ml_collections.ConfigDict:
    """Base for click / behaviour logs: sessions, derived dwell, temporal split."""
    c = get_base_config()
    d = c.data
    d.split = "temporal"  # sessions ending in the last day are test, the day before valid
    d.session_gap_s = 1800.0  # a user's events 30 min apart start a new session
    d.kcore_users = 2  # sessions with a single click cannot be evaluated
    d.kcore_items = 5  # items with fewer than 5 clicks are removed (GRU4Rec's filter)
    d.drop_consecutive_repeats = True  # a reload of the same item is one view
    d.duration_proxy = "next_gap"  # dwell = gap to the next click of the session
    d.max_len = 20
    c.model.duration_delay = 1  # that dwell is the next click's time: never let it leak
    c.eval.exclude_history = False  # re-clicking an item is a legitimate next click
    c.eval.unknown_targets = "drop"  # test items never seen in training are removed
    c.train.select_metric = "valid/recall@20"
    c.train.batch_size = 256
    c.optim.learning_rate = 5e-3
    # The full logs keep millions of events (hundreds of steps an epoch): what a small sample
    # under these filters keeps stops the run, naming the filter (use its "sample" variant).
    d.min_train_events = 2000
    d.min_eval_examples = 50
    c.train.min_steps = 100  # no early stop before 100 steps (less than an epoch of a full log)
    return c


def get_user_log_config() -> ml_collections.ConfigDict:
    """Base for per-user behaviour logs (Taobao, Tianchi): as `get_session_config`, but each
    user's whole history is one sequence, leave-one-out, users and items 5-core."""
    c = get_session_config()
    d = c.data
    d.split = "leave_one_out"
    d.session_gap_s = 0.0  # one sequence per user
    d.kcore_users = 5
    d.kcore_items = 5
    d.eval_history = "held_out_hidden"
    d.max_len = 50
    return c


MOVIELENS_VARIANTS = ("default", "gru4rec", "rating")


def get_movielens_config(arg: str = "") -> ml_collections.ConfigDict:
    """Base for MovieLens: leave-one-out; ``arg`` names a protocol variant, "gru4rec" (history
    not excluded, selection on recall@20, as GRU4Rec evaluates) or "rating" (random 90/10
    rating split), and/or a model of `MODELS` (default: the recommended one)."""
    choices = {"variant": MOVIELENS_VARIANTS, "model": MODELS}
    v = parse_variant(arg, choices, config="MovieLens")
    variant = v["variant"]
    c = get_base_config()
    c.data.source = "movielens"
    c.data.max_len = 100  # input events per training window / evaluation input
    c.data.hour_buckets = 0  # rating timestamps say when a rating was entered, not watched
    c.data.gap_buckets = 4  # time since the previous rating, 4 quantile buckets
    c.model.embed_dim = 64
    c.model.hidden_dim = 100
    c.model.dropout = 0.2
    c.optim.learning_rate = 1e-2  # Adam; 2e-3 reaches the same recall 2x slower
    c.train.log_every = 20
    if variant == "gru4rec":
        c.eval.exclude_history = False  # GRU4Rec ranks every item, rated ones included
        c.train.select_metric = "valid/recall@20"
    elif variant == "rating":
        c.data.split = "random"  # 90/10; validation is 10% of the 90 (81/9/10 overall)
        c.data.random_test_ratio = 0.1
        c.data.random_valid_ratio = 0.09
        c.loss.rating_weight = 1.0
        c.train.select_metric = "valid/rmse"  # minimised
    # each movie is rated once: the seen-item offset, whether the rated movies are ranked or
    # excluded (not measured on the rating split, which selects on RMSE)
    return use_model(c, v["model"], seen=variant != "rating")


def shared_sample(relative: str) -> str:
    """A file of the folder of small real data samples (`shared_data.sample`:
    ``$DURGRU_SHARED_DATA`` if set, else ``shared/data`` beside the repository), the default
    path of the configs' sample variants."""
    return shared_data.sample(relative)


# ----------------------------------------------------------------------------- overrides


def set_override(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets the field at dotted ``key`` of ``config`` to ``value``, cast to the field's type.

    ``value`` may be text (a ``compare`` spec's): ``true``/``false``/``1``/``0`` for a bool, a
    Python literal for a number or a tuple, as is for a string. An int field takes only whole
    numbers, a bool field only booleans, a tuple field a tuple or list. An unknown key or a
    value that does not fit raises, naming the key."""
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        node = node.get(part)
        if not isinstance(node, ml_collections.ConfigDict):
            raise KeyError(f"override {key!r}: no config group {'.'.join(parents[: i + 1])!r}")
    if leaf not in node:
        raise KeyError(f"override {key!r}: no such config field")
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
        raise KeyError(f"override {key!r}: a config group, not a field")
    try:
        node[leaf] = _cast(current, value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"override {key}={value!r}: {e}") from None


def _cast(current: Any, value: Any) -> Any:
    if isinstance(value, str) and current is not None and not isinstance(current, str):
        value = _parse_text(current, value.strip())
    if isinstance(current, bool):
        if type(value) not in (bool, int) or value not in (0, 1):
            raise ValueError("expected a boolean")
        return bool(value)
    if isinstance(current, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected {type(current).__name__}")
        if isinstance(current, int) and value != int(value):
            raise ValueError("expected int, got a fraction")
        return type(current)(value)
    if isinstance(current, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise ValueError("expected a tuple")
        return tuple(value)
    if isinstance(current, str) and not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _parse_text(current: Any, text: str) -> Any:
    if isinstance(current, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError("expected a boolean (true | false | 1 | 0)")
        return text.lower() in ("true", "1")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"expected {type(current).__name__}, got {text!r}") from None


def set_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """`set_override` for each dotted ``{"group.key": value}`` (a sweep's or a variant's), in
    place; returns ``config``."""
    for key, value in overrides.items():
        set_override(config, key, value)
    return config


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(config: ml_collections.ConfigDict, base: ml_collections.ConfigDict) -> dict:
    """The dotted overrides that turn ``base`` into ``config`` (`set_overrides`): every field of
    ``base`` whose value differs in ``config``; a field only one of them has is left out."""
    new, old = _flat(config.to_dict()), _flat(base.to_dict())
    return {k: v for k, v in new.items() if k in old and old[k] != v}


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """`set_override` from the text ``"a.b.c=value"`` (a ``compare`` spec's or a bench's)."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} is not of the form key=value")
    key, text = assignment.split("=", 1)
    set_override(config, key.strip(), text.strip())


# ----------------------------------------------------------------------------- config files


def config_module(spec: str, *, beside: str | None = None) -> tuple[ModuleType, str]:
    """The module of the config file ``PATH.py[:VARIANT]`` and its ``VARIANT`` ("" if none).

    A relative ``PATH`` is taken from the folder of ``beside`` when given (a config file
    passes its own ``__file__`` to load a sibling), else from the working directory."""
    path, _, variant = spec.partition(":")
    if beside is not None and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(beside)), path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} (of {spec!r}) does not exist")
    name = "_durgru_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, variant


def load_config(spec: str, *, beside: str | None = None) -> ml_collections.ConfigDict:
    """The config of ``PATH.py[:VARIANT]``: its ``get_config(VARIANT)`` (``get_config()``
    without a variant), as ``launch.py --config PATH.py[:VARIANT]`` builds it."""
    module, variant = config_module(spec, beside=beside)
    return module.get_config(variant) if variant else module.get_config()


def parse_variant(
    arg: str | None,
    known: Mapping[str, Sequence[str]],
    *,
    extras: Mapping[str, Callable[[str], Any]] | None = None,
    config: str = "config",
) -> dict[str, Any]:
    """Reads a config file's argument, the text after ``--config configs/NAME.py:``: names and
    ``key=value`` extras, comma-separated, in any order (e.g. ``"ml1m,sasrec,seeds=2"``).

    ``known`` maps each slot to its names, the first of them the slot's default (``{"dataset":
    ("ml1m", "ml100k"), "method": ("agru", "gru")}``); ``extras`` maps each accepted extra key
    to a function that converts its text (raising ValueError on a bad one). Returns ``{slot:
    name}`` for every slot plus ``{key: value}`` for each extra given. An unknown token, a
    second name for one slot or a bad extra raises ValueError listing what ``config`` takes.
    """
    extras = extras or {}
    takes = [f"{s}: {' | '.join(names)}" for s, names in known.items()]
    takes = "; ".join(takes + [f"{k}=..." for k in extras])
    out: dict[str, Any] = {}
    for token in filter(None, (t.strip() for t in (arg or "").split(","))):
        slot = next((s for s, names in known.items() if token in names), None)
        key, eq, text = token.partition("=")
        if (slot is None and not eq) or (eq and key not in extras):
            raise ValueError(f"unknown {config} variant {token!r}; {config} takes {takes}")
        if (slot or key) in out:
            raise ValueError(f"{config} variant {arg!r}: two values for {slot or key}")
        if slot is not None:
            out[slot] = token
            continue
        try:
            out[key] = extras[key](text)
        except ValueError as e:
            raise ValueError(f"{config} variant {token!r}: {e}") from None
    return {**{s: names[0] for s, names in known.items()}, **out}


def positive_int(text: str) -> int:
    """An extra's value that must be a positive integer (``seeds=3``)."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive integer")
    return int(text)
