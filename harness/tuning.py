"""Tuning: one Optuna study per cell and tuning fold, whose objective is the validation score.

The objective draws parameters from the cell's search space, calls
:func:`~spikebench.harness.fit.fit_and_score` on the fold's *tuning* view (its test patients
are not in it) and returns the validation metric (and, multi-objective, the second objective).
Per-epoch validation scores go to the pruner. :func:`tune` runs trials until the study holds
the budget of finished (complete or pruned) trials, whichever process runs them: workers in
other processes or on other machines share the study through the storage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spikebench.errors import RuleError
from spikebench.harness.data import StudyData, View, make_view
from spikebench.harness.fit import FitResult, fit_and_score
from spikebench.harness.plan import CellPlan
from spikebench.harness.protocol import Fold
from spikebench.harness.retries import (
    PASSING,
    REASON,
    TRIAL_ERRORS,
    describe,
    passing_reason,
    retry_trial,
)

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from spikebench.harness.spec import SearchTable

#: What an objective returns: the validation metric, and the second objective when there is one.
ObjectiveValue = float | tuple[float, float]



def study_attributes(plan: CellPlan, fold: Fold, identity: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """What optuna-dashboard shows as a study's "user attributes": where the study belongs
    (``cell``, ``backend``, ``rule``, ``repeat``, ``fold``: the protocol's study key, "" for a
    cell's single study), how it is scored (``metric``, ``threshold_rule``), its ``seed``, the
    run's ``identity`` (``spec_sha256``, ``data_sha256``, ``scheme``: the values of the results
    folder's identity.json), and every parameter the search does not tune, as
    ``fixed.<name>`` (the dashboard's trial table lists the tuned ones only). Values are
    JSON values (tuples become lists), as the storage returns them."""
    import json

    from spikebench.harness.space import Fixed

    attrs: dict[str, Any] = {
        "cell": plan.label, "backend": plan.backend, "rule": plan.rule,
        "repeat": fold.repeat, "fold": fold.study, "metric": plan.metric,
        "threshold_rule": plan.threshold_rule, "seed": plan.seed, **(identity or {}),
        **{f"fixed.{name}": p.value for name, p in plan.space.items() if isinstance(p, Fixed)}}
    return dict(json.loads(json.dumps(attrs, default=str)))


def open_study(plan: CellPlan, fold: Fold, storage: BaseStorage, search: SearchTable, *,
               worker: int = 0, identity: Mapping[str, Any] | None = None) -> optuna.Study:
    """Create or load the Optuna study that tunes ``plan`` on ``fold``, with its objective's
    name and :func:`study_attributes` (``identity``: the run's hashes and scheme) set for
    optuna-dashboard; an attribute is written only when missing or changed."""
    import optuna

    from spikebench.harness.pruners import make_pruner
    from spikebench.harness.samplers import make_sampler, startup_trials

    multi = bool(search.minimize)
    study = optuna.create_study(
        study_name=plan.study_name(fold), storage=storage, load_if_exists=True,
        directions=["maximize", "minimize"] if multi else ["maximize"],
        sampler=make_sampler(search.sampler, plan.seed + worker, multi,
                             startup_trials(search.startup_trials, plan.trials)),
        pruner=make_pruner(search.pruner, search.pruner_options),
    )
    names: list[str] = [plan.metric, search.minimize] if multi else [plan.metric]
    if study.metric_names != names:  # shown by optuna-dashboard
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
    stored = study.user_attrs
    for key, value in study_attributes(plan, fold, identity).items():
        if stored.get(key, _MISSING) != value:
            study.set_user_attr(key, value)
    return study


_MISSING = object()


def make_objective(plan: CellPlan, fold: Fold, data: StudyData, search: SearchTable
                   ) -> Callable[[optuna.Trial], ObjectiveValue]:
    """The objective of ``plan``'s study on ``fold``: validation metric of one trial."""
    import optuna

    from spikebench.harness.space import suggest
    from spikebench.harness.storage import worker_id

    views = [make_view(data, train, val, (), inputs=plan.inputs)
             for train, val in fold.tuning_splits]
    multi = bool(search.minimize)

    def objective(trial: optuna.Trial) -> ObjectiveValue:
        try:
            return run(trial)
        except optuna.TrialPruned:
            raise
        except TRIAL_ERRORS as exc:  # the real error, and whether it may pass (a retry)
            trial.set_user_attr(REASON, describe(exc))
            why = passing_reason(exc)
            if why:
                trial.set_user_attr(PASSING, why)
            raise

    def run(trial: optuna.Trial) -> ObjectiveValue:
        trial.set_user_attr("worker", worker_id())
        params = suggest(trial, plan.space)

        def report(step: int, value: float, what: str = "epoch") -> None:
            if multi or not math.isfinite(value):
                return
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at {what} {step} "
                                         f"(val {plan.metric} {value:.4f})")

        values, seconds, result = _fit_splits(plan, views, params, trial, report)
        activity = result.model.activity(views[-1].val.X)
        trial.set_user_attr("train_seconds", seconds)
        trial.set_user_attr("warmup_seconds", result.warmup_seconds)
        trial.set_user_attr("synops_per_sample", activity.get("synops_per_sample"))
        trial.set_user_attr("spikes_per_sample", activity.get("spikes_per_sample"))
        value = sum(values) / len(values)
        if multi:
            second = (seconds if search.minimize == "train_seconds"
                      else operations_per_sample(activity))
            return value, float(second)
        return value

    return objective


def _fit_splits(plan: CellPlan, views: list[View], params: Mapping[str, Any],
                trial: optuna.Trial, report: Callable[..., None]
                ) -> tuple[list[float], float, FitResult]:
    """Fit one trial on each tuning split: its validation scores, total training seconds and
    the last fit. One split is pruned per epoch; inner folds after each fold, on the mean."""
    import optuna

    from spikebench.harness.rules import DivergedError

    values: list[float] = []
    seconds = 0.0
    for k, view in enumerate(views):
        try:
            result = fit_and_score(plan, view, params, plan.seed,
                                   report=report if len(views) == 1 else None)
        except DivergedError as exc:
            trial.set_user_attr("reason", str(exc))
            raise optuna.TrialPruned(str(exc)) from None
        if not math.isfinite(result.val_value):
            raise RuleError(f"validation {plan.metric} is undefined (NaN)"
                            + (f" on inner fold {k}" if len(views) > 1 else ""))
        values.append(result.val_value)
        seconds += result.train_seconds
        if len(views) > 1:
            trial.set_user_attr(f"inner_{k}", result.val_value)
            if k < len(views) - 1:
                report(k, sum(values) / len(values), "inner fold")
    return values, seconds, result


def operations_per_sample(activity: Mapping[str, float]) -> float:
    """Synaptic operations per sample: a spiking model's ``synops_per_sample``; a non-spiking
    reference's accumulates plus multiply-accumulates (what the report prices as energy)."""
    synops = activity.get("synops_per_sample", math.nan)
    if synops is not None and math.isfinite(synops):
        return float(synops)
    parts = [activity.get(k) for k in ("acs_per_sample", "macs_per_sample")]
    finite = [float(v) for v in parts if v is not None and math.isfinite(v)]
    return sum(finite) if finite else math.nan


def tune(plan: CellPlan, fold: Fold, data: StudyData, storage: BaseStorage,
         search: SearchTable, *, worker: int = 0, progress: bool = False,
         identity: Mapping[str, Any] | None = None) -> None:
    """Run trials of ``plan`` on ``fold`` until its study has ``plan.trials`` finished ones
    (``identity``: see :func:`open_study`).

    Every pass either runs a trial or waits for trials other workers are running; those are
    alive as long as their heartbeats are (a silent one is failed and re-queued after
    ``search.grace_period`` seconds), so the wait ends; while it lasts, a message every
    ``progress.WAIT_NOTICE`` seconds says what it waits for.
    """
    import optuna
    from optuna.trial import TrialState

    from spikebench.harness.progress import WaitNotice, bar
    from spikebench.harness.storage import fail_stale_trials

    study = open_study(plan, fold, storage, search, worker=worker, identity=identity)
    objective = make_objective(plan, fold, data, search)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    failed = 0  # trials this call ran that failed: a rerun starts again from zero

    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal failed
        if trial.state == TrialState.FAIL:
            failed += 1
            retry_trial(study, trial, search.max_retry)  # a passing reason: queued again
    waiting, label = WaitNotice(), f"{plan.label} {fold.study}".strip()
    with bar(progress, plan.trials, f"tune {plan.label} {fold.study}".strip()) as b:
        while True:
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state in finished for t in trials)
            b.update(done - b.n)
            if done >= plan.trials:
                return
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if done + len(running) >= plan.trials:
                # others are finishing the last trials; a dead worker's trial is failed once
                # its heartbeat is older than the grace period
                fail_stale_trials(study)
                waiting.tick(_waiting_for(label, running, search.grace_period))
                time.sleep(search.poll_seconds)
                continue
            waiting.reset()
            if failed >= max(3 * plan.trials, 10) and done == 0:
                raise RuleError(f"every trial of {plan.label} failed: " + fail_reasons(trials))
            try:
                study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=[after])
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # failed as stale by another process meanwhile; its retry is queued


