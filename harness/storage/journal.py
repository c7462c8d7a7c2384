"""The journal-file storage made crash-safe: kernel locks, repaired torn lines, heartbeats.

Optuna's :class:`~optuna.storages.journal.JournalFileBackend` appends one JSON line per
operation. Three things go wrong with it after a crash, and this module answers each:

- **Stale lock.** Its default lock is a symlink that a SIGKILLed process leaves behind (with a
  relative target it even dangles, and the stale-lock recovery spins forever).
  :class:`KernelJournalLock` is an ``flock`` on ``<journal>.flock`` instead: the kernel releases
  it when the holder dies, so a lock is only ever held by a live process. Waiting for it is
  bounded (``LOCK_TIMEOUT`` seconds, with a message every ``LOCK_NOTICE`` seconds that names the
  file); a leftover Optuna symlink lock is removed.
- **Torn line.** A full disk or a kill during an append leaves a last line without its newline;
  the next append would glue onto it and every later read fails with ``JSONDecodeError``.
  :class:`SafeJournalBackend` truncates a failed append back to where it started and, before
  every append and on opening, cuts a torn last line off (its bytes are kept in
  ``<journal>.torn-<time>``). Damage anywhere else stops the run with a message saying how to
  recover.
- **No liveness.** The journal has no heartbeat, so a killed worker's RUNNING trial waited
  forever (its ``host:pid`` cannot be checked from another host or container).
  :class:`HeartbeatJournalStorage` implements Optuna's heartbeat protocol: while a trial runs,
  a thread touches ``<journal>.heartbeats/<trial id>`` every ``heartbeat_interval`` seconds, and
  a RUNNING trial whose file (or, without a file, whose start) is older than ``grace_period``
  seconds is failed and re-queued by Optuna's retry callback — no host names or pids involved,
  and ages measured on the file system's clock, not each machine's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Optuna's journal classes are subclassed below; this module is imported only when a study
# opens its storage (open_storage), so importing Optuna here keeps `import spikebench` light.
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

from spikebench.errors import SpecError

#: Seconds a process waits for the journal lock before giving up with an error (the lock is
#: held for one append, milliseconds; only a stopped or hung process holds it longer).
LOCK_TIMEOUT = 300.0
#: Seconds between "still waiting" messages while waiting for the lock.
LOCK_NOTICE = 15.0


class StorageError(SpecError):
    """The trial storage cannot be used (damaged, locked by a hung process, disk full): fatal
    for the run, never recorded as one cell's failure."""


def _notice(text: str) -> None:
    print(f"spikebench: {text}", file=sys.stderr, flush=True)


def _remove_optuna_symlink_lock(journal: Path) -> None:
    """Optuna's symlink lock ``<journal>.lock`` left by a killed process (spikebench no longer
    takes it, so any that exists is stale)."""
    link = journal.with_name(journal.name + ".lock")
    if link.is_symlink():
        with contextlib.suppress(OSError):
            link.unlink()
            _notice(f"removed the stale journal lock {link} left by a killed process")


class KernelJournalLock(BaseJournalFileLock):
    """An ``flock`` on ``<journal>.flock``: released by the kernel when its holder dies."""

    def __init__(self, journal: Path, timeout: float = LOCK_TIMEOUT) -> None:
        from filelock import FileLock

        self.path = Path(str(journal) + ".flock")
        self.timeout = timeout
        self._lock = FileLock(str(self.path), thread_local=False)

    def acquire(self) -> bool:
        from filelock import Timeout

        waited = 0.0
        while True:
            try:
                self._lock.acquire(timeout=min(LOCK_NOTICE, self.timeout - waited))
                return True
            except Timeout:
                waited += LOCK_NOTICE
                if waited >= self.timeout:
                    raise StorageError(
                        f"the journal lock {self.path} has been held by another live process "
                        f"for over {self.timeout:.0f} s (a stopped or hung spikebench?); "
                        "end that process and rerun to resume") from None
                _notice(f"waiting for the journal lock {self.path} (held by another "
                        f"spikebench process, {waited:.0f} s so far)")

    def release(self) -> None:
        self._lock.release()


