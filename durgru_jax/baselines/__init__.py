"""Non-neural baselines, evaluated by exactly the evaluation code of the main model.

* ``pop``: most popular (training counts);
* ``itemcf`` (`itemcf`): item-based CF with paper 001's IUF similarity (its eq. 1), top-k
  neighbours per item (eq. 2) and its time window ``m`` (eq. 4) as an option;
* ``mf`` (`mf`): biased matrix factorisation for the rating task.

`run.run(config, workdir)` fits one of them on the training events and writes ``results.json``
(``launch.py`` calls it for configs with ``task = "baseline"``: ``configs/pop.py``,
``configs/itemcf.py``, ``configs/mf.py``). Config files use `use_dataset`, so this module
imports no baseline code.
"""

from __future__ import annotations

import os

import ml_collections

from durgru_jax.base_config import load_config


def use_dataset(c: ml_collections.ConfigDict, variant: str, configs_dir: str) -> None:
    """Copies the ``data`` and ``eval`` groups of a dataset config into ``c``, so a baseline is
    evaluated on exactly the split and protocol of the main model on that dataset.

    ``variant`` is ``"synthetic"`` (keep the base config's data) or ``"NAME[-VARIANT]"``:
    ``configs/NAME.py``'s ``get_config(VARIANT)``, e.g. ``"ml1m"``, ``"ml1m-rating"``,
    ``"ml100k-gru4rec"``, ``"taobao"``.
    """
    if variant == "synthetic":
        return
    name, _, sub = variant.partition("-")
    path = os.path.join(configs_dir, f"{name}.py")
    if not name or not os.path.exists(path):
        raise ValueError(
            f"unknown dataset variant {variant!r}: use 'synthetic' or NAME[-VARIANT] with "
            f"configs/NAME.py a dataset config (e.g. ml1m, ml1m-rating, ml100k, taobao)"
        )
    src = load_config(f"{path}:{sub}")
    c.data = ml_collections.ConfigDict(src.data.to_dict())
    c.eval = ml_collections.ConfigDict(src.eval.to_dict())
