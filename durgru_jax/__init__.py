"""durgru-jax: duration-aware attentional GRU (aGRU) sequential recommendation in JAX/Flax."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("durgru-jax")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
