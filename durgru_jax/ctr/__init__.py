"""Click-through-rate prediction on Criteo.

* `durgru_jax.ctr.criteo_format`: streaming reader of the Kaggle files (layout, blocks,
  vectorised parsing, bad rows);
* `durgru_jax.ctr.criteo`: cached preprocessing to 39 tokens per impression;
* `durgru_jax.ctr.model`: the GRU/aGRU cells of paper 000 reading an impression's fields as a
  sequence, and logistic regression on hashed features;
* `durgru_jax.ctr.train`: ``run(config, workdir)``, the task behind ``configs/criteo.py``;
* `durgru_jax.ctr.bench`: preprocessing speed and memory on a generated file of the real
  format; `durgru_jax.ctr.synthetic` writes such files.
"""

from __future__ import annotations


def run(config, workdir: str) -> dict:
    """Trains and tests a ``config.task == "ctr"`` config (`durgru_jax.ctr.train.run`); what
    `durgru_jax.runner.run` calls for that task, unless ``config.bench.enabled``."""
    from durgru_jax.ctr import train

    return train.run(config, workdir)
