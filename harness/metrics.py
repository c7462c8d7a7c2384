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


def _thresholded(fn: Callable[..., float]) -> Callable[..., float]:
    def metric(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> float:
        return float(fn(y, (prob >= threshold).astype(int)))

    return metric


def _ranking(fn: Callable[..., float]) -> Callable[..., float]:
    def metric(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> float:
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


def score(name: str, y: np.ndarray, prob: np.ndarray, groups: np.ndarray | None = None, *,
          threshold: float = THRESHOLD) -> float:
    """One metric by name (``patient_*`` names need ``groups``); thresholded metrics call a
    slice positive when ``prob >= threshold``."""
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
    return fns[name](y, prob, threshold)


def all_metrics(
    y: np.ndarray, prob: np.ndarray, groups: np.ndarray, prefix: str = "", *,
    threshold: float = THRESHOLD,
) -> dict[str, float]:
    """Every metric of :data:`METRICS`, keys ``prefix + name``."""
    return {prefix + name: score(name, y, prob, groups, threshold=threshold)
            for name in METRICS}


#: ``[study].threshold`` choices: how the decision threshold of the thresholded metrics is set.
THRESHOLD_RULES = ("youden", "f1", "fixed")


def choose_threshold(rule: str, y: np.ndarray, prob: np.ndarray) -> float:
    """The decision threshold chosen on *validation* slices: ``youden`` maximises
    sensitivity + specificity − 1 over the ROC curve, ``f1`` maximises F1 over the PR curve,
    ``fixed`` is :data:`THRESHOLD`. Falls back to :data:`THRESHOLD` when validation holds one
    class only or the curve gives no finite threshold."""
    y, prob = np.asarray(y), np.asarray(prob, dtype=np.float64)
    if rule == "fixed" or len(np.unique(y)) < 2 or not np.all(np.isfinite(prob)):
        return THRESHOLD
    from sklearn.metrics import precision_recall_curve, roc_curve

    if rule == "youden":
        fpr, tpr, thresholds = roc_curve(y, prob)
        gain = tpr - fpr
    elif rule == "f1":
        precision, recall, thresholds = precision_recall_curve(y, prob)
        precision, recall = precision[:-1], recall[:-1]
        gain = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    else:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    finite = np.isfinite(thresholds)
    if not finite.any():
        return THRESHOLD
    best = int(np.argmax(np.where(finite, gain, -np.inf)))
    return float(min(max(thresholds[best], 0.0), 1.0))
