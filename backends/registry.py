"""Finding backends: entry points of the ``spikebench.backends`` group, loaded lazily."""

from __future__ import annotations

from typing import cast

from spikebench.backends.base import Backend
from spikebench.errors import BackendError
from spikebench.plugins import load_plugin, plugin_entry_points

GROUP = "spikebench.backends"

# The built-ins register through pyproject.toml like any plugin; these are used only when the
# package metadata is missing (running from a source tree that was never installed).
_BUILTIN = {
    "custom": "spikebench.backends.custom_backend:CustomBackend",
    "snntorch": "spikebench.backends.snntorch_backend:SnnTorchBackend",
    "spikingjelly": "spikebench.backends.spikingjelly_backend:SpikingJellyBackend",
}


def available_backends() -> list[str]:
    """Names of every registered backend (installed or not: see :func:`get_backend`)."""
    return sorted(plugin_entry_points(GROUP, _BUILTIN))


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``.

    Raises :class:`BackendError` naming the installed backends if ``name`` is unknown, and the
    missing package if its framework is not installed.
    """
    return cast(Backend, load_plugin(GROUP, _BUILTIN, name, Backend, BackendError, "backend"))
