"""Fit and score: the one place a model is trained.

:func:`fit_and_score` trains one configuration of one cell on one fold's training rows,
early-stopping on its validation rows, and returns a :class:`FitResult`. The Optuna objective
(:mod:`~spikebench.harness.tuning`), the refits and the reference models
(:mod:`~spikebench.harness.refit`) all call it; nothing else fits a model. Validation labels
reach the rule only through the scorer bound here (the rule sees ``val.y = -1``), and test rows
are never passed in: :func:`evaluate_test` reads them after the fit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from spikebench.harness.data import View
from spikebench.harness.plan import CellPlan
from spikebench.harness.results import SplitSizes
from spikebench.harness.rules.base import TrainedModel


@dataclasses.dataclass(frozen=True)
class FitResult:
    """A fitted model and what the fit measured on the validation rows."""

    model: TrainedModel
    params: dict[str, Any]
    seed: int
    train_seconds: float
    #: The study metric on validation (NaN when undefined there).
    val_value: float
    #: Every metric on validation, keyed ``val_<metric>``.
    val_metrics: dict[str, float]
    #: Decision threshold chosen on validation (``plan.threshold_rule``).
    threshold: float = 0.5
    #: One-time cost paid before this fit in this process (kernel build, first-call
    #: compilation), excluded from ``train_seconds``.
    warmup_seconds: float = 0.0


def fit_and_score(plan: CellPlan, view: View, params: Mapping[str, Any], seed: int, *,
                  report: Callable[[int, float], None] | None = None) -> FitResult:
    """Train ``plan``'s rule with ``params`` on ``view.train`` (early stopping on
    ``view.val``), seeded with ``seed``; ``report(epoch, value)`` receives per-epoch
    validation scores (Optuna pruning)."""
    from spikebench.backends import get_backend
    from spikebench.harness.metrics import all_metrics, choose_threshold, score
    from spikebench.harness.plan import REFERENCE
    from spikebench.harness.rules import get_rule
    from spikebench.harness.rules.base import FitContext, hide_labels, validation_scorer

    rule = get_rule(plan.rule)
    typed = rule.parse_params(params)  # the rule's params_type; RuleError names a bad key
    backend = None if plan.backend == REFERENCE else get_backend(plan.backend)
    warmup = warm_up(plan.backend, plan.device) if backend is not None else 0.0
    val = view.val
    ctx = FitContext(backend=backend, device=plan.device, seed=seed, report=report,
                     validation=validation_scorer(val, plan.metric))
    started = time.perf_counter()
    model = rule.fit(view.train, hide_labels(val), typed, ctx)
    seconds = time.perf_counter() - started
    prob = model.predict_proba(val.X)
    threshold = choose_threshold(plan.threshold_rule, val.y, prob)
    return FitResult(model=model, params=dict(params), seed=seed, train_seconds=seconds,
                     val_value=score(plan.metric, val.y, prob, val.groups),
                     val_metrics=all_metrics(val.y, prob, val.groups, "val_",
                                             threshold=threshold),
                     threshold=threshold, warmup_seconds=warmup)


#: One-time costs already paid in this process: ``(backend, device) -> seconds``.
_WARM: dict[tuple[str, str], float] = {}


def warm_up(backend: str, device: str) -> float:
    """Pay ``backend``'s one-time costs (C++ kernel build or load, TorchScript compilation,
    first-call allocations) once per process, outside any timed fit
    (:meth:`~spikebench.backends.base.Backend.warm_up`: a tiny pass of each capability it
    declares). Returns the seconds it took the first time in this process (later: 0)."""
    key = (backend, str(device))
    if key in _WARM:
        return 0.0
    from spikebench.backends import get_backend

    started = time.perf_counter()
    get_backend(backend).warm_up(device)
    _WARM[key] = time.perf_counter() - started
    return _WARM[key]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What a fitted model measured on its fold's test rows (:func:`evaluate_test`)."""

    #: Every metric on the test rows, keyed ``test_<metric>``.
    metrics: dict[str, float]
    #: Cost counters per test sample (:meth:`~spikebench.harness.rules.base.TrainedModel.
    #: activity`: spikes, ACs, MACs, synops, and any a rule adds).
    activity: dict[str, float]
    #: Test inference wall time per slice.
    infer_ms_per_sample: float
    #: The decision threshold the thresholded metrics used (chosen on validation).
    threshold: float


def evaluate_test(model: TrainedModel, view: View, threshold: float = 0.5) -> Evaluation:
    """Test metrics (thresholded ones at ``threshold``, chosen on validation), inference
    time and cost counters of a fitted model (the test rows are read once): the rule's
    counters and, for a feed-forward LIF network, NeuroBench's footprint, connection and
    activation sparsity and dense synaptic operations
    (:mod:`~spikebench.harness.network_metrics`)."""
    from spikebench.harness.metrics import all_metrics
    from spikebench.harness.network_metrics import model_metrics

    test = view.test
    started = time.perf_counter()
    prob = model.predict_proba(test.X)
    infer_ms = 1000 * (time.perf_counter() - started) / max(len(test), 1)
    activity = dict(model.activity(test.X))
    activity.update(model_metrics(model, activity))
    return Evaluation(
        metrics=all_metrics(test.y, prob, test.groups, "test_", threshold=threshold),
        activity=activity, infer_ms_per_sample=infer_ms, threshold=threshold)


def eval_steps(model: TrainedModel, multiples: list[float]) -> list[int]:
    """Inference time steps: the training T and each multiple of it (at least 1)."""
    t = int(getattr(model, "train_steps", 1))
    return sorted({max(1, round(m * t)) for m in multiples} | {t})


def split_sizes(view: View) -> SplitSizes:
    """Patients and slices per split of a view (for results rows)."""
    train, val, test = view.train, view.val, view.test
    return SplitSizes(
        n_train_patients=len(np.unique(train.groups)), n_val_patients=len(np.unique(val.groups)),
        n_test_patients=len(np.unique(test.groups)), n_train_slices=len(train),
        n_val_slices=len(val), n_test_slices=len(test))
