"""The benchmark's metrics, vectorised over bootstrap replicates by integer sample weights.

A bootstrap replicate that draws patient ``p`` ``k`` times is the same data set as one where
every slice of ``p`` carries weight ``k``. So instead of building 1000 resampled tables, each
metric here takes a weight matrix ``w`` of shape ``(B, n)`` and returns ``B`` values at once.
With ``w = ones((1, n))`` the values equal :mod:`spikebench.harness.metrics` (scikit-learn):

- thresholded at 0.5: ``accuracy``, ``balanced_accuracy`` (plain accuracy when one class is
  present), ``f1`` (0 when undefined), ``mcc`` (0 when undefined);
- ranking: ``roc_auc`` (trapezoidal area, ties count one half) and ``pr_auc`` (average
  precision ``AP = Σ_k (R_k − R_{k−1}) P_k`` over distinct thresholds, no interpolation);
  NaN when only one class is present;
- patient level: a patient's label is 1 when any slice has a lesion, its score the maximum
  slice probability; then the ranking metrics above on patients.

This module re-implements rather than imports the harness metrics because reports read files
only; a test checks both agree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

THRESHOLD = 0.5
THRESHOLDED = ("accuracy", "balanced_accuracy", "f1", "mcc")
RANKING = ("roc_auc", "pr_auc")


def _divide(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def thresholded(name: str, y: np.ndarray, prob: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One thresholded metric for every row of weights ``w`` (shape ``(B, n)``)."""
    pos = np.asarray(y) == 1
    hit = np.asarray(prob) >= THRESHOLD
    tp = w @ (pos & hit).astype(np.float64)
    fn = w @ (pos & ~hit).astype(np.float64)
    fp = w @ (~pos & hit).astype(np.float64)
    tn = w @ (~pos & ~hit).astype(np.float64)
    total = tp + fn + fp + tn
    accuracy = _divide(tp + tn, total, np.nan)
    if name == "accuracy":
        return accuracy
    if name == "balanced_accuracy":
        both = (tp + fn > 0) & (tn + fp > 0)
        balanced = (_divide(tp, tp + fn, 0.0) + _divide(tn, tn + fp, 0.0)) / 2
        return np.where(both, balanced, accuracy)
    if name == "f1":
        return _divide(2 * tp, 2 * tp + fp + fn, 0.0)
    if name == "mcc":
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return _divide(tp * tn - fp * fn, den, 0.0)
    raise ValueError(f"unknown thresholded metric {name!r}; known: {THRESHOLDED}")


def ranking(names: tuple[str, ...], y: np.ndarray, prob: np.ndarray, w: np.ndarray
            ) -> dict[str, np.ndarray]:
    """ROC-AUC and/or average precision for every row of weights ``w`` (shape ``(B, n)``)."""
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    order = np.argsort(-prob, kind="stable")
    p_sorted = prob[order]
    ws = w[:, order]
    pos = (y[order] == 1).astype(np.float64)
    # one point per distinct threshold: the last index of each run of equal scores
    ends = np.flatnonzero(np.r_[np.diff(p_sorted) != 0, True])
    tp = np.cumsum(ws * pos, axis=1)[:, ends]
    fp = np.cumsum(ws, axis=1)[:, ends] - tp
    n_pos, n_neg = tp[:, -1:], fp[:, -1:]
    defined = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0)
    out: dict[str, np.ndarray] = {}
    zero = np.zeros((len(w), 1))
    if "roc_auc" in names:
        tpr = np.hstack([zero, _divide(tp, n_pos, 0.0)])
        fpr = np.hstack([zero, _divide(fp, n_neg, 0.0)])
        auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1)
        out["roc_auc"] = np.where(defined, auc, np.nan)
    if "pr_auc" in names:
        recall = np.hstack([zero, _divide(tp, n_pos, 0.0)])
        precision = _divide(tp, tp + fp, 0.0)
        ap = np.sum(np.diff(recall, axis=1) * precision, axis=1)
        out["pr_auc"] = np.where(defined, ap, np.nan)
    return out


def curve_points(y: np.ndarray, prob: np.ndarray) -> dict[str, np.ndarray]:
    """ROC points (``fpr``, ``tpr`` from (0, 0)) and precision–recall points (``recall``,
    ``precision``, one per distinct threshold, highest threshold first) of unweighted data."""
    y = np.asarray(y)
    prob = np.asarray(prob, dtype=np.float64)
    order = np.argsort(-prob, kind="stable")
    ends = np.flatnonzero(np.r_[np.diff(prob[order]) != 0, True])
    tp = np.cumsum(y[order] == 1)[ends].astype(np.float64)
    fp = (ends + 1) - tp
    n_pos, n_neg = max(tp[-1], 1.0), max(fp[-1], 1.0)
    return {"fpr": np.r_[0.0, fp / n_neg], "tpr": np.r_[0.0, tp / n_pos],
            "recall": tp / n_pos, "precision": tp / (tp + fp)}


def patient_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per patient (sorted by id): ``label`` = any lesion slice, ``prob`` = max slice prob."""
    ids, inverse = np.unique(frame["patient_id"].to_numpy().astype(str), return_inverse=True)
    label = np.zeros(len(ids), dtype=np.int64)
    prob = np.full(len(ids), -np.inf)
    np.maximum.at(label, inverse, frame["label"].to_numpy().astype(np.int64))
    np.maximum.at(prob, inverse, frame["prob"].to_numpy(dtype=np.float64))
    return pd.DataFrame({"patient_id": ids, "label": label, "prob": prob})


def weighted_metrics(metrics: tuple[str, ...], slices: pd.DataFrame, patient_weights: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Every metric in ``metrics`` (names of :data:`spikebench.harness.results.METRICS`) of one
    model's test predictions ``slices`` (columns patient_id, label, prob), for each row of
    ``patient_weights`` (shape ``(B, n_patients)``, patients sorted by id)."""
    patients = patient_table(slices)
    position = np.searchsorted(patients["patient_id"].to_numpy(),
                               slices["patient_id"].to_numpy().astype(str))
    slice_weights = patient_weights[:, position]
    y = slices["label"].to_numpy()
    prob = slices["prob"].to_numpy(dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    slice_rank = tuple(m for m in metrics if m in RANKING)
    if slice_rank:
        out.update(ranking(slice_rank, y, prob, slice_weights))
    for m in metrics:
        if m in THRESHOLDED:
            out[m] = thresholded(m, y, prob, slice_weights)
    patient_rank = tuple(m.removeprefix("patient_") for m in metrics if m.startswith("patient_"))
    if patient_rank:
        values = ranking(patient_rank, patients["label"].to_numpy(),
                         patients["prob"].to_numpy(dtype=np.float64), patient_weights)
        out.update({f"patient_{k}": v for k, v in values.items()})
    unknown = set(metrics) - set(out)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}")
    return out


def point_metrics(metrics: tuple[str, ...], slices: pd.DataFrame) -> dict[str, float]:
    """The metrics of ``slices`` without resampling (every patient weight 1)."""
    n = slices["patient_id"].nunique()
    values = weighted_metrics(metrics, slices, np.ones((1, n)))
    return {k: float(v[0]) for k, v in values.items()}
