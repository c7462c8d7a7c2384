"""The study specs shipped with spikebench (package data of ``spikebench.studies``).

``studies/*.toml`` in the source tree are installed as ``spikebench/studies/*.toml``, so a wheel
carries the demo and the reference specs. ``resolve_spec`` turns what a user typed into a
spec file: a path that exists wins; otherwise a bare name such as ``demo`` (or ``demo.toml``)
names a shipped spec.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from spikebench.errors import SpecError

__all__ = ["resolve_spec", "shipped_specs"]


def shipped_specs() -> dict[str, Path]:
    """The study specs shipped with the installed package.

    Returns
    -------
    dict of str to Path
        Spec name (``demo``, ``msd-liver``, ...) → its TOML file.

    Examples
    --------
    >>> from spikebench.studies import shipped_specs
    >>> specs = shipped_specs()
    >>> "demo" in specs and specs["demo"].name
    'demo.toml'
    """
    folder = Path(str(files(__name__)))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_spec(spec: str | Path) -> Path:
    """The spec file meant by what a user typed.

    Parameters
    ----------
    spec : str or Path
        A path to a spec file (an existing file always wins), or the name of a shipped spec
        (``demo`` or ``demo.toml``; a folder of that name in the working directory does not
        hide it).

    Returns
    -------
    Path
        The spec file.

    Raises
    ------
    SpecError
        ``spec`` is neither an existing path nor a shipped name (the message lists the
        shipped names).

    Examples
    --------
    >>> from spikebench.studies import resolve_spec
    >>> resolve_spec("demo").name
    'demo.toml'
    """
    path = Path(spec)
    shipped = shipped_specs()
    name = path.name.removesuffix(".toml")
    if path.is_dir() and path.parent == Path(".") and name in shipped:
        return shipped[name]  # a folder named like a shipped spec (say, results of `demo`)
    if path.exists():
        return path
    if path.parent == Path(".") and name in shipped:
        return shipped[name]
    raise SpecError(f"{path}: study spec not found; give a spec file or one of the shipped "
                    f"specs by name: {', '.join(shipped) or '(none installed)'}")
