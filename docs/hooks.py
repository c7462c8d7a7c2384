"""MkDocs hook: lay the package out as it is installed, so mkdocstrings can read its source.

The sub-packages live in top-level folders that pyproject.toml maps into the package
(``harness/`` → ``spikebench.harness``, ...). Static analysis (griffe) cannot follow that
mapping, so before the build this hook mirrors the installed layout with symbolic links under
``build/docs-src/`` (the ``paths`` of the mkdocstrings handler in mkdocs.yml) with copies of
the sources (griffe resolves symbolic links to the real folder): nothing is imported and
nothing in the source tree is touched.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parent.parent
MIRROR = ROOT / "build" / "docs-src"


# Before every plugin's own on_config: mkdocstrings' Python handler keeps only the ``paths`` that
# exist when it is configured, and on a clean checkout the mirror does not exist yet (it would then
# read the unmapped source tree, where ``spikebench.reports`` etc. are missing).
@event_priority(100)
def on_config(config: Any, **_: Any) -> Any:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    shutil.rmtree(MIRROR, ignore_errors=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    top = MIRROR / "spikebench"
    shutil.copytree(ROOT / package_dir["spikebench"], top, ignore=skip)
    for package, folder in package_dir.items():
        parts = package.split(".")
        if len(parts) == 2:  # spikebench.X: nested packages come with their folder
            shutil.copytree(ROOT / folder, top / parts[1], ignore=skip)
    return config


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, **_: Any) -> str:
    """Render the docstrings' Sphinx roles (``:class:`~a.b.C``` → ``C``, as Sphinx shows it)
    as plain code: the reference keeps the docstrings readable in ``help()`` too."""
    return _ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)
