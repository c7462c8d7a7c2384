"""A bounded, self-healing inter-process lock around the first-use build of the C++ kernels.

``torch.utils.cpp_extension.load`` serialises concurrent builds on ``<build dir>/lock`` and waits
for it *without a time limit*; the file holds nothing, so a build killed mid-way (SIGKILL, OOM)
leaves a lock that hangs every later first use. spikebench therefore takes its own lock first,
``<build dir>/spikebench-build.lock`` (absolute path), created atomically (``O_EXCL``) and holding
``pid host start-time``. Only the holder of that lock calls ``load()``, so:

* a spikebench lock whose holder process is gone (same host, ``kill(pid, 0)`` fails) or that is
  older than :data:`STALE_LOCK_SECONDS` is stale and removed, and so is torch's lock beside it;
* a torch lock found by the holder of the spikebench lock is stale by construction (every build
  of this extension name goes through the spikebench lock) and removed;
* a live holder is waited for at most ``timeout`` seconds, with one log line naming the lock, the
  holder and what it does; after that the caller gives up (the engine falls back to its
  TorchScript path) instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

_log = logging.getLogger("spikebench")

#: A lock older than this is stale whatever its holder (a build takes seconds).
STALE_LOCK_SECONDS = 600.0
#: How long a process waits for another one's build before it gives up.
WAIT_SECONDS = 300.0
LOCK_NAME = "spikebench-build.lock"
TORCH_LOCK_NAME = "lock"


class BuildLockTimeout(RuntimeError):
    """Another live process held the build lock longer than the wait allowed."""


def _holder(lock: Path) -> tuple[int, str] | None:
    """``(pid, host)`` written in ``lock``; ``None`` when unreadable or malformed."""
    try:
        pid, host, *_ = lock.read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(lock: Path, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Whether ``lock`` is left over: older than ``max_age`` or held by a process of this host
    that no longer exists (an unreadable lock counts as live until it is old)."""
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return False
    if age > max_age:
        return True
    holder = _holder(lock)
    if holder is None:
        return age > 5.0  # written right after O_EXCL creation: empty only for an instant
    pid, host = holder
    return host == socket.gethostname() and not _alive(pid)


def remove_stale_lock(build_dir: str | Path, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Delete the stale locks (spikebench's and torch's) of ``build_dir``; whether it did.

    torch's own lock carries no holder: it is removed when older than ``max_age``.
    """
    build = Path(os.path.abspath(build_dir))
    removed = False
    ours, theirs = build / LOCK_NAME, build / TORCH_LOCK_NAME
    if is_stale(ours, max_age):
        with contextlib.suppress(OSError):
            ours.unlink()
            theirs.unlink(missing_ok=True)
            removed = True
    try:
        if time.time() - theirs.stat().st_mtime > max_age:
            theirs.unlink()
            removed = True
    except OSError:
        pass
    if removed:
        _log.info("spikebench: removed a stale C++ build lock in %s", build)
    return removed


def _try_create(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n")
    return True


@contextlib.contextmanager
def build_lock(build_dir: str | Path, *, timeout: float = WAIT_SECONDS, poll: float = 0.2,
               what: str = "the fused C++ LIF kernels") -> Iterator[Path]:
    """Hold ``<build_dir>/spikebench-build.lock`` (created if needed) while building.

    Waits at most ``timeout`` seconds for a live holder, removing stale locks on every poll;
    raises :class:`BuildLockTimeout` after that. On entry, a torch lock left by a killed build
    is removed (the holder of this lock is the only builder).
    """
    build = Path(os.path.abspath(build_dir))
    build.mkdir(parents=True, exist_ok=True)
    lock = build / LOCK_NAME
    deadline = time.monotonic() + timeout
    announced = False
    while not _try_create(lock):
        if is_stale(lock):
            _log.info("spikebench: removing stale build lock %s (holder gone)", lock)
            with contextlib.suppress(OSError):
                lock.unlink()
            continue
        if not announced:
            holder = _holder(lock)
            _log.warning("spikebench: waiting up to %.0f s for %s being built by %s (lock %s)",
                         timeout, what, f"pid {holder[0]} on {holder[1]}" if holder
                         else "another process", lock)
            announced = True
        if time.monotonic() >= deadline:
            raise BuildLockTimeout(f"gave up after {timeout:.0f} s waiting for {lock} "
                                   f"(held by {_holder(lock) or 'an unknown process'})")
        time.sleep(poll)
    try:
        torch_lock = build / TORCH_LOCK_NAME
        if torch_lock.exists():
            _log.info("spikebench: removing torch's build lock %s left by a killed build",
                      torch_lock)
            torch_lock.unlink(missing_ok=True)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
