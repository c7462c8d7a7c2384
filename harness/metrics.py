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
from typing import Any, Literal, get_args

import numpy as np

#: Default decision threshold for the thresholded metrics (the one definition in the package).
THRESHOLD = 0.5
#: A slice-level metric (thresholded at :data:`THRESHOLD` for accuracy, balanced accuracy, F1,
#: MCC).
SliceMetric = Literal["accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "mcc"]
#: A patient-level metric: a patient's score is the maximum slice probability.
PatientMetric = Literal["patient_roc_auc", "patient_pr_auc"]
#: Any metric name (the spec's ``[study].metric`` and ``[analysis].primary_metric``).
MetricName = Literal[SliceMetric, PatientMetric]
SLICE_METRICS: tuple[SliceMetric, ...] = get_args(SliceMetric)
PATIENT_METRICS: tuple[PatientMetric, ...] = get_args(PatientMetric)
#: Every metric name, in table order (the spec, results, summaries and exports use this one).
METRICS: tuple[MetricName, ...] = SLICE_METRICS + PATIENT_METRICS


def validation_value(value: float | None) -> float:
    """A validation score as an early-stopping / selection criterion: NaN or None (metric
    undefined on this validation set) ranks below every real value."""
    return -math.inf if value is None or math.isnan(value) else float(value)


def _confusion(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of 0/1 labels and 0/1 predictions."""
    pos, hit = y == 1, pred == 1
    tp = int(np.count_nonzero(pos & hit))
    fp = int(np.count_nonzero(hit)) - tp
    fn = int(np.count_nonzero(pos)) - tp
    return tp, fp, fn, len(y) - tp - fp - fn


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of correct predictions."""
    return float(np.count_nonzero(y == pred)) / len(y) if len(y) else math.nan


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean of sensitivity and specificity; the accuracy when ``y`` holds one class."""
    tp, fp, fn, tn = _confusion(y, pred)
    if tp + fn == 0 or tn + fp == 0:
        return accuracy(y, pred)
    return (tp / (tp + fn) + tn / (tn + fp)) / 2.0


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of the positive class (0 when it is undefined, as scikit-learn's zero_division=0)."""
    tp, fp, fn, _ = _confusion(y, pred)
    return 2.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def mcc(y: np.ndarray, pred: np.ndarray) -> float:
    """Matthews correlation coefficient (0 when a margin of the confusion matrix is empty)."""
    tp, fp, fn, tn = (float(v) for v in _confusion(y, pred))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def roc_auc(y: np.ndarray, prob: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney probability that a positive outranks a
    negative, ties counted one half (average ranks)."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos = int(np.count_nonzero(pos))
    n_neg = len(y) - n_pos
    ranks = rankdata(prob)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, prob: np.ndarray) -> float:
    """PR-AUC as average precision: ``Σ_k (R_k − R_{k−1}) P_k`` over the distinct scores in
    decreasing order (tied scores form one threshold), scikit-learn's definition."""
    order = np.argsort(-prob, kind="stable")
    score, hits = prob[order], (y[order] == 1).astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # end of each tie group
    tps = np.cumsum(hits)[last]
    precision = tps / (last + 1.0)
    recall_gain = np.diff(np.r_[0.0, tps]) / tps[-1]
    return float(np.sum(recall_gain * precision))


def _thresholded(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., float]:
    def metric(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> float:
        return float(fn(y, (prob >= threshold).astype(np.int64)))

    return metric


def _ranking(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., float]:
    def metric(y: np.ndarray, prob: np.ndarray, threshold: float = THRESHOLD) -> float:
        if not (np.any(y == 1) and np.any(y == 0)):
            return math.nan
        if not np.all(np.isfinite(prob)):
            raise ValueError("probabilities contain NaN or infinity: a ranking metric is "
                             "undefined on them")
        return float(fn(y, prob))

    return metric


#: The slice-level metrics by name: own NumPy implementations of scikit-learn's definitions
#: for 0/1 labels (scikit-learn's input validation cost more than the metric itself in the
#: active rule's per-round scoring); tests/harness/test_metrics.py holds scikit-learn as the
#: oracle.
_SLICE_FNS: dict[str, Callable[..., float]] = {
    "accuracy": _thresholded(accuracy),
    "balanced_accuracy": _thresholded(balanced_accuracy),
    "roc_auc": _ranking(roc_auc),
    "pr_auc": _ranking(average_precision),
    "f1": _thresholded(f1),
    "mcc": _thresholded(mcc),
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
    y, prob = _binary_labels(y), np.asarray(prob, dtype=np.float64).ravel()
    if name.startswith("patient_"):
        if groups is None:
            raise ValueError(f"{name} needs patient groups")
        y, prob = patient_scores(y, prob, groups)
        name = name.removeprefix("patient_")
    fns = _SLICE_FNS
    if name not in fns:
        raise ValueError(
            f"unknown metric {name!r}; known: {sorted(fns)} and patient_roc_auc/pr_auc"
        )
    return fns[name](y, prob, threshold)


def _binary_labels(y: Any) -> np.ndarray:
    """``y`` as a flat int64 array of 0/1 labels (a ValueError names any other value)."""
    raw = np.asarray(y).ravel()
    bad = ~np.isin(raw, (0, 1))
    if bad.any():
        raise ValueError(f"labels must be 0 or 1, got {raw[bad][:5].tolist()}")
    return raw.astype(np.int64)


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
