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
    """Names of every registered backend.

    A registered backend whose framework is not installed is listed too; ``get_backend``
    says what is missing.

    Returns
    -------
    list of str
        Sorted names of the ``spikebench.backends`` entry points (the built-ins included).

    Examples
    --------
    >>> from spikebench.backends import available_backends
    >>> {"custom", "snntorch", "spikingjelly"} <= set(available_backends())
    True
    """
    return sorted(plugin_entry_points(GROUP, _BUILTIN))


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``.

    Parameters
    ----------
    name : str
        A name of ``available_backends()``.

    Returns
    -------
    Backend
        A new instance of the registered class.

    Raises
    ------
    BackendError
        ``name`` is unknown (the message names the installed backends), or the backend's
        framework is not installed (the message names the missing package).

    Examples
    --------
    >>> from spikebench.backends import NetworkSpec, get_backend
    >>> backend = get_backend("custom")
    >>> net = backend.build(NetworkSpec(sizes=(4, 3, 2)), seed=0)
    >>> [tuple(w.shape) for w, _ in net.get_weights()]
    [(3, 4), (2, 3)]
    >>> get_backend("nosuch")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spikebench.errors.BackendError: ...nosuch...
    """
    return cast(Backend, load_plugin(GROUP, _BUILTIN, name, Backend, BackendError, "backend"))
