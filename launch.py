"""Entry point: ``python launch.py --config configs/default.py --workdir W``.

Overrides: ``--config.model.duration_mode=none``; config variants:
``--config configs/x.py:variant``. The logic lives in the package.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from durgru_jax import runner

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (resumes if it holds a run).")
_SWEEP = flags.DEFINE_bool(
    "sweep", False, "Run the sweep(add) declared in the config file, one sub-directory per run."
)
flags.mark_flags_as_required(["config", "workdir"])


class _DropLibraryChatter:
    """Keeps orbax's per-checkpoint INFO lines out of the progress log."""

    def filter(self, record):
        return record.levelno >= 30 or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_DropLibraryChatter())
    config = _CONFIG.value
    if config.get("task", "") == "baseline":
        from durgru_jax.baselines import run as baselines

        baselines.run(config, _WORKDIR.value)
    elif config.get("task", "") == "ctr":
        from durgru_jax import ctr

        ctr.run(config, _WORKDIR.value)
    elif _SWEEP.value:
        from durgru_jax import sweep

        path = config_flags.get_config_filename(flags.FLAGS["config"])
        sweep.run_sweep(config, path, _WORKDIR.value)
    elif config.get("bench", False):
        from durgru_jax import bench

        if "data_config" in config.bench:
            bench.run_data(config, _WORKDIR.value)
        else:
            bench.run(config, _WORKDIR.value)
    else:
        runner.run(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
