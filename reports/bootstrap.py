"""Patient-level bootstrap of every cell's test metrics, with one resample shared by all cells.

Slices of one patient are correlated, so the unit that is resampled is the patient, never the
slice. Every repeat of a holdout study tests the *same* sealed patients, so drawing a separate
resample per repeat and averaging (what this module once did) treats one cohort as six and gives
intervals ~2.3× too narrow. The scheme now (a test re-implements it naively):

1. **Units.** A cell's predictions at the trained number of time steps are split into training
   *runs*: one run per (repeat, refit) pair (``[split].refit_seeds`` refits each fold's tuned
   configuration with several seeds; a run is one seed's pass over the protocol's folds).
   Under ``nested-cv`` a run's folds are pooled into one out-of-fold prediction set (every
   patient once, each slice thresholded at its own fold's threshold); under ``holdout`` and
   ``repeated-splits`` a run's metric is the mean over its folds (usually one). Below,
   "repeat" means run.
2. **One resample plan per study** (:func:`draw_resamples`): for replicate ``b`` a vector of
   patient multiplicities ``w_b`` (``n`` draws with replacement from the ``n`` test patients of
   the study, ``numpy.random.default_rng([seed, 0]).multinomial``) and a vector of repeat
   multiplicities ``v_b`` (``R`` draws from the ``R`` repeats, ``default_rng([seed, 1])``). Both
   are shared by every cell, repeat and fold: cells are compared on the same resamples (paired),
   and a patient drawn ``k`` times counts ``k`` times in every repeat that tested it.
3. **Per-repeat replicates** ``m_r(w_b)``: the metric of repeat ``r`` on its slices weighted by
   their patient's multiplicity (:func:`spikebench.reports.scoring.weighted_metrics`).
4. **Two-level replicate** of the cell: ``θ*_b = Σ_r v_br m_r(w_b) / Σ_r v_br`` (repeats whose
   value is NaN, e.g. one class drawn, or that the cell lacks, get weight 0). The point estimate
   is ``θ̂ = mean_r m_r(1)``.
5. **Interval**: the 2.5th / 97.5th percentiles of ``θ*_b``.

**Estimand.** ``θ = E_seed,split[ metric of the cell's training procedure on the patient
population ]``: the expected test metric of the procedure, averaged over training randomness
(seeds, and splits where the scheme varies them), for patients like the study's. Its estimate
varies with *which patients* were sampled (level 1, shared by all repeats because they share the
cohort) and with *which training runs* were made (level 2, the repeat resample). Both sources are
in the interval; the ± std column of the tables is the training spread alone.

**Floor (shared cohorts).** Under ``holdout`` and ``nested-cv`` every repeat tests the same
patients, so averaging ``R`` training runs cannot tell us more about the *patient population*
than one run does. The interval is therefore widened (about its midpoint, then shifted inside
the metric's range) to at least the width of the widest single-repeat interval computed from the
same ``w_b``. Under ``repeated-splits`` the repeats test different patients and the average
legitimately covers more of them, so no floor applies.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd

from .scoring import weighted_metrics

CONFIDENCE = 0.95
#: Schemes whose repeats all test the same patients (the interval floor applies).
SHARED_COHORT = ("holdout", "nested-cv")

Cell = tuple[str, str]


@dataclass(frozen=True)
class Resamples:
    """One resample plan: ``patient_weights[b, i]`` = times patient ``patients[i]`` is drawn in
    replicate ``b``; ``repeat_weights[b, j]`` = times repeat ``repeats[j]`` is drawn."""

    patients: np.ndarray
    repeats: np.ndarray
    patient_weights: np.ndarray
    repeat_weights: np.ndarray

    @property
    def n_bootstrap(self) -> int:
        return int(self.patient_weights.shape[0])


def draw_resamples(patients: Iterable[str], repeats: Iterable[int], *, n_bootstrap: int,
                   seed: int) -> Resamples:
    """The shared plan of step 2: multinomial multiplicities of the (sorted, unique) patients and
    repeats, ``n_bootstrap`` replicates, from ``default_rng([seed, 0])`` / ``([seed, 1])``."""
    ids = np.unique(np.asarray(list(patients)).astype(str))
    reps = np.unique(np.asarray(list(repeats), dtype=np.int64))
    pw = np.random.default_rng([seed, 0]).multinomial(
        len(ids), np.full(len(ids), 1 / max(len(ids), 1)), size=n_bootstrap).astype(np.float64)
    rw = np.random.default_rng([seed, 1]).multinomial(
        len(reps), np.full(len(reps), 1 / max(len(reps), 1)), size=n_bootstrap).astype(
        np.float64)
    return Resamples(ids, reps, pw, rw)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE
                        ) -> tuple[float, float]:
    """The percentile interval of the finite replicates (NaN, NaN when there are none)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def combine_repeats(per_repeat: np.ndarray, repeat_weights: np.ndarray) -> np.ndarray:
    """Step 4: ``θ*_b = Σ_r v_br m_rb / Σ_r v_br`` over finite ``m_rb`` (``per_repeat`` has shape
    ``(R, B)``, ``repeat_weights`` ``(B, R)``); NaN where no drawn repeat has a value."""
    values = per_repeat.T
    ok = np.isfinite(values)
    weight = np.where(ok, repeat_weights, 0.0)
    total = weight.sum(axis=1)
    weighted = (np.where(ok, values, 0.0) * weight).sum(axis=1)
    out = np.full(len(total), np.nan)
    np.divide(weighted, total, out=out, where=total > 0)
    return out


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take (MCC ∈ [−1, 1], every other metric ∈ [0, 1])."""
    return (-1.0, 1.0) if metric.removeprefix("test_") == "mcc" else (0.0, 1.0)


def floor_interval(interval: tuple[float, float], min_width: float,
                   bounds: tuple[float, float]) -> tuple[float, float]:
    """Widen ``interval`` about its midpoint to ``min_width`` when narrower, then shift it inside
    ``bounds`` (the width is kept: ``min_width`` never exceeds the range)."""
    low, high = interval
    if not (np.isfinite(low) and np.isfinite(min_width)) or high - low >= min_width:
        return interval
    mid = (low + high) / 2
    low, high = mid - min_width / 2, mid + min_width / 2
    shift = max(bounds[0] - low, 0.0) - max(high - bounds[1], 0.0)
    return float(low + shift), float(high + shift)


def with_runs(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with a ``run`` column: ``repeat × R + refit`` (``R`` the most refits of
    any fold), so each (repeat, refit) pair is one training run; without a ``refit`` column
    (older folders) a run is a repeat."""
    refit = (predictions["refit"].astype(np.int64) if "refit" in predictions
             else pd.Series(0, index=predictions.index, dtype=np.int64))
    width = int(refit.max()) + 1 if len(refit) else 1
    return predictions.assign(run=predictions["repeat"].astype(np.int64) * width + refit)


