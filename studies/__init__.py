"""The study specs shipped with spikebench (package data of ``spikebench.studies``).

``studies/*.toml`` in the source tree are installed as ``spikebench/studies/*.toml``, so a wheel
carries the demo and the reference specs. :func:`resolve_spec` turns what a user typed into a
spec file: a path that exists wins; otherwise a bare name such as ``demo`` (or ``demo.toml``)
names a shipped spec.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from spikebench.errors import SpecError

__all__ = ["resolve_spec", "shipped_specs"]


def shipped_specs() -> dict[str, Path]:
    """Name → path of every spec shipped with the installed package (``demo``, ...)."""
    folder = Path(str(files(__name__)))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_spec(spec: str | Path) -> Path:
    """The spec file meant by ``spec``: an existing path as given, else the shipped spec of
    that name (``demo`` or ``demo.toml``). Raises :class:`~spikebench.errors.SpecError` naming
    the path and the shipped names when it is neither."""
    path = Path(spec)
    if path.exists():
        return path
    shipped = shipped_specs()
    name = path.name.removesuffix(".toml")
    if path.parent == Path(".") and name in shipped:
        return shipped[name]
    raise SpecError(f"{path}: study spec not found; give a spec file or one of the shipped "
                    f"specs by name: {', '.join(shipped) or '(none installed)'}")
