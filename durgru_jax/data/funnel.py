"""What preparation kept: events, sequences and items after each filter, and the check that
enough remains to train and evaluate.

`prepare` records a stage per filter it applies (`record`: rows read, k-core, sessions,
consecutive repeats) in ``Prepared.info["funnel"]``, beside the split's counts (``n_train``,
``n_valid``, ``n_test``). A run logs `summary` and calls `check_enough`, which fails with
`NotEnoughDataError` naming the thresholds (``data.min_train_events``,
``data.min_eval_examples``), the numbers and the filter that removed the most, so that a
small sample under a full dataset's filters stops instead of writing results that only look
like results.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from durgru_jax.config import ConfigError


class NotEnoughDataError(ConfigError):
    """Too little data remains after preparation to train or evaluate a model."""


def record(info: dict[str, Any], name: str, events: int, sequences: int, items: int) -> None:
    """Appends the stage ``name`` (what remains after that filter) to ``info["funnel"]``."""
    info.setdefault("funnel", []).append(
        {"filter": name, "events": int(events), "sequences": int(sequences), "items": int(items)}
    )


def _stage(s: Mapping[str, Any]) -> str:
    return (
        f"{s['filter']}: {s['events']:,} events, {s['sequences']:,} sequences, {s['items']:,} items"
    )


def summary(info: Mapping[str, Any], examples: Mapping[str, int] | None = None) -> str:
    """One line: each filter's events, sequences and items kept, then the split (training /
    validation / test events, training items) and, given, the evaluation ``examples`` per
    split (targets left after unknown items are dropped and sequences' first events)."""
    parts = [_stage(s) for s in info.get("funnel", ())]
    if "n_train" in info:
        parts.append(
            f"split ({info.get('split', '?')}): train {info['n_train']:,}, valid "
            f"{info['n_valid']:,}, test {info['n_test']:,} events, {info['n_items']:,} items"
        )
    if examples is not None:
        unknown = (info.get("unknown_valid_targets", 0), info.get("unknown_test_targets", 0))
        parts.append(
            f"evaluation examples: valid {examples['valid']:,}, test {examples['test']:,} "
            f"(targets unseen in training: valid {unknown[0]:,}, test {unknown[1]:,})"
        )
    return " -> ".join(parts)


def worst_filter(stages: Sequence[Mapping[str, Any]]) -> str:
    """The stage F of ``info["funnel"]`` that removed the largest share of the events before
    it, as ``"; the F filter removed N of M events (P%)"`` ("" if none removed any)."""
    worst = None
    for before, after in itertools.pairwise(stages):
        lost = before["events"] - after["events"]
        if lost > 0 and (worst is None or lost / before["events"] > worst[0]):
            worst = (lost / before["events"], after["filter"], lost, before["events"])
    if worst is None:
        return ""
    share, name, lost, total = worst
    return f"; the {name} filter removed {lost:,} of {total:,} events ({share:.0%})"


def check_enough(
    info: Mapping[str, Any],
    examples: Mapping[str, int],
    *,
    min_train_events: int,
    min_eval_examples: int,
) -> None:
    """Raises `NotEnoughDataError` when fewer than ``min_train_events`` training events or
    fewer than ``min_eval_examples`` validation or test examples remain; the message names
    each shortfall with its threshold, the filter that removed the most and every stage's
    counts (`summary`)."""
    short = []
    if info["n_train"] < min_train_events:
        short.append(
            f"{info['n_train']:,} training events (config.data.min_train_events="
            f"{min_train_events:,})"
        )
    for split in ("valid", "test"):
        if examples[split] < min_eval_examples:
            short.append(
                f"{examples[split]:,} {split} examples (config.data.min_eval_examples="
                f"{min_eval_examples:,})"
            )
    if not short:
        return
    raise NotEnoughDataError(
        "too little data remains to train and evaluate: "
        + "; ".join(short)
        + worst_filter(info.get("funnel", ()))
        + ". Kept: "
        + summary(info, examples)
        + ". Relax the filters (config.data.kcore_items, kcore_users, the split's days) or, "
        "for a small sample of a dataset, use its config's 'sample' variant "
        "(e.g. configs/diginetica.py:sample)."
    )