@dataclass
class StudyBootstrap:
    """Every cell's replicates over one shared :class:`Resamples` plan, computed lazily and
    cached per (cell, patient score). ``predictions`` are the primary predictions (trained time
    steps) with columns backend, rule, repeat, fold, patient_id, label, prob, threshold."""

    predictions: pd.DataFrame
    scheme: str = "holdout"
    n_bootstrap: int = 2000
    seed: int = 0
    top_k: int = 3
    resamples: Resamples = field(init=False)
    #: Each run's repeat (runs of one repeat are refits of the same folds).
    run_repeat: dict[int, int] = field(init=False)
    _units: dict[Cell, dict[int, list[pd.DataFrame]]] = field(init=False, repr=False)
    _cache: dict[tuple[Cell, str, str], tuple[np.ndarray, np.ndarray]] = field(
        init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        pred = with_runs(self.predictions)
        self.predictions = pred
        self.run_repeat = {int(run): int(rep) for run, rep in
                           pred[["run", "repeat"]].drop_duplicates().itertuples(index=False)}
        self.resamples = draw_resamples(pred["patient_id"].astype(str), pred["run"],
                                        n_bootstrap=self.n_bootstrap, seed=self.seed)
        self._units = {}
        for (backend, rule), g in pred.groupby(["backend", "rule"], sort=False):
            per_repeat: dict[int, list[pd.DataFrame]] = {}
            for repeat, r in g.groupby("run", sort=True):
                folds = [r] if self.scheme == "nested-cv" else [f for _, f in r.groupby("fold")]
                per_repeat[int(cast(int, repeat))] = folds
            self._units[(str(backend), str(rule))] = per_repeat

    @property
    def cells(self) -> list[Cell]:
        return list(self._units)

    def repeats_of(self, cell: Cell) -> list[int]:
        return sorted(self._units.get(cell, {}))

    def per_repeat(self, cell: Cell, metric: str, patient_score: str = "max"
                   ) -> tuple[np.ndarray, np.ndarray]:
        """``(point, replicates)``: ``point[j]`` = ``m_r(1)`` and ``replicates[j]`` = ``m_r(w_b)``
        (shape ``(R, B)``) for repeat ``resamples.repeats[j]``; NaN rows for missing repeats."""
        metric = metric.removeprefix("test_")
        if (cell, metric, patient_score) not in self._cache:
            self.prefetch(cell, (metric,), patient_score)
        return self._cache[(cell, metric, patient_score)]

    def prefetch(self, cell: Cell, metrics: Iterable[str], patient_score: str = "max") -> None:
        """Compute several metrics of one cell in one pass (slice weights built once)."""
        rs = self.resamples
        names = tuple(m.removeprefix("test_") for m in metrics)
        point = {m: np.full(len(rs.repeats), np.nan) for m in names}
        reps = {m: np.full((len(rs.repeats), rs.n_bootstrap), np.nan) for m in names}
        for repeat, folds in self._units.get(cell, {}).items():
            j = int(np.searchsorted(rs.repeats, repeat))
            values = [self._unit_values(frame, names, patient_score) for frame in folds]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for m in names:
                    stacked = np.vstack([v[m] for v in values])  # (folds, 1 + B)
                    point[m][j] = np.nanmean(stacked[:, 0])
                    reps[m][j] = np.nanmean(stacked[:, 1:], axis=0)
        for m in names:
            self._cache[(cell, m, patient_score)] = (point[m], reps[m])

    def _unit_values(self, frame: pd.DataFrame, names: tuple[str, ...], patient_score: str
                     ) -> dict[str, np.ndarray]:
        """Row 0: the unweighted metric; rows 1..B: the weighted replicates."""
        rs = self.resamples
        idx = np.searchsorted(rs.patients, np.unique(frame["patient_id"].astype(str)))
        w = np.vstack([np.ones(len(idx)), rs.patient_weights[:, idx]])
        return weighted_metrics(names, frame, w, patient_score=patient_score, top_k=self.top_k)

    def replicates(self, cell: Cell, metric: str, patient_score: str = "max",
                   repeats: Iterable[int] | None = None) -> np.ndarray:
        """Two-level replicates ``θ*_b`` (shape ``(B,)``), optionally over a subset of repeats
        (paired comparisons use the repeats both cells have)."""
        _, reps = self.per_repeat(cell, metric, patient_score)
        if repeats is not None:
            keep = np.isin(self.resamples.repeats, np.asarray(list(repeats), dtype=np.int64))
            reps = np.where(keep[:, None], reps, np.nan)
        return combine_repeats(reps, self.resamples.repeat_weights)

    def estimate(self, cell: Cell, metric: str, patient_score: str = "max",
                 repeats: Iterable[int] | None = None) -> float:
        """Point estimate ``θ̂ = mean_r m_r(1)`` (over ``repeats`` when given)."""
        point, _ = self.per_repeat(cell, metric, patient_score)
        if repeats is not None:
            point = point[np.isin(self.resamples.repeats, np.asarray(list(repeats), dtype=int))]
        return float(np.nanmean(point)) if np.isfinite(point).any() else float("nan")

    def single_repeat_intervals(self, cell: Cell, metric: str, patient_score: str = "max"
                                ) -> dict[int, tuple[float, float]]:
        """Patient-only percentile interval of each repeat, from the same ``w_b``."""
        _, reps = self.per_repeat(cell, metric, patient_score)
        return {int(r): percentile_interval(reps[j]) for j, r in enumerate(self.resamples.repeats)
                if np.isfinite(reps[j]).any()}

    def interval(self, cell: Cell, metric: str, patient_score: str = "max"
                 ) -> tuple[float, float]:
        """The cell's 95 % interval (steps 4–5 and the floor of the module docstring)."""
        interval = percentile_interval(self.replicates(cell, metric, patient_score))
        if self.scheme not in SHARED_COHORT:
            return interval
        widths = [h - lo for lo, h in self.single_repeat_intervals(
            cell, metric, patient_score).values() if np.isfinite(lo)]
        return floor_interval(interval, max(widths, default=np.nan), metric_range(metric))

    def intervals(self, cell: Cell, metrics: Iterable[str]) -> dict[str, tuple[float, float]]:
        """:meth:`interval` of every metric in ``metrics`` (names without ``test_``)."""
        return {m: self.interval(cell, m) for m in metrics}
