"""Recommending with a finished run.

```python
from durgru_jax.recommend import Recommender

rec = Recommender.load("runs/default")  # ckpt/best and artifacts/ of a finished run
r = rec.recommend([{"item": 12, "timestamp": 1.7e9, "duration": 30.0}, ...], k=10)
r.items, r.scores, r.fallback, r.n_unknown_dropped, r.resorted
```

Events become model inputs by the code path of the evaluation examples
(`durgru_jax.recommend_inputs`), and are scored by the evaluator's batching
(`dataset.iterate_eval_batches_by_length`), model (`evaluate.model_scorer`) and ranker
(`evaluate.topk`, `metrics.rank_and_topk`: chunked over items, so memory stays bounded by
``batch_size x eval.item_chunk`` scores whatever the catalogue). A user's recommendations
therefore equal the evaluator's top-K for the same visible history.

Scores are the logits of eq. (12) (the sigmoid is monotone and left out, as in evaluation);
with the repeat-aware output (``model.repeat_head``) the mixture's ``log p(i)``.
A user with no event of a known item gets the most-popular ranking (``fallback="popularity"``,
scores the log training popularity). Seen items (known items among the events given) are
excluded unless ``exclude_seen=False``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd

from durgru_jax import artifacts as artifacts_lib
from durgru_jax import evaluate, parallel, shared_data
from durgru_jax import model as model_lib
from durgru_jax import recommend_inputs as inputs
from durgru_jax.checkpoints import CheckpointMismatchError
from durgru_jax.config import RunConfig
from durgru_jax.data import dataset as ds
from durgru_jax.errors import UserError
from durgru_jax.metrics import rank_and_topk

POPULARITY = "popularity"
# Users per encoder/ranker batch: on the 2-core CPU of docs/recommend.md, 128 rows run the
# ML-1M-shaped aGRU ~1.5x faster than 512 (the per-step state fits the caches); outputs do not
# depend on it (each row is computed alone: bitwise the same for any batch size).
BATCH_SIZE = 128
_USER_CHUNK = 65536  # users featurised at once by recommend_many (bounds host memory)


class RunNotReadyError(FileNotFoundError, UserError):
    """The directory holds no finished run (no results, artifacts or checkpoint)."""


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One user's top-K: original item ids, best first, with their scores."""

    items: tuple
    scores: tuple[float, ...]
    user: Any = None
    n_events: int = 0  # events given
    n_unknown_dropped: int = 0  # ... whose item the run never saw in training (not inputs)
    resorted: bool = False  # the events were out of time order and were sorted
    fallback: str | None = None  # "popularity": no event of a known item


@dataclasses.dataclass(frozen=True, eq=False)
class RecommendationTable:
    """Many users' top-K: ``table`` has one row per recommendation (``user, rank, item,
    score``; ranks 1..k, fewer when fewer items are left to recommend), ``users`` one row per
    user (``user, n_events, n_unknown_dropped, resorted, fallback``)."""

    table: pd.DataFrame
    users: pd.DataFrame

    def get(self, user) -> Recommendation:
        """The `Recommendation` of one user of the table."""
        row = self.users[self.users["user"] == user]
        if len(row) != 1:
            raise KeyError(f"user {user!r} is not in this table")
        recs = self.table[self.table["user"] == user]
        r = row.iloc[0]
        return Recommendation(
            items=tuple(recs["item"].tolist()),
            scores=tuple(float(s) for s in recs["score"]),
            user=user,
            n_events=int(r["n_events"]),
            n_unknown_dropped=int(r["n_unknown_dropped"]),
            resorted=bool(r["resorted"]),
            fallback=r["fallback"] or None,
        )


def restore_params(workdir: str, checkpoint: str, rc: RunConfig):
    """Parameters of ``ckpt/<checkpoint>`` ("best" or "latest"), checked against the shapes that
    ``rc`` implies; item tables padded for a device mesh are cut back to the catalogue."""
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint={checkpoint!r}: use 'best' or 'latest'")
    path = os.path.abspath(os.path.join(workdir, "ckpt", checkpoint))
    step = None
    if os.path.isdir(path):
        mgr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))
        step = mgr.latest_step()
    if step is None:
        raise RunNotReadyError(f"{workdir}: no checkpoint in ckpt/{checkpoint}")
    args = ocp.args.Composite(state=ocp.args.StandardRestore())
    params = mgr.restore(step, args=args).state["params"]
    mgr.close()
    expected = jax.eval_shape(lambda: model_lib.init_params(rc.model, 0))
    if rc.train.data_parallel != 1 or rc.train.model_parallel != 1:  # a mesh pads item tables
        params = parallel.pad_item_tables(params, rc.model.n_items + 1)  # (cuts them back)
    _check_shapes(params, expected, f"{workdir}/ckpt/{checkpoint} (step {step})")
    return jax.tree.map(jnp.asarray, params)


