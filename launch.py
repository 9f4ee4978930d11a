"""Entry point: ``python launch.py --config configs/default.py --workdir W``.

Overrides: ``--config.model.duration_mode=none``; config variants:
``--config configs/x.py:variant``. The flags go to `durgru_jax.runner.dispatch`, which
decides what to run.

An error the user can act on (a bad command line or config value, a data file missing or
malformed, a workdir in use, a disk full: `durgru_jax.errors.UserError`, or a missing input
file) is printed as one line, ``error: <message>``, with exit status 2; ``--verbose`` (or
``-v 1``) shows its traceback instead.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from durgru_jax import parallel, runner
from durgru_jax.errors import UserError, one_line

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumes if it holds a run).")
_SWEEP = flags.DEFINE_bool(
    "sweep", False, "Run the sweep(add) declared in the config file, one sub-directory per run."
)
_SWEEP_VECTORIZE = flags.DEFINE_bool(
    "sweep_vectorize", True, "--sweep: train runs differing only in seed / learning rate as one."
)
_SWEEP_MAX_VMAP = flags.DEFINE_integer("sweep_max_vmap", 8, "--sweep: most runs in one step.")
_REPORT = flags.DEFINE_string(
    "report", None, "Write DIR/report.md and figures from the sweep(s) in DIR; no training."
)
_REPORT_BASELINE = flags.DEFINE_string(
    "report_baseline", None, "--report: the reference group (default: the first declared)."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: jax.distributed.initialize() detecting the cluster."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", "", "Multi-host: host:port of process 0 (with the two below)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "Multi-host: this process, 0-based.")
_RECOMMEND = flags.DEFINE_bool(
    "recommend", False, "Write --out: top --k items per user of the finished run in --workdir."
)
_EXPORT = flags.DEFINE_bool(
    "export", False, "Write --out DIR: the run's scoring function (jax.export) and parameters."
)
_EXPLAIN = flags.DEFINE_bool(
    "explain", False, "Write --out DIR: the top --k of --users explained (durgru_jax/explain.py)."
)
_USERS = flags.DEFINE_string("users", None, "--explain: comma-separated user ids.")
_K = flags.DEFINE_integer("k", 10, "--recommend: items per user.")
_OUT = flags.DEFINE_string("out", None, "--recommend: .csv/.tsv/.parquet file; --export: DIR.")
_EVENTS = flags.DEFINE_string(
    "events", None, "--recommend: the users' events (default: the training users' histories)."
)
_EXCLUDE_SEEN = flags.DEFINE_bool("exclude_seen", True, "--recommend: never recommend seen items.")
_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "On an error, show its traceback, not just its one-line message."
)
flags.register_multi_flags_validator(
    ["config", "workdir", "report", "recommend", "export", "explain"],
    lambda f: (
        f["report"] is not None
        or (
            f["workdir"] is not None
            and (f["config"] is not None or f["recommend"] or f["export"] or f["explain"])
        )
    ),
    message="--config and --workdir are required (only --workdir with --recommend, --export or "
    "--explain; neither with --report DIR)",
)


class _DropLibraryChatter:
    """Keeps orbax's per-checkpoint INFO lines out of the progress log."""

    def filter(self, record):
        return record.levelno >= 30 or "/orbax/" not in record.pathname


def _fail(error: BaseException) -> None:
    """Prints ``error`` as one line and exits with status 2."""
    print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
    sys.exit(2)


def _verbose(argv=()) -> bool:
    if "--verbose" in argv:  # the flags may not be parsed yet
        return True
    return flags.FLAGS.is_parsed() and (_VERBOSE.value or flags.FLAGS.verbosity >= 1)


def _parse_flags(argv):
    """absl's flag parsing; a bad command line (a flag, a config key or value) is one line."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001 - whatever the parser raises is about argv
        if _verbose(argv):
            raise
        _fail(e)


def _config():
    """``--config``'s ConfigDict; a missing config file raises FileNotFoundError."""
    if flags.FLAGS["config"].value is None:
        return None
    path = config_flags.get_config_filename(flags.FLAGS["config"]).split(":")[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such config file", path)
    return _CONFIG.value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Before anything touches a device; each process then trains with train.data_parallel=0.
    parallel.initialize_distributed(
        _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value
    )
    logging.set_verbosity(max(logging.get_verbosity(), logging.INFO))
    logging.get_absl_handler().addFilter(_DropLibraryChatter())
    try:
        if _EXPLAIN.value:  # read-only use of a finished run: no lock
            from durgru_jax import explain_cli

            explain_cli.explain(_WORKDIR.value, _USERS.value, _K.value, _OUT.value)
            return
        if _RECOMMEND.value or _EXPORT.value:  # read-only uses of a finished run: no lock
            from durgru_jax import recommend_cli

            if _EXPORT.value:
                recommend_cli.export(_WORKDIR.value, _OUT.value)
            else:
                recommend_cli.recommend(
                    _WORKDIR.value, _OUT.value, _K.value, _EVENTS.value, _EXCLUDE_SEEN.value
                )
            return
        runner.dispatch(
            _config(),
            _WORKDIR.value,
            sweep_path=config_flags.get_config_filename(flags.FLAGS["config"])
            if _SWEEP.value
            else None,
            vectorize=_SWEEP_VECTORIZE.value,
            max_vmap=_SWEEP_MAX_VMAP.value,
            report=_REPORT.value,
            report_baseline=_REPORT_BASELINE.value,
        )
    except (UserError, FileNotFoundError) as e:
        if _verbose():
            raise
        _fail(e)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
