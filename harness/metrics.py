"""Classification metrics at slice and patient level, from probabilities ``P(lesion)``.

Slice level: thresholded at 0.5 (``accuracy``, ``balanced_accuracy``, ``f1``, ``mcc``) or
ranking-based (``roc_auc``, ``pr_auc`` = average precision). Patient level: a patient's score is
its maximum slice probability and its label is 1 when any slice has a lesion
(``patient_roc_auc``, ``patient_pr_auc``). A metric that is undefined on the data (one class
present) is NaN, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Default decision threshold for the thresholded metrics (the one definition in the package).
THRESHOLD = 0.5
#: Slice-level metrics (thresholded at :data:`THRESHOLD` for accuracy, balanced accuracy, F1, MCC).
SLICE_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "mcc")
#: Patient-level metrics: a patient's score is the maximum slice probability.
PATIENT_METRICS = ("patient_roc_auc", "patient_pr_auc")
#: Every metric name, in table order (the spec, results, summaries and exports use this one).
METRICS = SLICE_METRICS + PATIENT_METRICS


def validation_value(value: float | None) -> float:
    """A validation score as an early-stopping / selection criterion: NaN or None (metric
    undefined on this validation set) ranks below every real value."""
    return -math.inf if value is None or math.isnan(value) else float(value)


def _thresholded(fn: Callable[..., float]) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(y: np.ndarray, prob: np.ndarray) -> float:
        return float(fn(y, (prob >= THRESHOLD).astype(int)))

    return metric


def _ranking(fn: Callable[..., float]) -> Callable[[np.ndarray, np.ndarray], float]:
    def metric(y: np.ndarray, prob: np.ndarray) -> float:
        if len(np.unique(y)) < 2:
            return math.nan
        return float(fn(y, prob))

    return metric


def _slice_metrics() -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    from sklearn import metrics as m

    return {
        "accuracy": _thresholded(m.accuracy_score),
        "balanced_accuracy": _thresholded(
            lambda y, p: m.balanced_accuracy_score(y, p) if len(np.unique(y)) > 1
            else m.accuracy_score(y, p)
        ),
        "roc_auc": _ranking(m.roc_auc_score),
        "pr_auc": _ranking(m.average_precision_score),
        "f1": _thresholded(lambda y, p: m.f1_score(y, p, zero_division=0.0)),
        "mcc": _thresholded(m.matthews_corrcoef),
    }


def patient_scores(
    y: np.ndarray, prob: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per patient: label = any lesion slice, score = max slice probability (sorted by id)."""
    import pandas as pd

    frame = pd.DataFrame({"g": np.asarray(groups), "y": np.asarray(y), "p": np.asarray(prob)})
    agg = frame.groupby("g", sort=True).agg(y=("y", "max"), p=("p", "max"))
    return agg["y"].to_numpy(), agg["p"].to_numpy()


def score(name: str, y: np.ndarray, prob: np.ndarray, groups: np.ndarray | None = None) -> float:
    """One metric by name (``patient_*`` names need ``groups``)."""
    y, prob = np.asarray(y), np.asarray(prob, dtype=np.float64)
    if name.startswith("patient_"):
        if groups is None:
            raise ValueError(f"{name} needs patient groups")
        y, prob = patient_scores(y, prob, groups)
        name = name.removeprefix("patient_")
    fns = _slice_metrics()
    if name not in fns:
        raise ValueError(
            f"unknown metric {name!r}; known: {sorted(fns)} and patient_roc_auc/pr_auc"
        )
    return fns[name](y, prob)


def all_metrics(
    y: np.ndarray, prob: np.ndarray, groups: np.ndarray, prefix: str = ""
) -> dict[str, float]:
    """Every metric of :data:`METRICS`, keys ``prefix + name``."""
    return {prefix + name: score(name, y, prob, groups) for name in METRICS}
