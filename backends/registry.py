"""Finding backends: entry points of the ``spikebench.backends`` group, loaded lazily."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from spikebench.backends.base import Backend, BackendError

GROUP = "spikebench.backends"

# The built-ins register through pyproject.toml like any plugin; these are used only when the
# package metadata is missing (running from a source tree that was never installed).
_BUILTIN = {
    "custom": "spikebench.backends.custom:CustomBackend",
    "snntorch": "spikebench.backends.snntorch_backend:SnnTorchBackend",
    "spikingjelly": "spikebench.backends.spikingjelly_backend:SpikingJellyBackend",
}


def _entry_points() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    for name, target in _BUILTIN.items():
        found.setdefault(name, EntryPoint(name=name, value=target, group=GROUP))
    return found


def available_backends() -> list[str]:
    """Names of every registered backend (installed or not: see :func:`get_backend`)."""
    return sorted(_entry_points())


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``.

    Raises :class:`BackendError` naming the installed backends if ``name`` is unknown, and the
    missing package if its framework is not installed.
    """
    eps = _entry_points()
    if name not in eps:
        raise BackendError(
            f"unknown backend {name!r}; installed backends: {', '.join(sorted(eps))}"
        )
    try:
        cls = eps[name].load()
    except ImportError as exc:
        raise BackendError(
            f"backend {name!r} is registered but cannot be imported ({exc}); "
            f"install its framework, e.g. `pip install spikebench[{name}]`"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"entry point {name!r} -> {eps[name].value} is not a Backend subclass")
    return cls()
