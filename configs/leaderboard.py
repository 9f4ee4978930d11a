"""The leaderboard: every method on every dataset sample, one protocol per dataset, one
evaluator, the same tuning budget for every neural method.

One dataset, all methods: ``python launch.py --config configs/leaderboard.py:ml100k --sweep
--workdir runs/leaderboard/ml100k``; every dataset as its own sweep below one folder, then
``python launch.py --report runs/leaderboard`` (the leaderboard table, `durgru_jax.leaderboard`).
The published leaderboard is these sweeps in ``docs/runs/leaderboard/DATASET``, whose records
are kept in git (``docs/runs/README.md``).
One run: ``--config configs/leaderboard.py:ml100k,rec`` (the method's grid centre, seed 0;
without a method, paper 000's aGRU: the config the sweep's method overrides apply to).

Arguments ``DATASET[,METHOD][,seeds=N][,methods=A+B+...]``. Datasets (`DATASETS`: the dataset's
own config and protocol, its model replaced by the method's; the shared samples by default,
``--config.data.path`` for the full file):

* ``synthetic``: the synthetic logs of ``configs/default.py``;
* ``ml100k``, ``ml1m``: MovieLens leave-one-out, rated movies excluded (``configs/ml1m.py``);
* ``ml1m-gru4rec``: GRU4Rec's protocol, all items ranked (``configs/ml1m.py:gru4rec``);
* ``yoochoose``: the prepared RecSys 2015 sample (``configs/yoochoose.py:prepared``);
* ``diginetica``, ``taobao``: their samples (``configs/diginetica.py:sample``,
  ``configs/taobao.py:sample``, leave-one-out);
* ``taobao-nextday``: paper 001's next-day top-N protocol (``configs/paper001.py``).

Methods (`METHODS`, as overrides of the dataset's paper-000 config): ``agru`` (paper 000's
aGRU), ``rec`` (the recommended model, the dataset config's default:
`base_config.RECOMMENDED_MODEL`, plus `RECOMMENDED_REPEATS` on the Taobao logs and
`RECOMMENDED_SEEN` on the MovieLens datasets), ``gru`` (a plain
GRU: no duration factor, no auxiliary loss), ``gru4rec_xe`` / ``gru4rec_bpr_max``
(``configs/gru4rec.py``, our training), ``sasrec`` (``configs/sasrec.py``), ``adpr``
(``configs/adpr.py``), and the baselines ``itemcf`` (ItemCF-IUF with paper 001's window of 10
events, its k chosen on validation), ``pop`` and, on data with ratings, ``mf`` (biased MF, its
epoch chosen on validation RMSE).

Budget (`LR_GRID`, `SEEDS`): every neural method runs the same grid, its learning rate times
1/3, 1 and 3 (the centre is its own config's rate), each for 3 seeds, each run trained until
validation stops improving (the dataset's ``train.patience``; at most the dataset's
``train.epochs``, or `EPOCHS`),
test metrics of its best validation checkpoint. The report picks each method's grid point on
the mean validation metric (``train.select_metric``) and tests its seeds against the best
other method's, paired by seed. The model's width, depth, dropout and loss are each method's
own configuration (not tuned here).
"""

from durgru_jax.base_config import (
    config_diff,
    load_config,
    parse_variant,
    positive_int,
    set_overrides,
    shared_sample,
)

# variant -> (the dataset's config with paper 000's model, the same with its default model (the
# recommended one: the `rec` method), its sample in the shared data folder or "" when the config
# already points at it / makes its data)
DATASETS = {
    "synthetic": ("default.py:paper", "default.py", ""),
    "ml100k": ("ml100k.py:paper", "ml100k.py", "movielens-100k/u.data"),
    "ml1m": ("ml1m.py:paper", "ml1m.py", "movielens-1m/ratings-users-1-2998.dat"),
    "ml1m-gru4rec": (
        "ml1m.py:gru4rec,paper",
        "ml1m.py:gru4rec",
        "movielens-1m/ratings-users-1-2998.dat",
    ),
    "yoochoose": (
        "yoochoose.py:prepared,paper",
        "yoochoose.py:prepared",
        "yoochoose-rsc15-100k-prepared/yoochoose-clicks-100k_train_full.txt",
    ),
    "diginetica": ("diginetica.py:sample,paper", "diginetica.py:sample", ""),
    "taobao": ("taobao.py:sample,paper", "taobao.py:sample", ""),
    "taobao-nextday": (
        "paper001.py:agru",
        "paper001.py",
        "taobao-userbehavior-subset/UserBehavior.csv",
    ),
}
WITH_RATINGS = ("ml100k", "ml1m", "ml1m-gru4rec")  # where biased MF is a method
# In the order the sweep runs them (and the report lists them): the deterministic baselines,
# one run each, then the neural methods, cheapest first, so an interrupted dataset has the most.
BASELINES = ("pop", "itemcf", "mf")
NEURAL = ("agru", "rec", "gru", "sasrec", "adpr", "gru4rec_xe", "gru4rec_bpr_max")
METHODS = (*BASELINES, *NEURAL)
LR_GRID = (1 / 3, 1.0, 3.0)  # times the method's learning rate
SEEDS = 3
# Epoch caps raised where the dataset config's own cap stops runs that still improve (paper
# 001's protocol: 10 epochs of 13 steps; the YOOCHOOSE sample: 20 epochs of 6 steps, where
# SASRec's validation recall@20 still rose 0.014 an epoch, as the ablations saw);
# elsewhere the dataset's own cap.
EPOCHS = {"taobao-nextday": 40, "yoochoose": 60}
# After ":", defaults first: the aGRU is the base that the sweep's method overrides apply to.
CHOICES = {"dataset": tuple(DATASETS), "method": ("agru", *(m for m in METHODS if m != "agru"))}

