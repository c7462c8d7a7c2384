"""Optuna storages: the journal file made crash-safe (:mod:`.journal`), RDB URLs
(:mod:`.urls`), and dead-worker detection (:mod:`.liveness`).

:func:`open_storage` is the one place a storage is opened; :func:`check_storage` refuses a URL
that cannot work before anything is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpecError
from spikebench.harness.storage.liveness import fail_stale_trials, host_name, worker_id
from spikebench.harness.storage.urls import (
    JOURNAL,
    _redact_text,
    check_url,
    journal_path,
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
    "open_storage",
    "redact",
    "storage_url",
    "worker_id",
]


def open_storage(url: str, *, heartbeat_interval: int = 2, grace_period: int = 6,
                 max_retry: int = 3) -> BaseStorage:
    """An Optuna storage for ``url`` (errors name the redacted URL and the fix). The journal
    file and RDB storages both send heartbeats every ``heartbeat_interval`` seconds while a
    trial runs; a RUNNING trial silent for ``grace_period`` seconds is failed and re-queued (at
    most ``max_retry`` times)."""
    import warnings

    import optuna

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
    """Refuse a storage URL that cannot work, without creating anything."""
    if url.startswith(JOURNAL):
        path = Path(url.removeprefix(JOURNAL) or ".").expanduser().absolute()
        if path.is_dir():
            raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, "
                            f"e.g. journal:{path / 'optuna.journal'}")
        return
    check_url(url)
