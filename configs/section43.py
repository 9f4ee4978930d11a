"""Paper 000, Section 4.3 (parameter selection): learning rate x iterations, and hidden size.

``python launch.py --config configs/section43.py:ml100k --sweep --workdir runs/s43/ml100k``
(``--config.data.path=PATH`` for the data file), then ``python launch.py --report runs/s43``
(every sweep under ``runs/s43``, one panel per dataset) or ``--report runs/s43/ml100k``.

Variants ``DATASET[,seeds=N]`` (default ``synthetic``, one seed):

* ``ml1m``: the paper's task, MovieLens-1M ratings, random 90/10 split (validation 9 % of the
  whole), rating head, selected on validation RMSE; RMSE/MAE plus the ranking metrics;
* ``ml100k``: the same on MovieLens-100K (minutes on a CPU);
* ``synthetic``: the embedded browsing data, ranking (validation NDCG@10);
* ``criteo`` / ``criteo_tiny``: the CTR task of ``configs/criteo.py`` (the full Kaggle file /
  the 1,999-row sample), logistic-regression baseline off; its RMSE is of click probabilities.

Every run stops after ``MAX_STEPS`` optimizer steps (the paper's "iterations"; it reports
convergence at 240), validating every ``EVAL_EVERY`` steps and at step 0 into
``metrics.jsonl`` (``train.eval_every_steps``), with no early stopping; the checkpoint for the
test metrics is selected every ``SELECT_EVERY_EPOCHS`` epochs and at the last step (CTR runs:
at every evaluation). The sweep: learning rate
in {1e-1, 1e-2, 1e-3, 1e-4} at hidden size ``HIDDEN0`` (Figures 4 and 5), then the other hidden
sizes at the dataset's default learning rate. The run at the defaults is declared first, so it is
the report's reference.
"""

from durgru_jax.base_config import get_base_config, load_config, parse_variant, positive_int

DATASETS = ("synthetic", "ml100k", "ml1m", "criteo", "criteo_tiny")
LEARNING_RATES = (1e-1, 1e-2, 1e-3, 1e-4)
HIDDEN_SIZES = (25, 50, 100, 200)
HIDDEN0 = 100  # hidden size of the learning-rate runs
MAX_STEPS = 240
EVAL_EVERY = 20
SELECT_EVERY_EPOCHS = 5  # model-selection evaluations (the curve has EVAL_EVERY already)
CHOICES = {"dataset": DATASETS}  # the argument after ":" (and seeds=N)
EXTRAS = {"seeds": positive_int}


def _criteo(variant: str):
    c = load_config(f"criteo.py:{variant}", beside=__file__)
    c.baseline.enabled = False  # the sweep is about the model; configs/criteo.py runs LR
    c.train.epochs = 1000  # max_steps ends every run
    c.train.patience = 1_000_000  # CTR evaluations count towards patience: never stop early
    c.eval.max_valid_rows = 100_000 if variant == "default" else 0
    return c


def get_config(arg: str = ""):
    dataset = parse_variant(arg, CHOICES, extras=EXTRAS, config="section43")["dataset"]
    if dataset.startswith("criteo"):
        c = _criteo("tiny" if dataset == "criteo_tiny" else "default")
    elif dataset == "synthetic":
        c = get_base_config()  # learning rate 1e-3
    else:  # the rating protocol of configs/ml1m.py / ml100k.py (learning rate 1e-2), the aGRU
        c = load_config(f"{dataset}.py:rating,paper", beside=__file__)
    if not dataset.startswith("criteo"):
        c.train.epochs = 1000  # max_steps ends every run
        c.train.patience = 1000  # no early stopping: every run reaches max_steps
        c.train.eval_every_epochs = SELECT_EVERY_EPOCHS
    c.model.hidden_dim = HIDDEN0
    c.train.max_steps = MAX_STEPS
    c.train.eval_every_steps = EVAL_EVERY
    return c


def sweep(add, arg: str = ""):
    v = parse_variant(arg, CHOICES, extras=EXTRAS, config="section43")
    lr0 = get_config(v["dataset"]).optim.learning_rate
    runs = [(lr0, HIDDEN0)] + [(lr, HIDDEN0) for lr in LEARNING_RATES if lr != lr0]
    runs += [(lr0, h) for h in HIDDEN_SIZES if h != HIDDEN0]
    for lr, hidden in runs:
        for seed in range(v.get("seeds", 1)):
            add(**{"optim.learning_rate": lr, "model.hidden_dim": hidden, "seed": seed})
