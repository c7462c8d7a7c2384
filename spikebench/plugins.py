"""Entry-point plug-in discovery shared by backends (``spikebench.backends``), rules
(``spikebench.rules``) and data sources (``spikebench.datasets``): built-ins register the same
way a third-party package does, and a broken plug-in is reported by name, never a traceback."""

from __future__ import annotations

import contextlib
import io
import sys
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
    out, said = io.StringIO(), io.StringIO()  # what a plug-in prints while it is imported
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(said):
            cls = eps[name].load()
    except ImportError as exc:
        raise error(
            f"{kind} {name!r} is registered but cannot be imported ({exc}); "
            f"install its framework, e.g. `pip install spikebench[{name}]`"
        ) from exc
    except Exception as exc:  # a broken third-party plug-in must not break the others
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: importing it raised "
                    f"{type(exc).__name__}: {_first_line(exc)}; fix or uninstall that package"
                    ) from exc
    except SystemExit as exc:  # e.g. a module that parses the command line when imported
        last = ([ln.strip() for ln in said.getvalue().splitlines() if ln.strip()] or [""])[-1]
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: importing it exited "
                    f"(SystemExit {exc.code!r}: it runs a program, e.g. argparse, at import"
                    + (f"; it said: {last[:160]}" if last else "")
                    + "); fix or uninstall that package") from None
    sys.stdout.write(out.getvalue())  # a working plug-in's output is shown as usual
    sys.stderr.write(said.getvalue())
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise error(f"entry point {name!r} -> {eps[name].value} is not a {base.__name__} subclass")
    try:
        return cls()
    except Exception as exc:
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: creating it raised "
                    f"{type(exc).__name__}: {_first_line(exc)}") from exc
    except SystemExit as exc:
        raise error(f"{kind} {name!r} ({eps[name].value}) is broken: creating it exited "
                    f"(SystemExit {exc.code!r})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (a listing shows one line per plug-in)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else ""
