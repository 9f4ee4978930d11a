"""``python launch.py --export --workdir W --out DIR``: the run's scoring function, serialized
with `jax.export`, for programs that have jax and numpy but not this package.

``DIR`` receives:

* ``score.jax``: ``score(params, inputs) -> scores [B, n_items + 1]``, the logits of eq. (12)
  (with ``model.repeat_head``, the repeat-aware mixture's ``log p``; with ``model.seen_bias``,
  the window's items offset) for every catalogue
  item (column 0, padding, is ``-inf``), exported with a symbolic batch size ``B``
  (`jax.export.symbolic_shape`, within `batch_bounds`) and the run's ``max_len`` time steps;
* ``params.npz``: the parameters of ``ckpt/best``, one array per ``"group/name"`` key (the
  ``params`` argument is that flat dict);
* ``items.npz``: ``item_ids``, the original id of score column ``i + 1`` at index ``i``;
* ``export.json``: the inputs (name, dtype, shape), the platforms, the run's model config.

``inputs`` is a dict of ``[B, max_len]`` arrays, the features `dataset.eval_examples` builds
(`Recommender.model_inputs` gives them for raw events): ``items`` (internal ids, 0 =
padding), ``mask``, ``reset``, ``in_ctx``, ``tr_ctx``, ``dur``, ``dur_ok``, ``rating_in``,
``rating_in_ok`` (the event's rating, read by ``model.rating_input``; zeros and false where the
events carry none), ``dur_mean``, ``dur_std``, ``dur_user_ok``. ``docs/export_loader.py``
loads and calls it.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from durgru_jax import repeat, seen
from durgru_jax.config import ModelConfig
from durgru_jax.evaluate import Factors, _user_side, dense_scores
from durgru_jax.model import score_factors
from durgru_jax.recommend_inputs import MODEL_INPUTS as INPUTS

PLATFORMS = ("cpu", "cuda")  # the exported code runs on either
_DTYPES = {
    "items": np.int32,
    "mask": np.bool_,
    "reset": np.bool_,
    "in_ctx": np.int32,
    "tr_ctx": np.int32,
    "dur": np.float32,
    "dur_ok": np.bool_,
    "rating_in": np.float32,
    "rating_in_ok": np.bool_,
    "dur_mean": np.float32,
    "dur_std": np.float32,
    "dur_user_ok": np.bool_,
}


def flat_params(params) -> dict[str, np.ndarray]:
    """``{"group/name": array}`` of a nested parameter dict."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        out["/".join(str(k.key) for k in path)] = np.asarray(leaf)
    return out


def nested_params(flat: dict) -> dict:
    """The nested dict of `flat_params`' output."""
    out: dict = {}
    for key, leaf in flat.items():
        *groups, name = key.split("/")
        node = out
        for g in groups:
            node = node.setdefault(g, {})
        node[name] = leaf
    return out


def scoring_function(cfg: ModelConfig):
    """``score(flat_params, inputs) -> [B, N]`` scores of every catalogue item: the
    evaluator's model (`evaluate.model_scorer`: eq. (12)'s logits, with ``repeat_head`` the
    mixture's ``log p``, with ``seen_bias`` the window's items offset) over the whole
    catalogue."""

    def score(flat, inputs):
        params = nested_params(flat)
        batch = dict(inputs) | {"target": jnp.zeros(inputs["items"].shape[:1], jnp.int32)}
        u, _, h_last = _user_side(params, cfg, batch)
        v, c = score_factors(params, cfg)
        logits = u @ v + c
        if cfg.repeat_head or cfg.seen_bias:  # `evaluate._sparse_forward`
            l_window = jnp.take_along_axis(logits, batch["items"], axis=1)
            if cfg.seen_bias:
                sparse = seen.eval_scores(params, batch, l_window)
            else:  # normalised over the whole row
                log_z = jax.nn.logsumexp(logits[:, 1:], axis=1)
                sparse = repeat.eval_scores(params, batch, h_last, l_window, log_z)
            logits = dense_scores(Factors(u, v, c, None, *sparse))
        return logits.at[:, 0].set(-jnp.inf)

    return score


def batch_bounds(n_items: int, max_len: int) -> tuple[int, int | None]:
    """``(min, max)`` batch sizes the exported function accepts.

    `model.encode` picks, from ``N <= B * T`` (``N`` catalogue rows), between looking the input
    projections up in the catalogue's and computing them per event: the same numbers either
    way, but a symbolic ``B`` must settle the comparison. A large catalogue takes
    ``B <= (N - 1) // T`` (per event; the bound is large then), a small one
    ``B >= ceil(N / T)`` (the loader pads a smaller batch with empty rows).
    """
    n = n_items + 1
    upper = (n - 1) // max_len
    return (1, upper) if upper >= 1024 else (max(1, -(-n // max_len)), None)


def export_scoring(params, cfg: ModelConfig, max_len: int, platforms=None):
    """`jax.export.Exported` of `scoring_function` for a symbolic batch size ``b`` within
    `batch_bounds`."""
    flat = flat_params(params)
    p_specs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in flat.items()}
    lo, hi = batch_bounds(cfg.n_items, max_len)
    bounds = (f"b >= {lo}",) + ((f"b <= {hi}",) if hi else ())
    (b,) = jax.export.symbolic_shape("b", constraints=bounds)
    specs = {k: jax.ShapeDtypeStruct((b, max_len), _DTYPES[k]) for k in INPUTS}
    fn = jax.jit(scoring_function(cfg))
    return jax.export.export(fn, platforms=platforms)(p_specs, specs)


def export_run(workdir: str, out: str, checkpoint: str = "best", platforms=PLATFORMS) -> dict:
    """Writes ``out/`` (see the module docstring) for the finished run in ``workdir``."""
    from durgru_jax.recommend import Recommender

    rec = Recommender.load(workdir, checkpoint)
    cfg, t = rec.rc.model, rec.artifacts.max_len
    exported = export_scoring(rec.params, cfg, t, platforms)
    lo, hi = batch_bounds(cfg.n_items, t)
    tmp = f"{os.path.abspath(out)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "score.jax"), "wb") as f:
        f.write(exported.serialize())
    np.savez(os.path.join(tmp, "params.npz"), **flat_params(rec.params))
    np.savez(os.path.join(tmp, "items.npz"), item_ids=rec.item_ids)
    meta = {
        "inputs": {k: {"dtype": np.dtype(_DTYPES[k]).name, "shape": ["B", t]} for k in INPUTS},
        "batch": {"symbolic": True, "min": lo, "max": hi},
        "output": f"float32 [B, {rec.n_items + 1}]: logits of eq. (12), column i = item i",
        "platforms": list(exported.platforms),
        "n_items": rec.n_items,
        "max_len": t,
        "model": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "from": os.path.abspath(workdir),
        "checkpoint": checkpoint,
    }
    with open(os.path.join(tmp, "export.json"), "w") as f:
        json.dump(meta, f, indent=2)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta
