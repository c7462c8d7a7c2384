"""MkDocs hook: render the docstrings' Sphinx roles in the API reference.

The package needs no preparation for mkdocstrings: ``src/spikebench`` links to ``spikebench/``,
whose sub-packages link to the top-level folders (``spikebench/harness`` → ``harness/``, ...),
so the handler's ``paths: [src]`` (mkdocs.yml) reads the package as it is installed. Nothing is
imported.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, **_: Any) -> str:
    """Render the docstrings' Sphinx roles (``:class:`~a.b.C``` → ``C``, as Sphinx shows it)
    as plain code: the reference keeps the docstrings readable in ``help()`` too."""
    return _ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)
