"""Entry-point plug-in discovery shared by backends (``spikebench.backends``), rules
(``spikebench.rules``) and data sources (``spikebench.datasets``): built-ins register the same
way a third-party package does, and a broken plug-in is reported by name, never a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points


def plugin_entry_points(group: str, builtin: Mapping[str, str]) -> dict[str, EntryPoint]:
    """Installed entry points of ``group``; ``builtin`` ``{name: "module:attr"}`` fill in names
    missing from the metadata (a source tree that was never pip-installed)."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    for name, target in builtin.items():
        found.setdefault(name, EntryPoint(name=name, value=target, group=group))
    return found


def load_plugin(group: str, builtin: Mapping[str, str], name: str, base: type, error: type,
                kind: str) -> object:
    """Instantiate plugin ``name`` of ``group`` (a ``base`` subclass) or raise ``error`` naming
    the installed ones / the missing package."""
    eps = plugin_entry_points(group, builtin)
    if name not in eps:
        raise error(f"unknown {kind} {name!r}; installed {kind}s: {', '.join(sorted(eps))}")
    try:
        cls = eps[name].load()
    except ImportError as exc:
        raise error(
            f"{kind} {name!r} is registered but cannot be imported ({exc}); "
            f"install its framework, e.g. `pip install spikebench[{name}]`"
        ) from exc
    except Exception as exc:  # a broken third-party plug-in must not break the others
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: importing it raised "
                    f"{type(exc).__name__}: {exc}; fix or uninstall that package") from exc
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise error(f"entry point {name!r} -> {eps[name].value} is not a {base.__name__} subclass")
    try:
        return cls()
    except Exception as exc:
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: creating it raised "
                    f"{type(exc).__name__}: {exc}") from exc
