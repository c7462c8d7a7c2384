"""Liveness: how a trial whose worker died is found, failed and queued again.

Workers send heartbeats every ``heartbeat_interval`` seconds while a trial runs (on the
journal file as on an RDB); a RUNNING trial silent for ``grace_period`` seconds is failed and
re-queued (at most ``max_retry`` times) by whichever worker looks first.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any


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

    from spikebench.harness.storage.journal import HeartbeatJournalStorage

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
