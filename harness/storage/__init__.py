"""Optuna storages: the journal file made crash-safe (:mod:`.journal`), RDB URLs
(:mod:`.urls`), and dead-worker detection (:mod:`.liveness`).

:func:`open_storage` is the one place a storage is opened; :func:`check_storage` refuses a URL
that cannot work before anything is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpecError
from spikebench.harness.storage.liveness import fail_stale_trials, host_name, worker_id
from spikebench.harness.storage.urls import (
    JOURNAL,
    _redact_text,
    check_url,
    journal_path,
    normalise,
    probe,
    redact,
    storage_url,
)

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

__all__ = [
    "JOURNAL",
    "check_storage",
    "check_url",
    "fail_stale_trials",
    "host_name",
    "journal_path",
    "normalise",
    "open_storage",
    "probe",
    "redact",
    "storage_url",
    "worker_id",
]


def open_storage(url: str, *, heartbeat_interval: int = 2, grace_period: int = 6,
                 max_retry: int = 3, read_only: bool = False) -> BaseStorage:
    """An Optuna storage for ``url`` (errors name the redacted URL and the fix). The journal
    file and RDB storages both send heartbeats every ``heartbeat_interval`` seconds while a
    trial runs; a RUNNING trial silent for ``grace_period`` seconds is failed and re-queued (at
    most ``max_retry`` times). ``read_only``: a journal file is read without taking its lock
    and never written (a folder on a read-only disk can be inspected)."""
    import warnings

    import optuna

    if read_only and url.startswith(JOURNAL):
        from optuna.storages import JournalStorage

        from spikebench.harness.storage.journal import ReadOnlyJournalBackend

        return JournalStorage(ReadOnlyJournalBackend(journal_path(url, create=False)))

    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=max_retry)
    if url.startswith(JOURNAL):
        from spikebench.harness.storage.journal import HeartbeatJournalStorage

        path = journal_path(url)
        return HeartbeatJournalStorage(path, heartbeat_interval=heartbeat_interval,
                                       grace_period=grace_period, stale_callback=callback)
    kwargs: dict[str, Any] = {}
    url = normalise(url)
    check_url(url)
    if not url.startswith("sqlite"):
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "engine_kwargs": {"pool_pre_ping": True}}
        key = ("heartbeat_stale_trial_callback" if retry is not None  # Optuna >= 5
               else "failed_trial_callback")
        kwargs[key] = callback
    try:
        with warnings.catch_warnings():  # heartbeats are experimental in Optuna: we rely on them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as exc:  # sqlalchemy/driver errors: name the (redacted) URL and the fix
        raise SpecError(
            f"cannot open Optuna storage {redact(url)}: {type(exc).__name__}: "
            f"{_redact_text(str(exc), url)}. Check the URL, that the server is running and, "
            "for PostgreSQL, that `pip install spikebench[postgres]` installed psycopg"
        ) from None


def check_storage(url: str) -> None:
    """Refuse a storage URL that cannot work, without creating anything: a journal path that
    is a folder, an unparsable URL, an RDB server that cannot be reached (one connection)."""
    if url.startswith(JOURNAL):
        path = Path(url.removeprefix(JOURNAL) or ".").expanduser().absolute()
        if path.is_dir():
            raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, "
                            f"e.g. journal:{path / 'optuna.journal'}")
        return
    check_url(url)
    probe(url)


#: Database errors that mean the storage went away (SQLAlchemy's and the drivers' names).
_LOST = ("OperationalError", "InterfaceError", "DisconnectionError", "DatabaseError")


def lost_storage(exc: BaseException) -> str:
    """The database error behind ``exc`` when the storage went away mid-study (a stopped
    server, a dropped connection), else "". Optuna may hide it behind an error of its own
    (an ``UnboundLocalError`` raised while it handled the database error)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__
        if type(current).__name__ in _LOST and module.startswith(("sqlalchemy", "psycopg")):
            lines = [ln.strip() for ln in str(current).splitlines() if ln.strip()]
            return f"{type(current).__name__}: {lines[0][:240] if lines else ''}"
        current = current.__cause__ or current.__context__
    return ""


@contextlib.contextmanager
def storage_lost_as_error(url: str) -> Iterator[None]:
    """Turn the storage going away mid-study into one :class:`StorageError` line (password
    hidden) instead of a driver's (or Optuna's) traceback; what finished is kept."""
    from spikebench.harness.storage.journal import StorageError

    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        why = lost_storage(exc)
        if not why:
            raise
        raise StorageError(
            f"lost the Optuna storage {redact(url)} mid-study ({_redact_text(why, url)}); "
            "every finished trial and refit is kept: restart the server (or restore the "
            "connection) and rerun the same command to resume") from None
