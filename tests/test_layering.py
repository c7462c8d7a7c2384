"""Imports only run downwards: cli → reports → harness → {backends, datasets} → core.

Every module of the package is parsed with ``ast`` and every import it makes is resolved to a
module name: ``import`` and ``from … import`` at the top level or inside functions, relative
imports (``from ..reports import x``) resolved against the importing module, and
``importlib.import_module("…")`` / ``__import__("…")`` with a literal name. An arrow that runs
back up a layer fails, naming the file and line; so does any import cycle between modules
(lazy imports included: a cycle is a knot in the one readable chain, wherever it is tied).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Top-level folder -> the package it is (spikebench/<folder> links to it).
FOLDERS = {"harness": "spikebench.harness", "backends": "spikebench.backends",
           "datasets": "spikebench.datasets", "reports": "spikebench.reports",
           "studies": "spikebench.studies"}
#: Layer -> the layers its modules may import.
ALLOWED = {
    "datasets": {"datasets"},
    "backends": {"backends"},
    "studies": {"studies"},
    "harness": {"harness", "backends", "datasets", "studies"},
    "reports": {"reports", "harness", "backends", "datasets", "studies"},
}
#: The core: every module directly in spikebench/ except the top (the CLI's ``cli*`` modules,
#: the public API, __main__), which may import every layer.
TOP = {"spikebench", "spikebench.__main__"}


@dataclass(frozen=True)
class Import:
    line: int
    target: str


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (the folder mapping applied)."""
    found: dict[str, Path] = {}
    for path in (root / "spikebench").glob("*.py"):
        found["spikebench" if path.stem == "__init__" else f"spikebench.{path.stem}"] = path
    for folder, package in FOLDERS.items():
        for path in (root / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(root / folder).with_suffix("").parts
                     if p != "__init__"]
            if "__pycache__" not in parts:
                found[".".join([package, *parts])] = path
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module named by ``node`` inside ``module`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every spikebench module ``module`` imports (see the module docstring)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(module, path, node)
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                yield Import(node.lineno, sub if sub in known else target)
        elif isinstance(node, ast.Import):
            yield from (Import(node.lineno, alias.name) for alias in node.names)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            yield Import(node.lineno, node.args[0].value)


def layer(module: str) -> str:
    """``spikebench.harness.rules.base`` -> ``harness``; a core module -> ``core``."""
    parts = module.split(".")
    if module in TOP or parts[1].startswith("cli"):
        return "top"
    return parts[1] if f"spikebench.{parts[1]}" in FOLDERS.values() else "core"


def upward_imports(root: Path = ROOT) -> list[str]:
    """``file:line imports target`` for every import that runs up the layers."""
    files = module_files(root)
    bad = []
    for module, path in sorted(files.items()):
        own = layer(module)
        for imp in imports_of(module, path, set(files)):
            if imp.target.split(".")[0] != "spikebench":
                continue
            target = layer(imp.target) if imp.target != "spikebench" else "top"
            allowed = {"core"} | ({"core"} if own == "core" else ALLOWED.get(own, set()))
            if own == "top" or target in allowed:
                continue
            bad.append(f"{path.relative_to(root)}:{imp.line} imports {imp.target}")
    return bad


def import_cycles(root: Path = ROOT) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    files = module_files(root)
    graph = {m: {i.target for i in imports_of(m, p, set(files))} & set(files) - {m}
             for m, p in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_imports_only_run_downwards():
    bad = upward_imports()
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "modules that import each other:\n" + "\n".join(map(str, cycles))


def test_no_source_module_is_over_500_lines():
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in module_files().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500]
    assert not long, "split these modules:\n" + "\n".join(long)


# -- the guard rails guard: each kind of violation is caught ----------------------------------

@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of the package's layout with one module per layer."""
    (tmp_path / "spikebench").mkdir()
    (tmp_path / "spikebench" / "__init__.py").write_text("")
    (tmp_path / "spikebench" / "errors.py").write_text("")
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "harness" / "fit.py").write_text("import numpy\n")
    (tmp_path / "reports" / "build.py").write_text("from spikebench.harness import fit\n")
    return tmp_path


@pytest.mark.parametrize("line", [
    "from spikebench.reports.build import x",       # absolute
    "from ..reports.build import x",                 # relative, upward
    "from ..reports import build",                   # relative, a sub-module by name
    "import importlib\nimportlib.import_module('spikebench.reports.build')",
    "__import__('spikebench.reports')",
    "def f():\n    from spikebench.reports import build",  # lazy
])
def test_an_upward_import_of_any_spelling_is_caught(tree: Path, line: str):
    assert upward_imports(tree) == []
    (tree / "harness" / "fit.py").write_text(line + "\n")
    assert upward_imports(tree) == ["harness/fit.py:" + str(line.count("\n") + 1)
                                    + " imports spikebench.reports" + (
                                        ".build" if "build" in line else "")]


def test_a_cycle_of_lazy_imports_is_caught(tree: Path):
    assert import_cycles(tree) == []
    (tree / "harness" / "spec.py").write_text("def f():\n    from .plan import g\n")
    (tree / "harness" / "plan.py").write_text("from spikebench.harness.spec import f\n")
    assert import_cycles(tree) == [["spikebench.harness.plan", "spikebench.harness.spec"]]


#: A path a results folder holds, joined by hand (``root / "results.parquet"``).
FOLDER_PATH = re.compile(
    r'/ "(?:(?:results|predictions|curves|trials)\.parquet|(?:protocol|splits|identity)\.json'
    r'|spec\.toml|optuna\.journal|models|rows|predictions|curves|locks|report)"')


def test_only_the_results_folder_builds_paths_inside_a_results_folder():
    """``ResultsFolder`` (harness/folder.py) owns every path of a results folder; the data
    sources' own work folders (datasets/) are theirs."""
    own = ROOT / "harness" / "folder.py"
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for module, path in module_files().items()
             if path != own and layer(module) != "datasets"
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if FOLDER_PATH.search(line)]
    assert not found, "use ResultsFolder's paths:\n" + "\n".join(found)
