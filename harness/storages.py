"""Optuna storages: where trials live, how dead workers are detected, how URLs are shown.

- ``journal:PATH`` (default: ``optuna.journal`` in the results folder) — a file; workers on
  one machine share it.
- ``sqlite:///PATH`` — one file, one machine.
- any other SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``) — many workers on many
  machines; workers send heartbeats every ``heartbeat_interval`` seconds and a trial silent for
  ``grace_period`` seconds is failed and re-queued (at most ``max_retry`` times).

Passwords never leave this module: :func:`redact` hides them with SQLAlchemy's own URL parser
(which handles ``#``, ``?``, ``/`` and ``@`` in passwords), and only redacted URLs are printed
or written.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from spikebench.errors import SpecError

JOURNAL = "journal:"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and to write to files)."""
    if url.startswith(JOURNAL) or "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<storage url (unparsable, hidden)>"
    return parsed.render_as_string(hide_password=True)


def storage_url(default_journal: Path, spec_storage: str = "", override: str | None = None
                ) -> str:
    """The storage to use: ``--storage``, else ``$SPIKEBENCH_STORAGE``, else the spec's
    ``[search].storage``, else the journal file ``default_journal`` (absolute)."""
    return (override or os.environ.get("SPIKEBENCH_STORAGE") or spec_storage
            or f"{JOURNAL}{default_journal.resolve()}")


def open_storage(url: str, *, heartbeat_interval: int = 2, grace_period: int = 6,
                 max_retry: int = 3) -> Any:
    """An Optuna storage for ``url`` (errors name the redacted URL and the fix)."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix(JOURNAL)).resolve()
        if path.is_dir():
            raise SpecError(f"storage {url}: is a folder; give a journal file path")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if not url.startswith("sqlite"):
        kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                  "engine_kwargs": {"pool_pre_ping": True}}
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        if retry is not None:  # Optuna >= 5
            kwargs["heartbeat_stale_trial_callback"] = retry(max_retry=max_retry)
        else:
            kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry)
    try:
        return optuna.storages.RDBStorage(url, **kwargs)
    except Exception as exc:  # sqlalchemy/driver errors: name the (redacted) URL and the fix
        raise SpecError(
            f"cannot open Optuna storage {redact(url)}: {type(exc).__name__}: "
            f"{_redact_text(str(exc), url)}. Check the URL, that the server is running and, "
            "for PostgreSQL, that `pip install spikebench[postgres]` installed psycopg"
        ) from None


def _redact_text(text: str, url: str) -> str:
    """``text`` with the password of ``url`` removed wherever it appears."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return text


def worker_id() -> str:
    """This process as ``host:pid`` (recorded on every trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_dead_local_trials(study: Any) -> None:
    """Storages without heartbeats (the journal file) never fail a killed worker's trial: fail
    RUNNING trials whose worker process on this host is gone and queue their parameters again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(Exception):  # another process may have done it first
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)


def fail_stale_trials(study: Any) -> None:
    """Fail (and re-queue, through the retry callback) trials whose heartbeat went silent on
    an RDB storage, and trials of dead local workers on the journal file."""
    import warnings

    import optuna

    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    fail_dead_local_trials(study)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
