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
        from spikebench.harness.journal import HeartbeatJournalStorage

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


def journal_path(url: str) -> Path:
    """The absolute journal file of a ``journal:PATH`` URL (checked: not a folder, its folder
    exists or can be made)."""
    raw = url.removeprefix(JOURNAL)
    if not raw:
        raise SpecError("storage 'journal:': give a file path, e.g. journal:/data/optuna.journal")
    path = Path(raw).expanduser().absolute()
    if path.is_dir():
        raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, e.g. "
                        f"journal:{path / 'optuna.journal'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"storage {url}: cannot create its folder {path.parent} "
                        f"({exc.strerror}); give a writable path") from None
    return path


def check_storage(url: str) -> None:
    """Refuse a storage URL that cannot work, without creating anything."""
    if url.startswith(JOURNAL):
        path = Path(url.removeprefix(JOURNAL) or ".").expanduser().absolute()
        if path.is_dir():
            raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, "
                            f"e.g. journal:{path / 'optuna.journal'}")
        return
    check_url(url)


def check_url(url: str) -> None:
    """Refuse an RDB URL that cannot work before a driver sees it: unparsable, a non-integer
    or out-of-range port, an SQLite file in a folder that does not exist."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError) as exc:
        what = "the port must be an integer" if "int()" in str(exc) else "unparsable"
        raise SpecError(f"storage {redact(url)}: {what}; write it as "
                        "dialect+driver://user:password@host:port/database "
                        "(or journal:PATH)") from None
    if port is not None and not 0 < port < 65536:
        raise SpecError(f"storage {redact(url)}: port {port} is out of range (1-65535)")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().absolute().parent
        if not folder.is_dir():
            raise SpecError(f"storage {redact(url)}: the folder {folder} does not exist; "
                            "create it or give an SQLite path in an existing folder")


def _redact_text(text: str, url: str) -> str:
    """``text`` with the password of ``url`` removed wherever it appears."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return text


def host_name() -> str:
    """This machine's name as spikebench records it: ``$SPIKEBENCH_HOSTNAME`` if set (a
    container may give itself a stable name), else the OS host name."""
    return os.environ.get("SPIKEBENCH_HOSTNAME") or socket.gethostname()


def worker_id() -> str:
    """This process as ``host:pid`` (recorded on every trial it runs; informative only:
    liveness comes from heartbeats, see :func:`fail_stale_trials`)."""
    return f"{host_name()}:{os.getpid()}"


def fail_dead_local_trials(study: Any) -> None:
    """A fast path before the grace period: fail RUNNING trials whose worker process on this
    host is gone, and re-queue them (through the storage's retry callback)."""
    import optuna
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if host != host_name() or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            failed = study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            continue  # another process failed it first
        if failed:
            _requeue(study, t._trial_id)


def _requeue(study: Any, trial_id: int) -> None:
    import copy

    callback = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    if callback is not None:
        callback(study, copy.deepcopy(study._storage.get_trial(trial_id)))
    else:
        trial = study._storage.get_trial(trial_id)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number},
                            skip_if_exists=False)


def fail_stale_trials(study: Any) -> None:
    """Fail and re-queue RUNNING trials whose heartbeat went silent for the grace period (any
    storage, any host: nothing depends on host names or pids), and at once those of dead
    workers on this host. On the journal file one process at a time does it, so a retry is
    queued once."""
    import warnings

    import optuna
    from filelock import Timeout

    from spikebench.harness.journal import HeartbeatJournalStorage

    storage = study._storage
    claim = (storage.stale_claim() if isinstance(storage, HeartbeatJournalStorage)
             else contextlib.nullcontext())
    try:
        with claim if not hasattr(claim, "acquire") else claim.acquire(timeout=0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            fail_dead_local_trials(study)
    except Timeout:
        return  # another process is failing them right now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