def _waiting_for(label: str, running: Sequence[FrozenTrial], grace: int
                 ) -> Callable[[float], str]:
    """The "still waiting" message of :func:`tune` for the trials ``running`` elsewhere."""
    who = ", ".join(f"#{t.number} ({t.user_attrs.get('worker', '?')})" for t in running[:4])
    return lambda waited: (
        f"{label}: waiting {waited:.0f} s for trial(s) {who} running in other workers; a "
        f"trial whose heartbeat stops is failed and re-queued after {grace} s")


def best_trial(plan: CellPlan, fold: Fold, storage: BaseStorage, search: SearchTable
               ) -> tuple[FrozenTrial, int]:
    """``(best trial, number of complete trials)`` of ``plan``'s study on ``fold``
    (multi-objective: the Pareto trial with the best validation metric)."""
    from optuna.trial import TrialState

    study = open_study(plan, fold, storage, search)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuleError(f"no complete trial for {plan.label}: "
                        + fail_reasons(study.get_trials(deepcopy=False)))
    best = (max(study.best_trials, key=lambda t: t.values[0]) if search.minimize
            else study.best_trial)
    return best, len(complete)


def fail_reasons(trials: Sequence[FrozenTrial]) -> str:
    """Up to three distinct recorded reasons why ``trials`` failed or were pruned (the real
    errors; a passing one says how often it was retried)."""
    from optuna.trial import TrialState

    counts: dict[str, int] = {}
    for t in trials:
        if t.state not in (TrialState.FAIL, TrialState.PRUNED):
            continue
        reason = str(t.user_attrs.get(REASON) or t.system_attrs.get("fail_reason", ""))
        if reason:
            why = t.user_attrs.get(PASSING)
            label = f"{reason} (a failure that may pass: {why})" if why else reason
            counts[label] = counts.get(label, 0) + 1
    shown = sorted(counts, key=lambda r: -counts[r])[:3]
    return ("; ".join(f"{r} ({counts[r]}x)" if counts[r] > 1 else r for r in shown)
            or "all trials failed or were pruned (no error was recorded)")
