"""A bounded, self-healing inter-process lock around the first-use build of the C++ kernels.

``torch.utils.cpp_extension.load`` serialises concurrent builds on ``<build dir>/lock`` and waits
for it *without a time limit*; the file holds nothing, so a build killed mid-way (SIGKILL, OOM)
leaves a lock that hangs every later first use. spikebench therefore takes its own lock first:
a kernel lock (``flock``) on ``<build dir>/spikebench-build.lock`` (absolute path). The kernel
releases it when its holder dies, so whether a holder is alive is never guessed from a host
name or a process id (a container whose host name changed, or a pid reused by another
process, made the old lock wait its full time). The file holds ``pid host start-time`` for the
waiting message only. Only the holder of that lock calls ``load()``, so:

* a torch lock found by the holder of the spikebench lock is stale by construction (every build
  of this extension name goes through the spikebench lock) and removed;
* a live holder is waited for at most ``timeout`` seconds, with one log line naming the lock, the
  holder and what it does; after that the caller gives up (the engine falls back to its
  TorchScript path) instead of hanging.

The lock file is removed by its holder (while still holding it); a process that locked a file
just removed sees that its inode is no longer the path's and tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

_log = logging.getLogger("spikebench")

#: torch's own lock (it names no holder) older than this is stale (a build takes seconds).
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


def _try_lock(lock: Path) -> int | None:
    """An open descriptor of ``lock`` holding its kernel lock, or None when a live process
    holds it (the file is created if needed)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file its holder had just removed: try the path again


def _release(lock: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        lock.unlink()  # still held: nobody can take the removed file for the lock
    os.close(fd)  # releases the kernel lock


def is_stale(lock: Path, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Whether ``lock`` exists and no live process holds it (its kernel lock is free)."""
    if not lock.exists():
        return False
    fd = _try_lock(lock)
    if fd is None:
        return False
    os.close(fd)
    return True


def remove_stale_lock(build_dir: str | Path, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Delete the stale locks of ``build_dir``: spikebench's when no live process holds it,
    torch's (which names no holder) when older than ``max_age``; whether it did."""
    build = Path(os.path.abspath(build_dir))
    removed = False
    ours, theirs = build / LOCK_NAME, build / TORCH_LOCK_NAME
    if ours.exists():
        fd = _try_lock(ours)
        if fd is not None:
            _release(ours, fd)
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


@contextlib.contextmanager
def build_lock(build_dir: str | Path, *, timeout: float = WAIT_SECONDS, poll: float = 0.2,
               what: str = "the fused C++ LIF kernels") -> Iterator[Path]:
    """Hold ``<build_dir>/spikebench-build.lock`` (a kernel lock) while building.

    Waits at most ``timeout`` seconds for a live holder; raises :class:`BuildLockTimeout`
    after that. On entry, a torch lock left by a killed build is removed (the holder of this
    lock is the only builder).
    """
    build = Path(os.path.abspath(build_dir))
    build.mkdir(parents=True, exist_ok=True)
    lock = build / LOCK_NAME
    deadline = time.monotonic() + timeout
    announced = False
    while (fd := _try_lock(lock)) is None:
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
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n".encode())
        torch_lock = build / TORCH_LOCK_NAME
        if torch_lock.exists():
            _log.info("spikebench: removing torch's build lock %s left by a killed build",
                      torch_lock)
            torch_lock.unlink(missing_ok=True)
        yield lock
    finally:
        _release(lock, fd)
