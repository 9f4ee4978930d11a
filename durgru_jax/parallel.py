"""Data parallelism with `jax.sharding`, item-table sharding, multi-host start-up, bf16.

One `jax.sharding.Mesh` of shape ``(data, model)`` (``train.data_parallel`` x
``train.model_parallel``). Each batch is split along its first axis over ``"data"``
(``P("data")``); parameters and optimiser state are replicated (``P()``), except that with
``model_parallel > 1`` the item tables (``item_emb``, the output ``w``/``b`` of eq. (12), the
rating head's ``b_item``, and their optimiser moments) are split along the item axis over
``"model"``. jit's partitioner inserts the collectives (the gradient all-reduce over
``"data"``, the logsumexp over item shards); the values computed are those of one device.

``model_parallel`` shards must split the ``n_items + 1`` table rows evenly, so the tables get
extra rows: zero embeddings and weights and an output bias of ``PAD_BIAS``, whose logits add
exactly 0 to every softmax (and get exactly zero gradients); evaluation strips them.

Multi-host: `initialize_distributed` before anything touches a device; every process builds
the same global batch (batches depend only on ``(seed, epoch)``) and feeds its own rows
(`BatchPlacer`); only the primary process writes files (`is_primary`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from durgru_jax.config import ConfigError

DATA, MODEL = "data", "model"
PAD_BIAS = -1e30  # output bias of padded item rows: exp(PAD_BIAS - logsumexp) == 0 in f32

# Trailing dict keys of an item table -> its item axis (the same paths in the optimiser state).
_ITEM_TABLES = {
    ("item_emb",): 0,
    ("out", "w"): 1,
    ("out", "b"): 0,
    ("rating", "b_item"): 0,
}
# Kept in float32 under compute_dtype=bfloat16: adding an f32 bias promotes the bf16 logits
# (and ratings) to f32, so the logsumexp and the losses are computed in f32.
_F32_PARAMS = (("out", "b"), ("rating", "b_item"), ("rating", "mu"))


def initialize_distributed(
    coordinator_address: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    auto: bool = False,
) -> bool:
    """Calls `jax.distributed.initialize` when asked to (explicit flags, or ``auto`` to let
    JAX detect the cluster: SLURM, Open MPI, Cloud TPU, ...); returns whether it did.

    Must run before any JAX computation (JAX refuses later).
    """
    explicit = bool(coordinator_address) or num_processes > 0 or process_id >= 0
    if not (explicit or auto):
        return False
    if explicit and not (coordinator_address and num_processes > 0 and process_id >= 0):
        raise ValueError(
            "multi-host needs all of --coordinator_address, --num_processes and --process_id "
            "(or --distributed alone, to let JAX detect the cluster)"
        )
    if explicit:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    else:
        jax.distributed.initialize()
    return True


def is_primary() -> bool:
    """True in a single-process run and in process 0 of a multi-host run (the file writer)."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (a decision such as a time budget, which each
    process's own clock could take at a different epoch); ``flag`` itself in one process."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def make_mesh(data_parallel: int, model_parallel: int) -> Mesh | None:
    """The ``(data, model)`` mesh, or None for the plain one-device path (``1 x 1``).

    ``data_parallel=0`` takes every device (global over all processes) not used by
    ``model_parallel``.
    """
    n_proc = jax.process_count()
    if data_parallel == 1 and model_parallel == 1:
        if n_proc > 1:
            raise ConfigError(
                f"a run over {n_proc} processes needs config.train.data_parallel=0 (all "
                "devices) or data_parallel x model_parallel = the global device count "
                f"({jax.device_count()})"
            )
        return None
    devices = jax.devices()
    n_dev = len(devices)
    d = data_parallel or n_dev // model_parallel
    where = (
        f"config.train.data_parallel={data_parallel} x config.train.model_parallel={model_parallel}"
    )
    if d < 1 or d * model_parallel > n_dev or (data_parallel == 0 and n_dev % model_parallel):
        raise ConfigError(f"{where} does not fit the {n_dev} devices")
    if n_proc > 1 and d * model_parallel != n_dev:
        raise ConfigError(f"{where}: a multi-host run must use all {n_dev} devices")
    grid = np.asarray(devices[: d * model_parallel]).reshape(d, model_parallel)
    return Mesh(grid, (DATA, MODEL), axis_types=(AxisType.Auto, AxisType.Auto))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def padded_rows(n_rows: int, mesh: Mesh | None) -> int:
    """Item-table rows (``n_items + 1``) rounded up to a multiple of the model shards."""
    return n_rows if mesh is None else round_up(n_rows, mesh.shape[MODEL])


def _names(path) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def _item_axis(path, leaf) -> int | None:
    names = _names(path)
    for suffix, axis in _ITEM_TABLES.items():
        if names[-len(suffix) :] == suffix and np.ndim(leaf) > axis:
            return axis
    return None


