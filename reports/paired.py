"""Paired comparisons of two cells on the same patients.

For cells ``a`` and ``b`` tested on the same patients, the difference ``Δ̂ = θ̂_a − θ̂_b`` of the
run-averaged estimates has ``SE² = V_patients(a − b) + s_a²/R_a + s_b²/R_b``
(:meth:`~spikebench.reports.bootstrap.StudyBootstrap.paired`): the patient term uses both
cells' predictions on the same resampled patients (for ROC-AUC the joint clustered DeLong
covariance of their kernels), so what the cells share cancels; the training terms add, because
the cells train independently. Intervals, two-sided p and the minimum detectable difference
come from Student's t on Satterthwaite degrees of freedom (:mod:`spikebench.reports.wald`).

Two cells whose predictions are identical on every slice of every run are reported as
``identical``: there is no difference to test, and identical is not the same claim as
equivalent.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bootstrap import CONFIDENCE, Cell, StudyBootstrap
from .stats import holm
from .wald import WaldT

POWER = 0.80


def cell_name(cell: Cell) -> str:
    """``("custom", "surrogate")`` → ``custom / surrogate``."""
    return f"{cell[0]} / {cell[1]}"


@dataclass(frozen=True)
class PairedDifference:
    """One paired comparison ``a − b`` (see the module docstring)."""

    a: Cell
    b: Cell
    metric: str
    n_runs: int
    estimate: float
    ci_low: float
    ci_high: float
    se: float
    df: float
    p: float
    identical: bool
    wald: WaldT

    def record(self) -> dict[str, object]:
        return {"metric": f"test_{self.metric}", "a": cell_name(self.a), "b": cell_name(self.b),
                "n_repeats": self.n_runs, "difference": self.estimate,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "se": self.se, "df": self.df,
                "p": self.p, "identical": self.identical}


def paired_difference(sb: StudyBootstrap, a: Cell, b: Cell, metric: str, *,
                      patient_score: str = "max", confidence: float = CONFIDENCE
                      ) -> PairedDifference:
    """The paired comparison of ``metric`` between cells ``a`` and ``b`` (module docstring)."""
    metric = metric.removeprefix("test_")
    n_runs = min(len(sb.runs_of(a)), len(sb.runs_of(b)))
    if sb.identical(a, b):
        w = WaldT(0.0, (0.0, math.inf))
        return PairedDifference(a, b, metric, n_runs, 0.0, 0.0, 0.0, 0.0, math.nan, math.nan,
                                True, w)
    w = sb.paired(a, b, metric, patient_score)
    low, high = w.interval(confidence)
    return PairedDifference(a, b, metric, n_runs, w.estimate, low, high, w.se, w.df,
                            w.p_value(), False, w)


def with_holm(frame: pd.DataFrame, alpha: float, column: str = "p") -> pd.DataFrame:
    """Add ``p_holm`` (Holm over all rows of ``frame``) and ``significant`` (``p_holm < α``)."""
    frame = frame.copy()
    frame["p_holm"] = holm(frame[column].to_numpy(float)) if len(frame) else []
    frame["significant"] = frame["p_holm"] < alpha
    return frame


def pairwise_comparisons(sb: StudyBootstrap, cells: list[Cell], metrics: tuple[str, ...], *,
                         alpha: float = 0.05) -> pd.DataFrame:
    """Exploratory (not pre-specified): every backend pair within a rule and every rule pair
    within a backend, per metric, Holm within each metric."""
    frames = []
    for metric in metrics:
        rows = []
        for ca, cb in itertools.combinations(cells, 2):
            if ca[1] == cb[1]:
                within = f"rule {ca[1]}"
            elif ca[0] == cb[0]:
                within = f"backend {ca[0]}"
            else:
                continue
            rows.append({"within": within, **paired_difference(sb, ca, cb, metric).record()})
        if rows:
            frames.append(with_holm(pd.DataFrame(rows), alpha))
    columns = ["metric", "within", "a", "b", "n_repeats", "difference", "ci_low", "ci_high",
               "se", "p", "p_holm", "significant"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns)


def best_cell(sb: StudyBootstrap, cells: list[Cell], metric: str, *,
              validation: dict[Cell, float], alpha: float = 0.05, higher_is_better: bool = True
              ) -> tuple[Cell | None, bool, pd.DataFrame]:
    """The cell with the best *validation* score (``validation``: the mean ``val_<metric>`` of
    each cell's refits; picking on test would select on the data the test then judges);
    whether it beats *every* other cell significantly on test (paired tests, Holm over those
    comparisons); and those tests. None when no cell has a validation score."""
    finite = {c: v for c, v in validation.items() if c in cells and math.isfinite(v)}
    if not finite:
        return None, False, pd.DataFrame()
    best = (max if higher_is_better else min)(finite, key=finite.__getitem__)
    rows = [paired_difference(sb, best, c, metric).record() for c in cells if c != best]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return best, False, frame
    frame = with_holm(frame.rename(columns={"a": "best", "b": "other"}), alpha)
    wins = frame["significant"] & (np.sign(frame["difference"]) == (1 if higher_is_better
                                                                      else -1))
    return best, bool(wins.all()), frame
