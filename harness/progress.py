"""Progress bars for long work: shown on a terminal only (clean CI logs and redirected output)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from tqdm import tqdm

#: Seconds between "still waiting" messages (:class:`WaitNotice`).
WAIT_NOTICE = 30.0


def bar(enabled: bool, total: int, desc: str) -> tqdm[NoReturn]:
    """A tqdm bar (usable as a context manager) that draws only when ``enabled`` and stderr
    is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False,
                file=sys.stderr)


class WaitNotice:
    """Says on stderr, at most every :data:`WAIT_NOTICE` seconds, what a worker waits for:
    a wait that lasts is never silent. ``tick(message)`` during the wait (``message(seconds
    waited)`` gives the text), ``reset()`` when it ends."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.last = 0.0

    def reset(self) -> None:
        self.since = None

    def tick(self, message: Callable[[float], str]) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.last = now, now
            return
        if now - self.last < WAIT_NOTICE:
            return
        self.last = now
        print(f"spikebench: {message(now - self.since)}", file=sys.stderr, flush=True)
