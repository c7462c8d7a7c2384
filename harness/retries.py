"""Retries: a trial or refit that failed for a reason that may pass is tried again, a bounded
number of times.

Reasons that may pass (:func:`passing_reason`): **out of memory** (``MemoryError``, CUDA's
``OutOfMemoryError`` or a "CUDA out of memory" ``RuntimeError``: another process held the
GPU), **a lost connection** (``ConnectionError``, ``TimeoutError``, a database driver's
operational error) and **a killed worker** (a broken process pool, a data-loader worker
killed by a signal). Any other error (a bug, a diverging configuration) fails at once.

A failed Optuna trial with a passing reason is queued again with the same parameters
(:func:`retry_trial`, the pattern of Optuna's ``RetryFailedTrialCallback``: a WAITING trial
holding ``failed_trial`` and ``retry_history``), at most ``[search].max_retry`` times; a refit
is simply run again (:func:`run_with_retries`). The failure that remains is recorded with its
real error (:func:`describe`), and a rerun of the study retries it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from spikebench.errors import SpikebenchError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

T = TypeVar("T")

#: Trial user attributes: the real error, and why it may pass (absent: it will not).
REASON, PASSING = "reason", "passing"
#: Exceptions a trial (or refit) may raise that fail it (recorded) rather than the study: what
#: the harness and rules raise (SpikebenchError, ValueError, RuntimeError, FloatingPointError)
#: and failures that may pass (MemoryError, ConnectionError, TimeoutError).
TRIAL_ERRORS: tuple[type[Exception], ...] = (
    SpikebenchError, ValueError, RuntimeError, FloatingPointError, MemoryError,
    ConnectionError, TimeoutError)

_LOST_CONNECTION = ("OperationalError", "InterfaceError", "DisconnectionError")
_KILLED = ("is killed by signal", "worker died", "terminated abruptly", "killed worker")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def passing_reason(exc: BaseException) -> str:
    """Why ``exc`` may pass when tried again ("" when it will not)."""
    from concurrent.futures import BrokenExecutor

    for err in _chain(exc):
        text = str(err).lower()
        if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or (
                isinstance(err, RuntimeError) and "out of memory" in text):
            return "out of memory"
        if isinstance(err, (ConnectionError, TimeoutError)) or (
                type(err).__name__ in _LOST_CONNECTION and "sqlalchemy" in type(err).__module__):
            return "a lost connection"
        if isinstance(err, BrokenExecutor) or (isinstance(err, RuntimeError)
                                               and any(k in text for k in _KILLED)):
            return "a killed worker"
    return ""


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters): the real error, for a
    trial's ``reason`` and a failed cell's note."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0][:300] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def retry_trial(study: optuna.Study, trial: FrozenTrial, max_retry: int) -> bool:
    """Queue ``trial`` again (same parameters) when it failed for a passing reason and has
    been retried fewer than ``max_retry`` times; whether it was queued."""
    import optuna

    passing = trial.user_attrs.get(PASSING)
    history = list(trial.system_attrs.get("retry_history", []))
    if trial.state != optuna.trial.TrialState.FAIL or not passing or len(history) >= max_retry:
        return False
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params,
        distributions=trial.distributions,
        user_attrs={"retry_of": trial.number, "retry_reason": passing},
        system_attrs={"failed_trial": history[0] if history else trial.number,
                      "retry_history": [*history, trial.number]}))
    return True


def run_with_retries(work: Callable[[], T], max_retry: int,
                     on_retry: Callable[[BaseException, str, int], None] | None = None) -> T:
    """``work()``, run again (after freeing memory) while it fails for a passing reason, at
    most ``max_retry`` more times; the last error is raised."""
    attempt = 0
    while True:
        try:
            return work()
        except TRIAL_ERRORS as exc:
            why = passing_reason(exc)
            if not why or attempt >= max_retry:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(exc, why, attempt)
            free_memory()


def free_memory() -> None:
    """Give memory back before a retry (Python garbage, and the GPU's cache if torch has
    one)."""
    gc.collect()
    import sys

    torch: Any = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
