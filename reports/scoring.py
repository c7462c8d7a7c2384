"""The benchmark's metrics, vectorised over bootstrap replicates by patient weights.

A bootstrap replicate that draws patient ``p`` ``k`` times is the same data set as one where
every slice of ``p`` carries weight ``k``. So instead of building 2000 resampled tables, each
metric here takes a weight matrix ``w`` of shape ``(B, n)`` and returns ``B`` values at once
(a test checks every metric against scikit-learn on the materialised resample). With
``w = ones((1, n))`` the values equal :mod:`spikebench.harness.metrics`:

- thresholded at the row's decision threshold ``t`` (chosen on validation; default
  :data:`spikebench.harness.metrics.THRESHOLD`), a slice is positive when ``prob >= t``:
  ``accuracy``, ``balanced_accuracy`` (plain accuracy when one class is present), ``f1`` (0 when
  undefined), ``mcc`` (0 when undefined);
- ranking: ``roc_auc`` (trapezoidal area, ties count one half) and ``pr_auc`` (average
  precision ``AP = Σ_k (R_k − R_{k−1}) P_k`` over distinct thresholds, no interpolation);
  NaN when only one class is present;
- patient level: a patient's label is 1 when any slice has a lesion; its score is the maximum
  slice probability (``patient_score="max"``, the harness's definition) or the mean of its
  ``top_k`` highest slice probabilities (``"topk_mean"``, a sensitivity analysis); then the
  ranking metrics above on patients.

This module re-implements rather than imports the harness metrics because reports read files
only; a test checks both agree. The threshold itself has one definition, the harness's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikebench.harness.metrics import THRESHOLD

THRESHOLDED = ("accuracy", "balanced_accuracy", "f1", "mcc")
RANKING = ("roc_auc", "pr_auc")
PATIENT_SCORES = ("max", "topk_mean")
#: Largest ``B × n`` block a ranking metric materialises at once (memory bound, ~64 MB).
_BLOCK = 8_000_000

__all__ = [
    "PATIENT_SCORES",
    "RANKING",
    "THRESHOLD",
    "THRESHOLDED",
    "curve_points",
    "patient_table",
    "point_metrics",
    "ranking",
    "thresholded",
    "weighted_metrics",
]


def _divide(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _group_sums(w: np.ndarray, groups: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """``w @ (per-group sums of values)``: ``values`` has one row per item (``(n,)`` or
    ``(n, k)``); ``groups`` maps items to the columns of ``w`` (None: item ``i`` is column
    ``i``)."""
    if groups is None:
        return w @ values
    summed = np.zeros((w.shape[1], *values.shape[1:]))
    np.add.at(summed, groups, values)
    return w @ summed


def thresholded(name: str, y: np.ndarray, prob: np.ndarray, w: np.ndarray,
                threshold: float | np.ndarray = THRESHOLD, groups: np.ndarray | None = None
                ) -> np.ndarray:
    """One thresholded metric for every row of weights ``w`` (shape ``(B, G)``): a slice is
    called positive when ``prob >= threshold`` (a scalar or one value per slice, the threshold
    of the model that predicted it); ``groups`` maps slices to the columns of ``w``."""
    pos = np.asarray(y) == 1
    hit = np.asarray(prob, dtype=np.float64) >= np.asarray(threshold, dtype=np.float64)
    cells = np.stack([pos & hit, pos & ~hit, ~pos & hit, ~pos & ~hit], axis=1).astype(float)
    tp, fn, fp, tn = _group_sums(w, groups, cells).T
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


def _cumulative(groups: np.ndarray, first: np.ndarray, n_groups: int, k: int) -> np.ndarray:
    """``out[g, j]`` = items of group ``g`` whose ``first`` index is ``<= j`` (shape (G, k))."""
    out = np.zeros((n_groups, k + 1))
    np.add.at(out, (groups, first), 1.0)
    return np.cumsum(out, axis=1)[:, :k]


def ranking(names: tuple[str, ...], y: np.ndarray, prob: np.ndarray, w: np.ndarray,
            groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ROC-AUC and/or average precision for every row of weights ``w`` (shape ``(B, G)``;
    ``groups`` maps items to its columns, None: one column per item).

    With ``s_1 > … > s_K`` the distinct scores of positive items, weighted counts ``TP_k``
    (positives ≥ ``s_k``), ``A_k`` (items ≥ ``s_k``), ``N≥_k`` / ``N>_k`` (negatives ≥ / >
    ``s_k``), ``N⁺``, ``N⁻`` the weighted class totals and ``ΔTP_k = TP_k − TP_{k−1}``:

    - ``AP = Σ_k ΔTP_k · (TP_k / A_k) / N⁺`` (average precision, no interpolation);
    - ``AUC = Σ_k ΔTP_k · (N⁻ − (N≥_k + N>_k) / 2) / (N⁺ N⁻)`` (Mann–Whitney, ties ½).

    Each count is ``w @ C`` for a per-group count matrix ``C`` (G × K), so the work per
    replicate is one matrix product, not a sort; NaN when a class has weight 0."""
    y = np.asarray(y) == 1
    prob = np.asarray(prob, dtype=np.float64)
    g = np.arange(len(prob)) if groups is None else np.asarray(groups)
    n_groups = w.shape[1]
    thresholds = np.unique(prob[y])  # ascending; s_k = thresholds[K - 1 - k]
    k = len(thresholds)
    at_least = k - np.searchsorted(thresholds, prob, side="right")  # first k with s_k <= p
    above = k - np.searchsorted(thresholds, prob, side="left")  # first k with s_k < p
    tp_c = _cumulative(g[y], at_least[y], n_groups, k)
    all_c = _cumulative(g, at_least, n_groups, k)
    neg_gt_c = _cumulative(g[~y], above[~y], n_groups, k)
    pos_n = np.bincount(g[y], minlength=n_groups).astype(float)
    neg_n = np.bincount(g[~y], minlength=n_groups).astype(float)
    out: dict[str, list[np.ndarray]] = {m: [] for m in names}
    step = max(1, _BLOCK // max(1, 4 * k))
    for i in range(0, len(w), step):
        wb = w[i:i + step]
        tp, total, neg_gt = wb @ tp_c, wb @ all_c, wb @ neg_gt_c
        n_pos, n_neg = wb @ pos_n, wb @ neg_n
        gain = np.diff(tp, axis=1, prepend=0.0)
        defined = (n_pos > 0) & (n_neg > 0)
        if "pr_auc" in names:
            ap = _divide(np.sum(gain * _divide(tp, total, 0.0), axis=1), n_pos, np.nan)
            out["pr_auc"].append(np.where(defined, ap, np.nan))
        if "roc_auc" in names:
            below = n_neg[:, None] - ((total - tp) + neg_gt) / 2
            auc = _divide(np.sum(gain * below, axis=1), n_pos * n_neg, np.nan)
            out["roc_auc"].append(np.where(defined, auc, np.nan))
    return {m: np.concatenate(v) if v else np.empty(0) for m, v in out.items()}


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


def patient_table(frame: pd.DataFrame, patient_score: str = "max", top_k: int = 3
                  ) -> pd.DataFrame:
    """Per patient (sorted by id): ``label`` = any lesion slice; ``prob`` = the maximum slice
    probability (``"max"``) or the mean of the ``top_k`` highest (``"topk_mean"``; all slices
    when the patient has fewer)."""
    if patient_score not in PATIENT_SCORES:
        raise ValueError(f"patient_score must be one of {PATIENT_SCORES}, got {patient_score!r}")
    ids, inverse = np.unique(frame["patient_id"].to_numpy().astype(str), return_inverse=True)
    label = np.zeros(len(ids), dtype=np.int64)
    np.maximum.at(label, inverse, frame["label"].to_numpy().astype(np.int64))
    prob = frame["prob"].to_numpy(dtype=np.float64)
    if patient_score == "max" or top_k <= 1:
        score = np.full(len(ids), -np.inf)
        np.maximum.at(score, inverse, prob)
    else:
        # rank slices within a patient by decreasing probability, keep the first top_k
        order = np.lexsort((-prob, inverse))
        first = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        keep = order[rank < top_k]
        total = np.bincount(inverse[keep], weights=prob[keep], minlength=len(ids))
        score = total / np.bincount(inverse[keep], minlength=len(ids))
    return pd.DataFrame({"patient_id": ids, "label": label, "prob": score})


def weighted_metrics(metrics: tuple[str, ...], slices: pd.DataFrame, patient_weights: np.ndarray,
                     *, patient_score: str = "max", top_k: int = 3) -> dict[str, np.ndarray]:
    """Every metric in ``metrics`` (names of :data:`spikebench.harness.results.METRICS`) of one
    model's test predictions ``slices`` (columns patient_id, label, prob, optional threshold)
    for each row of ``patient_weights`` (shape ``(B, n_patients)``, patients sorted by id)."""
    patients = patient_table(slices, patient_score, top_k)
    position = np.searchsorted(patients["patient_id"].to_numpy(),
                               slices["patient_id"].to_numpy().astype(str))
    y = slices["label"].to_numpy()
    prob = slices["prob"].to_numpy(dtype=np.float64)
    threshold = (slices["threshold"].to_numpy(dtype=np.float64) if "threshold" in slices
                 else THRESHOLD)
    out: dict[str, np.ndarray] = {}
    slice_rank = tuple(m for m in metrics if m in RANKING)
    if slice_rank:
        out.update(ranking(slice_rank, y, prob, patient_weights, position))
    for m in metrics:
        if m in THRESHOLDED:
            out[m] = thresholded(m, y, prob, patient_weights, threshold, position)
    patient_rank = tuple(m.removeprefix("patient_") for m in metrics if m.startswith("patient_"))
    if patient_rank:
        values = ranking(patient_rank, patients["label"].to_numpy(),
                         patients["prob"].to_numpy(dtype=np.float64), patient_weights)
        out.update({f"patient_{k}": v for k, v in values.items()})
    unknown = set(metrics) - set(out)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}")
    return out


def point_metrics(metrics: tuple[str, ...], slices: pd.DataFrame, *, patient_score: str = "max",
                  top_k: int = 3) -> dict[str, float]:
    """The metrics of ``slices`` without resampling (every patient weight 1)."""
    n = slices["patient_id"].nunique()
    values = weighted_metrics(metrics, slices, np.ones((1, n)), patient_score=patient_score,
                              top_k=top_k)
    return {k: float(v[0]) for k, v in values.items()}
