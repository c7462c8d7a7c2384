"""Progress bars for long work: shown on a terminal only (clean CI logs and redirected output)."""

from __future__ import annotations

import sys
from typing import Any


def bar(enabled: bool, total: int, desc: str) -> Any:
    """A tqdm bar (usable as a context manager) that draws only when ``enabled`` and stderr
    is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False,
                file=sys.stderr)
