"""Paired comparisons of two cells on the same patients, by the shared patient bootstrap.

For cells ``a`` and ``b`` and the repeats both have, replicate ``b`` of the difference is
``Δ*_b = θ*_a,b − θ*_b,b`` where both two-level replicates use the *same* patient resample
``w_b`` and the *same* repeat resample ``v_b`` (:mod:`spikebench.reports.bootstrap`): the pairing
on patients and on training runs cancels what the cells share. The estimate is
``Δ̂ = θ̂_a − θ̂_b``.

- interval: percentile interval of ``Δ*`` (95 %, or ``1 − 2α`` for equivalence);
- two-sided p: ``p = min(1, 2 · min((1 + #{Δ* ≤ 0}) / (B + 1), (1 + #{Δ* ≥ 0}) / (B + 1)))``,
  the smallest level at which the percentile interval excludes 0 (identical cells: ``p = 1``);
- equivalence (TOST, Schuirmann 1987) with margin ``δ``: ``p = max(p₋, p₊)``,
  ``p₋ = (1 + #{Δ* ≤ −δ}) / (B + 1)``, ``p₊ = (1 + #{Δ* ≥ δ}) / (B + 1)``; equivalent when
  ``p < α``, i.e. the ``1 − 2α`` interval lies inside ``(−δ, δ)``;
- minimum detectable difference at power ``1 − β`` (two-sided level ``α``): under the null the
  difference is centred at 0 with the bootstrap spread ``SE = sd(Δ*)``, so
  ``MDD = (z_{1−α/2} + z_{1−β}) · SE``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bootstrap import Cell, StudyBootstrap, percentile_interval
from .stats import holm

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
    n_repeats: int
    estimate: float
    ci_low: float
    ci_high: float
    se: float
    p: float
    replicates: np.ndarray

    def record(self) -> dict[str, object]:
        return {"metric": f"test_{self.metric}", "a": cell_name(self.a), "b": cell_name(self.b),
                "n_repeats": self.n_repeats, "difference": self.estimate,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "se": self.se, "p": self.p}


def bootstrap_p(diff: np.ndarray) -> float:
    """Two-sided bootstrap p of ``Δ = 0`` from the replicates (module docstring)."""
    d = diff[np.isfinite(diff)]
    if d.size == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    low = (1 + np.sum(d <= 0)) / (d.size + 1)
    high = (1 + np.sum(d >= 0)) / (d.size + 1)
    return float(min(1.0, 2 * min(low, high)))


def tost_p(diff: np.ndarray, margin: float) -> float:
    """Bootstrap TOST p of ``|Δ| >= margin`` (small p: equivalent within ``margin``)."""
    d = diff[np.isfinite(diff)]
    if d.size == 0:
        return math.nan
    lower = (1 + np.sum(d <= -margin)) / (d.size + 1)
    upper = (1 + np.sum(d >= margin)) / (d.size + 1)
    return float(max(lower, upper))


def minimum_detectable_difference(se: float, alpha: float, power: float = POWER) -> float:
    """``(z_{1−α/2} + z_{power}) · SE``: the smallest true difference a two-sided level-``α``
    test detects with probability ``power`` when the estimate's standard error is ``SE``."""
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def common_repeats(sb: StudyBootstrap, a: Cell, b: Cell, metric: str,
                   patient_score: str = "max") -> list[int]:
    """Repeats where both cells have a finite metric (the pairs of a paired comparison)."""
    pa, _ = sb.per_repeat(a, metric, patient_score)
    pb, _ = sb.per_repeat(b, metric, patient_score)
    keep = np.isfinite(pa) & np.isfinite(pb)
    return [int(r) for r in sb.resamples.repeats[keep]]


def paired_difference(sb: StudyBootstrap, a: Cell, b: Cell, metric: str, *,
                      patient_score: str = "max", confidence: float = 0.95
                      ) -> PairedDifference:
    """The paired patient-bootstrap comparison of ``metric`` between cells ``a`` and ``b``."""
    metric = metric.removeprefix("test_")
    repeats = common_repeats(sb, a, b, metric, patient_score)
    if not repeats:
        empty = np.full(sb.resamples.n_bootstrap, np.nan)
        return PairedDifference(a, b, metric, 0, math.nan, math.nan, math.nan, math.nan,
                                math.nan, empty)
    diff = (sb.replicates(a, metric, patient_score, repeats)
            - sb.replicates(b, metric, patient_score, repeats))
    estimate = (sb.estimate(a, metric, patient_score, repeats)
                - sb.estimate(b, metric, patient_score, repeats))
    low, high = percentile_interval(diff, confidence)
    finite = diff[np.isfinite(diff)]
    se = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return PairedDifference(a, b, metric, len(repeats), float(estimate), low, high, se,
                            bootstrap_p(diff), diff)


def with_holm(frame: pd.DataFrame, alpha: float, column: str = "p") -> pd.DataFrame:
    """Add ``p_holm`` (Holm over all rows of ``frame``) and ``significant`` (``p_holm < α``)."""
    frame = frame.copy()
    frame["p_holm"] = holm(frame[column].to_numpy(float)) if len(frame) else []
    frame["significant"] = frame["p_holm"] < alpha
    return frame


def pairwise_comparisons(sb: StudyBootstrap, cells: list[Cell], metrics: tuple[str, ...], *,
                         alpha: float = 0.05) -> pd.DataFrame:
    """Exploratory (not pre-specified): every backend pair within a rule and every rule pair
    within a backend, per metric, paired patient bootstrap, Holm within each metric."""
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
    whether it beats *every* other cell significantly on test (paired patient bootstrap, Holm
    over those comparisons); and those tests. None when no cell has a validation score."""
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