def _resize_items(params, n_rows: int, fill_bias: float):
    """Pads (with zeros, or ``fill_bias`` for the output bias) or cuts every item table to
    ``n_rows`` rows; other leaves are returned unchanged."""

    def one(path, x):
        axis = _item_axis(path, x)
        if axis is None or x.shape[axis] == n_rows:
            return x
        if x.shape[axis] > n_rows:
            return jax.lax.slice_in_dim(x, 0, n_rows, axis=axis)
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, n_rows - x.shape[axis])
        fill = fill_bias if _names(path)[-2:] == ("out", "b") else 0.0
        return jnp.pad(x, widths, constant_values=fill)

    return jax.tree_util.tree_map_with_path(one, params)


def pad_item_tables(params, n_rows: int):
    """Adds the padded rows (see the module docstring) to a parameter pytree."""
    return _resize_items(params, n_rows, PAD_BIAS)


def state_shardings(state, mesh: Mesh):
    """Per-leaf `NamedSharding` of a train state: item tables split over ``"model"`` when it
    has more than one shard (and divides them), everything else replicated."""
    m = mesh.shape[MODEL]

    def one(path, x):
        axis = _item_axis(path, x)
        if m == 1 or axis is None or x.shape[axis] % m:
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, P(*([None] * axis), MODEL))

    return jax.tree_util.tree_map_with_path(one, state)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def step_jit_shardings(mesh: Mesh, state_sharding) -> dict[str, Any]:
    """`jax.jit` keywords of a ``(state, batch) -> (state, metrics)`` step on ``mesh``."""
    batch = NamedSharding(mesh, P(DATA))
    return {
        "in_shardings": (state_sharding, batch),
        "out_shardings": (state_sharding, replicated(mesh)),
    }


def local_params(params, n_rows: int):
    """``params`` of a mesh as arrays of one local device, without the padded item rows (for
    evaluation, which runs on one device). Params already on one device are returned as they
    are (a mesh with item padding always spans several devices)."""
    leaves = jax.tree.leaves(params)
    if all(not isinstance(x, jax.Array) or len(x.sharding.device_set) == 1 for x in leaves):
        return params
    dev = jax.local_devices()[0]

    def gather(x):
        if not isinstance(x, jax.Array):
            return x
        if x.is_fully_replicated:
            x = x.addressable_data(0)
        elif not x.is_fully_addressable:  # item tables split over several processes
            x = np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_put(x, dev)

    return _resize_items(jax.tree.map(gather, params), n_rows, PAD_BIAS)


@dataclasses.dataclass
class BatchPlacer:
    """Turns a host (numpy) batch of the *global* size into arrays split over ``"data"``.

    Rows are padded with empty (all-masked) rows up to ``rows`` (a multiple of the data
    shards); every loss averages over valid steps only, so such rows change nothing but the
    shapes of the random draws. Each process passes only the rows its devices hold.
    """

    mesh: Mesh
    rows: int

    def __post_init__(self):
        self.sharding = NamedSharding(self.mesh, P(DATA))
        idx = self.sharding.addressable_devices_indices_map((self.rows,))
        spans = sorted(
            {(s[0].start or 0, self.rows if s[0].stop is None else s[0].stop) for s in idx.values()}
        )
        self.lo, self.hi = spans[0][0], spans[-1][1]
        held = sum(hi - lo for lo, hi in spans)
        if held != self.hi - self.lo:  # the mesh gave this process non-contiguous rows
            raise ValueError(f"rows of this process are not contiguous: {spans}")

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        out = {}
        for k, v in batch.items():
            v = np.asarray(v)
            if len(v) < self.rows:
                v = np.concatenate([v, np.zeros((self.rows - len(v),) + v.shape[1:], v.dtype)])
            out[k] = jax.make_array_from_process_local_data(
                self.sharding, v[self.lo : self.hi], v.shape
            )
        return out


# --------------------------------------------------------------------------------------
# Mixed precision
# --------------------------------------------------------------------------------------


def cast_for_compute(params, batch: Mapping[str, Any], dtype: str):
    """``(params, batch)`` for ``model.compute_dtype``: floating arrays cast to ``dtype``
    except the output-side biases (`_F32_PARAMS`) and the rating targets, so the cell and
    the big matmuls run in ``dtype`` while logits, logsumexp and losses stay f32. Applied
    inside the differentiated function, the cast gives f32 gradients of f32 master weights.
    """
    if dtype == "float32":
        return params, batch
    dt = jnp.dtype(dtype)

    def cast(x):
        return x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x

    def cast_param(path, x):
        names = _names(path)
        return x if any(names[-len(s) :] == s for s in _F32_PARAMS) else cast(x)

    params = jax.tree_util.tree_map_with_path(cast_param, params)
    batch = {k: v if k == "rating_target" else cast(v) for k, v in batch.items()}
    return params, batch