class SafeJournalBackend(JournalFileBackend):
    """A journal file whose appends never leave a torn line behind (module docstring)."""

    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT) -> None:
        path = Path(path).absolute()
        _remove_optuna_symlink_lock(path)
        try:
            super().__init__(str(path), KernelJournalLock(path, lock_timeout))
        except OSError as exc:
            raise StorageError(f"storage journal:{path}: cannot create it ({exc.strerror}); "
                               "give a writable path") from None
        self.path = path
        with self._locked():
            repair_torn_tail(path)

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with self._locked():
            repair_torn_tail(self.path)
            with open(self.path, "ab") as fh:
                start = fh.tell()
                try:
                    fh.write(text.encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        fh.truncate(start)
                    raise _disk_error(self.path, exc) from None

    def read_logs(self, log_number_from: int) -> Any:
        try:
            yield from super().read_logs(log_number_from)
        except ValueError:  # json.JSONDecodeError or Optuna's "Invalid log format."
            raise StorageError(damage_message(self.path)) from None


def _disk_error(path: Path, exc: OSError) -> StorageError:
    why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
    return StorageError(f"cannot append to the trial journal {path}: {why}; the journal was left "
                        "as it was before this write: free space and rerun to resume")


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line without its newline (a torn append) off ``path``; its bytes are saved
    beside it as ``<journal>.torn-<time>``. Call with the journal lock held. True if cut."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        block = min(size, 1 << 20)
        fh.seek(size - block)
        tail = fh.read(block)
        cut = size - block + tail.rfind(b"\n") + 1 if b"\n" in tail else (
            0 if block == size else None)
        if cut is None:
            raise StorageError(f"{path}: its last line is over 1 MiB long and torn; "
                               + _damage_fix(path))
        fh.seek(cut)
        torn = fh.read()
        backup = path.with_name(f"{path.name}.torn-{time.time_ns()}")
        try:
            backup.write_bytes(torn)
        except OSError as exc:
            raise StorageError(f"{path}: its last line is torn (a crash or a full disk) and the "
                               f"torn bytes cannot be saved to {backup} ({exc.strerror}); free "
                               "space and rerun to resume") from None
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    _notice(f"repaired the trial journal {path}: cut a torn last line of {len(torn)} bytes "
            f"(kept in {backup.name})")
    return True


def damage_message(path: Path) -> str:
    """Where ``path`` stops being valid JSON lines, and how to recover."""
    line_no, offset = 0, 0
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):  # noqa: B007
            try:
                json.loads(line)
            except ValueError:
                break
            offset += len(line)
        else:
            line_no += 1
    return (f"the trial journal {path} is damaged at line {line_no} (byte {offset}); "
            + _damage_fix(path, offset))


def _damage_fix(path: Path, offset: int | None = None) -> str:
    keep = (f"`cp {path} {path}.bak && truncate -s {offset} {path}` keeps the trials "
            "before it (later ones are rerun)" if offset is not None else
            f"move {path} aside and truncate it after its last complete line")
    return f"{keep}; or start again in a new --out folder"


class _Heartbeats:
    """Per-trial heartbeat files in ``<journal>.heartbeats/`` (mtime = last beat).

    A beat's age is measured on the clock that stamped it: the file system's (a network file
    system stamps ``utime(now)`` with the server's time). "Now" is the mtime of a probe file
    touched at the moment of the check, so machines sharing the journal need not agree on the
    time: a worker whose clock runs an hour ahead neither fails live trials nor keeps dead
    ones (comparing mtimes with the local ``time.time()`` did).
    """

    def __init__(self, journal: Path, interval: int, grace: int) -> None:
        self.root = journal.with_name(journal.name + ".heartbeats")
        self.interval, self.grace = interval, grace

    def beat(self, trial_id: int) -> None:
        path = self.root / str(trial_id)
        try:
            if path.exists():
                os.utime(path)
            else:
                self.root.mkdir(exist_ok=True)
                path.touch()
        except OSError:
            pass  # a full disk: the trial may be failed as stale and is then rerun

    def age(self, trial_id: int, started: float | None) -> float:
        """Seconds since the last beat, on the file system's clock (or, before any beat, since
        the trial started, on this machine's clock: the start time is the worker's)."""
        try:
            last = (self.root / str(trial_id)).stat().st_mtime
        except OSError:
            return time.time() - (started if started is not None else 0.0)
        return self.now() - last

    def now(self) -> float:
        """The file system's current time: the mtime of a probe file touched now (this
        machine's clock when the folder cannot be written)."""
        probe = self.root / ".now"
        try:
            self.root.mkdir(exist_ok=True)
            probe.touch()  # an existing file: utime(now), stamped like the beats
            return probe.stat().st_mtime
        except OSError:
            return time.time()


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage with the RDB storage's heartbeat protocol (module docstring)."""

    def __init__(self, path: Path, *, heartbeat_interval: int, grace_period: int,
                 stale_callback: Callable[..., None] | None = None,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        path = Path(path).absolute()
        backend = SafeJournalBackend(path, lock_timeout)
        try:
            super().__init__(backend)
        except ValueError:  # damage found while replaying
            raise StorageError(damage_message(path)) from None
        self._beats = _Heartbeats(path, heartbeat_interval, grace_period)
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self._beats.beat(trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.trial import TrialState

        stale = []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = t.datetime_start.timestamp() if t.datetime_start else None
            if self._beats.age(t._trial_id, started) > self._beats.grace:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._beats.interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[..., None] | None:
        return self._stale_callback

    def stale_claim(self) -> Any:
        """A non-blocking kernel lock: one process at a time fails and re-queues stale trials
        (two doing it would queue each retry twice)."""
        from filelock import FileLock

        return FileLock(str(self._beats.root) + ".flock", thread_local=False)


class ReadOnlyJournalBackend(BaseJournalBackend):
    """A journal file read without its lock and never written: what ``spikebench study
    status`` reads, so that a results folder on a read-only disk (or one another process is
    writing) can be inspected. A last line still being written (no newline yet) is not read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()

    def read_logs(self, log_number_from: int) -> Any:
        try:
            lines = self.path.read_bytes().split(b"\n")[:-1]  # the part after the last \n
        except FileNotFoundError:  # the study has not started: no trials
            return
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot read the trial journal ({exc.strerror})"
                               ) from None
        for number, line in enumerate(lines):
            if number >= log_number_from:
                try:
                    yield json.loads(line)
                except ValueError:
                    raise StorageError(damage_message(self.path)) from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise StorageError(f"{self.path}: opened read-only (study status never writes)")
