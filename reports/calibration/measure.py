"""A results folder's cohort and cells, as the calibration's model parameters."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from spikebench.reports.load import StudyTables


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)))


def _icc(frame: pd.DataFrame) -> float:
    """Between-patient share of the variance of the negatives' logits (one-way ANOVA)."""
    neg = frame[frame["label"] == 0]
    z = pd.Series(_logit(neg["prob"].to_numpy(dtype=np.float64)), index=neg.index)
    groups = z.groupby(neg["patient_id"])
    k = groups.size()
    if len(k) < 3 or (k > 1).sum() < 3:
        return math.nan
    within = float(groups.var(ddof=1).fillna(0).mul(k - 1).sum() / (k - 1).clip(lower=0).sum())
    n0 = (k.sum() - (k ** 2).sum() / k.sum()) / (len(k) - 1)
    between = float((groups.mean().var(ddof=1) * 1.0) - within / n0)
    total = max(between, 0.0) + within
    return min(max(between, 0.0) / total, 0.95) if total > 0 else math.nan


def measure(tables: StudyTables) -> dict[str, Any] | None:
    """:func:`spikebench.reports.calibration.composition_from_results` (its docstring)."""
    from sklearn.metrics import roc_auc_score

    from spikebench.reports.bootstrap import with_runs

    pred = tables.primary_predictions()
    if pred is None or pred.empty:
        return None
    pred = with_runs(pred)
    snn = pred[pred["backend"] != "reference"]
    pool = snn if not snn.empty else pred
    cells = list(pool.groupby(["backend", "rule"], sort=True))
    first_cell = cells[0][1]
    one_run = first_cell[first_cell["run"] == first_cell["run"].min()]
    per_patient = one_run.groupby("patient_id")["label"].agg(["size", "max", "mean"])
    lesion = per_patient[per_patient["max"] == 1]
    out: dict[str, Any] = {
        "patients": len(per_patient),
        "lesion_free": int((per_patient["max"] == 0).sum()),
        "slices": (float(per_patient["size"].mean()), float(per_patient["size"].std(ddof=0)),
                   int(per_patient["size"].min()), int(per_patient["size"].max())),
        "lesion_fraction": (float(np.clip(lesion["mean"].mean(), 0.02, 0.98))
                            if len(lesion) else 0.3, 5.0),
    }
    sds, aucs, runs, iccs = [], [], [], []
    for _, g in cells:
        per_run = [roc_auc_score(r["label"], r["prob"]) for _, r in g.groupby("run")
                   if r["label"].nunique() == 2]
        if per_run:
            aucs.append(float(np.mean(per_run)))
            runs.append(len(per_run))
        if len(per_run) > 1:
            sds.append(float(np.std(per_run, ddof=1)))
        iccs.append(_icc(g[g["run"] == g["run"].min()]))
    if sds:
        out["sigma_run"] = float(np.median(sds))
    if aucs:
        out["auc"] = float(np.clip(np.median(aucs), 0.55, 0.99))
        out["runs"] = int(min(runs))
    finite = [v for v in iccs if math.isfinite(v)]
    if finite:
        out["icc"] = float(np.median(finite))
    if len(cells) > 1:
        keys = ["run", "patient_id", "slice_idx"]
        a = cells[0][1].set_index(keys)["prob"]
        b = cells[1][1].set_index(keys)["prob"]
        both = pd.concat([a, b], axis=1, join="inner").dropna()
        if len(both) > 10:
            with np.errstate(invalid="ignore", divide="ignore"):  # a constant cell: NaN
                r = float(np.corrcoef(_logit(both.iloc[:, 0].to_numpy()),
                                      _logit(both.iloc[:, 1].to_numpy()))[0, 1])
            if math.isfinite(r):
                out["rho"] = min(max(r, 0.0), 0.95)
    return out