def _check_shapes(params, expected, where: str) -> None:
    got = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)}
    want = {
        jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    problems = [f"{k} missing" for k in sorted(set(want) - set(got))]
    problems += [f"{k} not in the config's model" for k in sorted(set(got) - set(want))]
    problems += [
        f"{k} has shape {got[k]}, the config implies {want[k]}"
        for k in sorted(set(got) & set(want))
        if tuple(got[k]) != tuple(want[k])
    ]
    if problems:
        raise CheckpointMismatchError(
            f"{where} does not match the saved config (artifacts/manifest.json): "
            + "; ".join(problems[:5])
        )


class Recommender:
    """A trained model with its fitted preprocessing (`artifacts.Artifacts`)."""

    def __init__(
        self,
        params,
        art: artifacts_lib.Artifacts,
        workdir: str | None = None,
        batch_size: int = BATCH_SIZE,
    ):
        self.params = params
        self.batch_size = batch_size
        self.artifacts = art
        self.workdir = workdir
        self.rc = art.run_config
        self.v, self.c = model_lib.score_factors(params, self.rc.model)
        self._scorer = evaluate.model_scorer(params, self.rc)  # the evaluator's model
        self._popular: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def load(
        cls, workdir: str, checkpoint: str = "best", batch_size: int = BATCH_SIZE
    ) -> Recommender:
        """The run in ``workdir``: ``results.json`` (a finished run), ``artifacts/`` and the
        parameters of ``ckpt/<checkpoint>`` ("best": selected on validation, or "latest")."""
        if not os.path.exists(os.path.join(workdir, "results.json")):
            raise RunNotReadyError(f"{workdir}: no finished run here (no results.json)")
        art = artifacts_lib.load_artifacts(workdir)
        params = restore_params(workdir, checkpoint, art.run_config)
        return cls(params, art, workdir, batch_size)

    @property
    def n_items(self) -> int:
        return self.artifacts.n_items

    @property
    def item_ids(self) -> np.ndarray:
        """Original id of internal item ``i + 1`` at index ``i``."""
        return self.artifacts.item_ids

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns every event needs (``item``, ``timestamp``; ``duration`` / ``behavior``
        when the model reads them); ``recommend_many`` also needs ``user``."""
        return inputs.required_columns(self.artifacts)

    # ------------------------------------------------------------------ one user

    def recommend(
        self, events, k: int = 10, exclude_seen: bool = True, candidates=None, user=None
    ) -> Recommendation:
        """Top-``k`` for ONE user's events (a DataFrame or a list of dicts with the columns of
        the training file). ``user``: the original user id (or a ``user`` column): a user of
        the training data keeps their training duration statistics, any other user gets
        statistics fitted on these events. ``candidates``: rank only these original item ids
        (unknown ones are left out)."""
        frame, who = self._one_user(events, user)
        ui = self._user_inputs(frame, who)
        if candidates is not None:
            ids = self._internal(candidates)
            if exclude_seen and ui is not None:  # what the ranker would exclude
                ids = ids[~np.isin(ids, ui.examples["hist_items"])]
            ids = ids[ids > 0]
            ids = ids[np.sort(np.unique(ids, return_index=True)[1])]  # listed twice: once
            scores = self._score_inputs(ui, ids)
            best = np.argsort(-scores, kind="stable")[:k]
            rec = Recommendation(self._ids(ids[best]), tuple(scores[best].tolist()))
        elif ui is None:
            items, scores = self._popularity(k)
            rec = Recommendation(self._ids(items), tuple(scores.tolist()))
        else:
            table = self._rank_inputs(ui, k, exclude_seen)
            rec = table.get(table.users["user"].iloc[0])
        flags = {"fallback": POPULARITY}
        if ui is not None:
            flags = {
                "n_events": int(ui.n_events[0]),
                "n_unknown_dropped": int(ui.n_unknown[0]),
                "resorted": bool(ui.resorted[0]),
                "fallback": None if ui.has_input[0] else POPULARITY,
            }
        return dataclasses.replace(rec, user=who, **flags)

    def score(self, events, items, user=None) -> np.ndarray:
        """Scores of the original item ids ``items`` for ONE user's events (NaN for an item
        unknown to the run; the log popularity when no event has a known item)."""
        ids = self._internal(items)
        scores = self._score_inputs(self._user_inputs(*self._one_user(events, user)), ids)
        return np.where(ids > 0, scores, np.nan).astype(np.float32)

    def _score_inputs(self, ui: inputs.UserInputs | None, ids: np.ndarray) -> np.ndarray:
        if ui is None or not ui.has_input[0]:
            return self.artifacts.log_popularity[ids].astype(np.float32)
        ((batch, _, _),) = self._batches(ui.examples)
        f = evaluate.Factors(*self._scorer.factors(np.arange(1), batch))
        ids_BxK = jnp.broadcast_to(jnp.asarray(ids, jnp.int32), (len(batch["target"]), len(ids)))
        return np.asarray(evaluate.scores_at(f, ids_BxK))[0].astype(np.float32)

    def _user_inputs(self, frame: pd.DataFrame, who) -> inputs.UserInputs | None:
        """The one user's example (``None`` without events); a user unseen in training, or no
        ``user`` at all, gets duration statistics fitted on the events."""
        if len(frame) == 0:
            return None
        frame = frame.assign(user=0 if who is None else who)
        return inputs.from_events(self.artifacts, frame, known_users=who is not None)

    def _one_user(self, events, user) -> tuple[pd.DataFrame, object]:
        """The events as a frame, and the user's id (``user``, else the ``user`` column's)."""
        frame = inputs.events_frame(events)
        if "user" not in frame.columns or len(frame) == 0:
            return frame, user
        users = pd.unique(frame["user"])
        if len(users) > 1:
            raise ValueError(
                f"recommend() takes one user's events, got {len(users)} users: use recommend_many()"
            )
        if user is not None and users[0] != user:
            raise ValueError(f"user={user!r} but the events' user column says {users[0]!r}")
        who = users[0]
        return frame, who.item() if isinstance(who, np.generic) else who

    # ------------------------------------------------------------------ many users

    def recommend_many(self, frame, k: int = 10, exclude_seen: bool = True) -> RecommendationTable:
        """Top-``k`` of every user of ``frame`` (a ``user`` column), in the order of their first
        row; users are featurised in chunks and ranked in the evaluator's batches."""
        frame = inputs.events_frame(frame)
        inputs.check_columns(frame, self.artifacts, need_user=True)
        if len(frame) == 0:
            return _concat([])
        codes, _ = pd.factorize(frame["user"], sort=False, use_na_sentinel=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(0, codes.max(initial=-1) + 1, _USER_CHUNK))
        parts = []
        for lo, hi in zip(bounds, np.append(bounds[1:], len(order)), strict=True):
            rows = np.sort(order[lo:hi])  # each user's rows keep their given order
            parts.append(
                self._rank_inputs(
                    inputs.from_events(self.artifacts, frame.iloc[rows]), k, exclude_seen
                )
            )
        return _concat(parts)

    def recommend_training_users(
        self, k: int = 10, exclude_seen: bool = True, prepared: ds.Prepared | None = None
    ) -> RecommendationTable:
        """Top-``k`` of every person of the training data from their full history (all their
        events, training and held-out), from the run's prepared data (the data cache; the data
        file must still be there, or a synthetic source)."""
        art = self.artifacts
        p = prepared if prepared is not None else _load_training_data(art)
        if p.n_users != len(art.seq_owner) or p.n_items != art.n_items:
            raise ValueError(
                f"the prepared data ({p.n_users} sequences, {p.n_items} items) are not the "
                f"run's ({len(art.seq_owner)} sequences, {art.n_items} items): did the data "
                "file change since training?"
            )
        parts = [
            self._rank_inputs(inputs.from_prepared(art, p, lo, hi), k, exclude_seen)
            for lo, hi in inputs.person_chunks(art.seq_owner, _USER_CHUNK)
        ]
        return _concat(parts)

    def model_inputs(self, frame) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``(inputs, users)``: the encoder's ``[users, max_len]`` input arrays
        (`recommend_inputs.MODEL_INPUTS`, the exported function's ``inputs``) for the users of
        ``frame`` (a ``user`` column), and those users' original ids."""
        ui = inputs.from_events(self.artifacts, inputs.events_frame(frame))
        return {k: ui.examples[k] for k in inputs.MODEL_INPUTS}, ui.users

    def explain(self, events, items, user=None):
        """Per-event diagnostics and occlusion attributions of ``items`` for ONE user's
        ``events`` (`durgru_jax.explain.explain`)."""
        from durgru_jax import explain as explain_lib

        return explain_lib.explain(self, events, items, user)

    # ------------------------------------------------------------------ machinery

    def _batches(self, ex):
        """The evaluator's batching: users by input length, each batch cut after its longest
        input for the recurrent cells (`evaluate.evaluate`); a few users get a small batch."""
        n = len(ex["target"])
        size = min(self.batch_size, max(8, 1 << max(n - 1, 0).bit_length()))
        trim = self.rc.model.cell in ("gru", "agru")
        return ds.iterate_eval_batches_by_length(ex, size, trim_time=trim)

    def _rank(self, ex, k: int, exclude_seen: bool):
        """``(top_ExK internal ids, scores, ok)`` by the evaluator's encoder and ranker
        (`evaluate.topk`); ``ok``: a real recommendation (a user with fewer than K items
        left to rank gets fewer)."""
        n = len(ex["target"])
        top, scores = evaluate.topk(
            self._scorer,
            ex,
            self.n_items,
            min(k, self.n_items),
            batch_size=min(self.batch_size, max(8, 1 << max(n - 1, 0).bit_length())),
            item_chunk=min(self.rc.eval.item_chunk, self.n_items + 1),
            exclude_history=exclude_seen,
        )
        ok = np.isfinite(scores) & (top > 0) & (top <= self.n_items)
        return top.astype(np.int64), scores.astype(np.float32), ok

    def _popularity(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The most-popular top-``k`` (internal ids, log popularity), by the ranker that
        `evaluate.evaluate_popularity` uses."""
        k = min(k, self.n_items)
        if k not in self._popular:
            lp = jnp.asarray(self.artifacts.log_popularity)
            v = jnp.where(jnp.isfinite(lp), lp, -1e30)[None, :]
            _, top = rank_and_topk(
                jnp.ones((1, 1)),
                v,
                jnp.zeros(v.shape[1]),
                jnp.zeros(1, jnp.int32),
                jnp.zeros((1, 16), jnp.int32),
                n_items=self.n_items,
                kmax=k,
                item_chunk=min(self.rc.eval.item_chunk, self.n_items + 1),
                exclude_history=False,
            )
            top = np.asarray(top)[0].astype(np.int64)
            self._popular[k] = (top, self.artifacts.log_popularity[top].astype(np.float32))
        return self._popular[k]

    def _rank_inputs(self, ui: inputs.UserInputs, k: int, exclude_seen: bool):
        top, scores, ok = self._rank(ui.examples, k, exclude_seen)
        fallback = ~ui.has_input
        if fallback.any():
            pop, pop_s = self._popularity(k)
            top[fallback], scores[fallback], ok[fallback] = pop, pop_s, True
        e, r = np.nonzero(ok)  # invalid entries (nothing left to rank) are at each row's end
        table = pd.DataFrame(
            {
                "user": ui.users[e],
                "rank": (r + 1).astype(np.int64),
                "item": self.item_ids[top[e, r] - 1],
                "score": scores[e, r],
            }
        )
        users = pd.DataFrame(
            {
                "user": ui.users,
                "n_events": ui.n_events.astype(np.int64),
                "n_unknown_dropped": ui.n_unknown.astype(np.int64),
                "resorted": ui.resorted.astype(bool),
                "fallback": np.where(fallback, POPULARITY, ""),
            }
        )
        return RecommendationTable(table, users)

    def _internal(self, items) -> np.ndarray:
        """Internal ids (0: unknown) of original item ids."""
        values = inputs.coerce_ids(np.asarray(items, dtype=object), self.item_ids)
        return (self.artifacts.item_index.get_indexer(values) + 1).astype(np.int64)

    def _ids(self, internal: np.ndarray) -> tuple:
        return tuple(self.item_ids[np.asarray(internal, np.int64) - 1].tolist())


def _concat(parts: list[RecommendationTable]) -> RecommendationTable:
    if not parts:
        users = ("user", "n_events", "n_unknown_dropped", "resorted", "fallback")
        return RecommendationTable(
            pd.DataFrame(columns=["user", "rank", "item", "score"]), pd.DataFrame(columns=users)
        )
    if len(parts) == 1:
        return parts[0]
    return RecommendationTable(
        pd.concat([p.table for p in parts], ignore_index=True),
        pd.concat([p.users for p in parts], ignore_index=True),
    )


def _load_training_data(art: artifacts_lib.Artifacts) -> ds.Prepared:
    from durgru_jax.data import sources

    data_cfg = dict(art.data_config)
    path = shared_data.expand(data_cfg.get("path"))
    if data_cfg["source"] != "synthetic" and path and not os.path.exists(path):
        raise FileNotFoundError(
            f"the run's data file {path!r} is gone: recommendations from the training users' "
            "histories need it (or give the users' events with --events FILE)"
        )
    return sources.load_prepared(data_cfg, seed=art.seed)