# A method's own config (on the synthetic data): its model, loss and optimiser settings are
# the method; data, protocol and training length stay the dataset's.
_METHOD_CONFIGS = {
    "gru4rec_xe": "gru4rec.py:synthetic,xe",
    "gru4rec_bpr_max": "gru4rec.py:synthetic,bpr_max",
    "sasrec": "sasrec.py:default",
    "adpr": "adpr.py:default",
}
_METHOD_GROUPS = ("model.", "loss.", "optim.")


def _methods(text: str) -> tuple[str, ...]:
    names = tuple(text.split("+"))
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        raise ValueError(f"not a method: {', '.join(unknown)} (one of {' | '.join(METHODS)})")
    return names


EXTRAS = {"seeds": positive_int, "methods": _methods}  # the sweep's extras (get_config ignores)


def base(dataset: str):
    """``dataset``'s config with paper 000's aGRU, its sample, and the baselines' settings."""
    spec, _, sample = DATASETS[dataset]
    c = load_config(spec, beside=__file__)
    if sample:
        c.data.path = shared_sample(sample)
    c.compare = ()
    c.train.epochs = EPOCHS.get(dataset, c.train.epochs)
    c.method = "agru"  # the leaderboard's name of the method (the report groups by it)
    c.task = ""  # "" = a trained model; "baseline" = config.baseline
    if "baseline" not in c:  # paper001 declares its own ItemCF (eq. 4's window, k grid)
        c.baseline = load_config("itemcf.py", beside=__file__).baseline
        c.baseline.itemcf.select_metric = c.train.select_metric
        # paper 001's eq. 4 window of m = 10 events, as its Table 1 and the MovieLens tables
        # (ML-100K NDCG@10 0.104 with it, 0.062 without)
        c.baseline.itemcf.time_window_m = 10
    c.baseline.mf = load_config("mf.py", beside=__file__).baseline.mf
    return c


def method_overrides(dataset: str, method: str) -> dict:
    """The overrides that turn `base` (``dataset``'s aGRU config) into ``method``'s, its name
    (``method``) among them."""
    return {"method": method, **_model_overrides(dataset, method)}


def _model_overrides(dataset: str, method: str) -> dict:
    if method in BASELINES:
        if method == "mf" and dataset not in WITH_RATINGS:
            raise ValueError(f"leaderboard: mf needs ratings; {dataset} has none")
        return {"task": "baseline", "baseline.name": method}
    if method == "agru":
        return {}
    if method == "gru":
        return {"model.cell": "gru", "model.duration_mode": "none", "loss.aux_weight": 0.0}
    if method == "rec":  # the dataset config's default model, as a user gets it
        paper, default, _ = DATASETS[dataset]
        return _model_diff(default, paper)
    return _model_diff(_METHOD_CONFIGS[method], "default.py:paper")


def _model_diff(spec: str, paper_spec: str) -> dict:
    """The model, loss and optimiser settings of ``spec``'s config that differ from
    ``paper_spec``'s."""
    diff = config_diff(load_config(spec, beside=__file__), load_config(paper_spec, beside=__file__))
    return {k: v for k, v in diff.items() if k.startswith(_METHOD_GROUPS)}


def methods_of(dataset: str) -> tuple[str, ...]:
    return tuple(m for m in METHODS if m != "mf" or dataset in WITH_RATINGS)


def get_config(arg: str = ""):
    v = parse_variant(arg, CHOICES, extras=EXTRAS, config="leaderboard")
    return set_overrides(base(v["dataset"]), method_overrides(v["dataset"], v["method"]))


def sweep(add, arg: str = ""):
    """Every method of one dataset (``methods=`` a subset): the grid x seeds of each neural
    method, one run of each baseline. Runs differing in seed and learning rate only train as
    one vectorised group."""
    v = parse_variant(arg, {"dataset": tuple(DATASETS)}, extras=EXTRAS, config="leaderboard")
    dataset = v["dataset"]
    for method in v.get("methods", methods_of(dataset)):
        overrides = method_overrides(dataset, method)
        if method in BASELINES:
            add(**overrides, seed=0)
            continue
        lr = float(get_config(f"{dataset},{method}").optim.learning_rate)
        for scale in LR_GRID:
            for seed in range(v.get("seeds", SEEDS)):
                add(**{**overrides, "optim.learning_rate": float(f"{lr * scale:.3g}")}, seed=seed)
