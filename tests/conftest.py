"""Shared fixtures: a tiny, fast experiment config.

Session-wide environment: XLA compilations that take a while are cached on disk in a
temporary directory that lives for this pytest session only. Several tests train the same
tiny model (and ``launch.py`` subprocesses inherit the variable), so only the first of them
pays for compiling the train step. XLA's backend optimisation is off
(``--xla_backend_optimization_level=0``, unless the caller set ``XLA_FLAGS``): the tests are
dominated by compiling tiny programs, which this halves, and every test compares two paths
compiled alike or tolerates float rounding. Speed is measured by the benchmarks, not here.
Nothing else is changed globally.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import ml_collections
import numpy as np
import pytest

_CACHE_DIR: str | None = None
_DATA_CACHE_DIR: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _CACHE_DIR, _DATA_CACHE_DIR
    # Prepared-data cache entries of the tests never land in the user's ~/.cache.
    _DATA_CACHE_DIR = tempfile.mkdtemp(prefix="durgru-jax-test-data-cache-")
    os.environ["DURGRU_CACHE"] = _DATA_CACHE_DIR
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the caller chose a cache: keep it
        return
    _CACHE_DIR = tempfile.mkdtemp(prefix="durgru-jax-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    import jax  # after the variables: jax reads them when it is first imported

    jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _DATA_CACHE_DIR is not None:
        shutil.rmtree(_DATA_CACHE_DIR, ignore_errors=True)
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


def make_tiny_config() -> ml_collections.ConfigDict:
    """The base config shrunk so that a whole run takes seconds on a CPU."""
    from durgru_jax.base_config import get_base_config

    c = get_base_config()
    s = c.data.synthetic
    s.n_users = 120
    s.n_items = 80
    s.n_topics = 4
    s.min_len = 8
    s.max_len = 16
    c.data.max_len = 12
    c.model.hidden_dim = 16
    c.model.embed_dim = 8
    c.train.batch_size = 32
    c.train.epochs = 3
    c.train.patience = 5
    c.train.log_every = 2
    c.eval.batch_size = 64
    return c


@pytest.fixture(scope="session")
def make_tiny():
    """The factory behind `tiny_config`, for fixtures wider than one test."""
    return make_tiny_config


@pytest.fixture
def tiny_config() -> ml_collections.ConfigDict:
    """A fresh tiny config per test; tests may modify it further."""
    return make_tiny_config()


@pytest.fixture(scope="session")
def runs(tmp_path_factory, make_tiny):
    """Tiny runs trained for one epoch, one per (cell, duration mode), made on first use and
    shared by every module (the trained models behind the recommend, explain and sharding
    tests; they only read them). Cell "recommended" is the
    recommended model (`base_config.RECOMMENDED_MODEL`: a GRU with gap rows) in that mode, cell
    "repeat" that model with the repeat-aware output and cell "seen" with the seen-item offset,
    both evaluated with seen items rankable."""
    from durgru_jax.base_config import recommended_model
    from durgru_jax.train import train_and_evaluate

    made = {}

    def get(cell: str = "agru", mode: str = "input") -> tuple[str, object]:
        if (cell, mode) not in made:
            c = make_tiny()
            c.train.epochs = 1
            if cell in ("recommended", "repeat", "seen"):
                recommended_model(c)
                if cell != "recommended":
                    c.model.repeat_head = cell == "repeat"
                    c.model.seen_bias = cell == "seen"
                    c.eval.exclude_history = False  # where they change the ranking
            else:
                c.model.cell = cell
            c.model.duration_mode = mode
            workdir = str(tmp_path_factory.mktemp(f"run_{cell}_{mode}"))
            train_and_evaluate(c, workdir)
            made[cell, mode] = (workdir, c)
        return made[cell, mode]

    return get


def window_examples(
    n_items: int, seed: int = 0, n: int = 10, length: int = 5, window_items: int | None = None
) -> dict[str, np.ndarray]:
    """Evaluation examples for the heads that score the input window (repeat head, seen-item
    offset): right-padded windows of items ``1..window_items`` (default: the catalogue; fewer
    makes repeats within a window), row 3 empty, targets in the window 60 % of the time, and
    exclusion histories that hold the window after 0-2 older events."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, length + 1, n)
    lens[3] = 0
    mask = np.arange(length)[None, :] < lens[:, None]
    items = np.where(mask, rng.integers(1, (window_items or n_items) + 1, (n, length)), 0)
    items = items.astype(np.int32)
    target = rng.integers(1, n_items + 1, n)
    pick = rng.integers(0, length, n)
    in_window = (rng.random(n) < 0.6) & (lens > 0)
    target = np.where(in_window, items[np.arange(n), np.minimum(pick, lens - 1)], target)
    older = [rng.integers(1, n_items + 1, rng.integers(0, 3)) for _ in range(n)]
    hist = [np.concatenate([o, items[i, : lens[i]]]).astype(np.int32) for i, o in enumerate(older)]
    reset = np.zeros((n, length), bool)
    reset[:, 0] = lens > 0
    return {
        "items": items,
        "mask": mask,
        "reset": reset,
        "target": target.astype(np.int32),
        "user": np.arange(n),
        "hist_offsets": np.concatenate([[0], np.cumsum([len(h) for h in hist])]),
        "hist_items": np.concatenate(hist),
    }


def rank_windows(params, model_cfg, ex, n_items: int, exclude: bool, chunk: int = 5, k: int = 4):
    """`evaluate.rank_examples` of ``window_examples`` with small batches and item chunks (so
    every chunking path runs), scores included."""
    from durgru_jax import evaluate
    from durgru_jax.config import EvalConfig, LossConfig, OptimConfig, RunConfig, TrainConfig

    rc = RunConfig(0, model_cfg, LossConfig(), OptimConfig(), TrainConfig(), EvalConfig())
    return evaluate.rank_examples(
        evaluate.model_scorer(params, rc),
        ex,
        n_items,
        kmax=k,
        batch_size=4,
        item_chunk=chunk,
        exclude_history=exclude,
        with_scores=True,
    )
