"""Imports run downwards only: cli → reports → harness → {backends, datasets} → core.

Walks the ``import`` statements (top level and inside functions) of every module of each
sub-package with ``ast``; an arrow that runs back up fails the test, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Folder -> the spikebench sub-packages its modules may import.
ALLOWED = {
    "datasets": {"datasets"},
    "backends": {"backends"},
    "harness": {"harness", "backends", "datasets"},
    "reports": {"reports", "harness", "backends", "datasets"},
}
#: The core: every module directly in spikebench/ except the top (the CLI's ``cli*`` modules,
#: public API, __main__).
CORE = {p.stem for p in (ROOT / "spikebench").glob("*.py")
        if not p.stem.startswith("cli")} - {"__init__", "__main__"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "spikebench":
        return None
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] not in CORE else "core"


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_only_run_downwards(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for line, module in _imports(path):
            target = _target(module)
            if target in (None, "core") or target in ALLOWED[folder]:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_core_imports_no_sub_package():
    for name in CORE:
        for line, module in _imports(ROOT / "spikebench" / f"{name}.py"):
            assert _target(module) in (None, "core"), f"spikebench/{name}.py:{line} {module}"


def test_no_source_module_is_over_500_lines():
    long = []
    for folder in (*ALLOWED, "spikebench"):
        for path in (ROOT / folder).rglob("*.py"):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > 500:
                long.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not long, "split these modules:\n" + "\n".join(long)
