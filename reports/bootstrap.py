"""Every cell's test metrics with their uncertainty: patients and training runs, shared resamples.

Slices of one patient are correlated, so the unit of patient sampling is the patient, never the
slice; and a cell's number comes from a few training runs whose spread is part of its error.
The scheme (docs/protocol.md; a test re-implements it naively):

1. **Runs.** A cell's predictions at the trained number of time steps are split into training
   *runs*: one per (repeat, refit) pair (``[split].refit_seeds`` refits each fold's tuned
   configuration with several seeds). Under ``nested-cv`` a run's folds are pooled into one
   out-of-fold prediction set (every patient once, each slice thresholded at its own fold's
   threshold); under ``holdout`` and ``repeated-splits`` a run's metric is the mean over its
   folds (one). The cell's estimate is ``θ̂ = mean_r m_r``, the mean over runs of the run's
   metric ``m_r`` on its test patients.
2. **One patient resample plan per study** (:func:`draw_resamples`): replicate ``b`` is a
   vector ``w_b`` of patient multiplicities (``n`` draws with replacement from the ``n`` test
   patients, ``numpy.random.default_rng([seed, 0]).multinomial``), shared by every cell, run
   and fold, so that two cells are compared on the same resampled patients; ``m_r(w_b)`` is
   the run's metric on its slices weighted by their patient's multiplicity
   (:func:`spikebench.reports.scoring.weighted_metrics`).
3. **Uncertainty** (:mod:`spikebench.reports.wald`): ``SE² = V_patients + s²/R`` with
   ``V_patients`` the variance over ``b`` of the run-averaged ``mean_r m_r(w_b)`` — or, for
   ROC-AUC, Obuchowski's clustered DeLong variance of the run-averaged pair-count kernel
   (:mod:`spikebench.reports.clustered`, exact and fast) — and ``s²`` the variance of the
   ``m_r`` over runs; intervals and tests on Student's t with Satterthwaite degrees of
   freedom. A paired difference uses the same resamples (the kernels of both cells) for its
   patient term and adds both cells' training terms.
4. **repeated-splits**: runs test different patients; the spread of the ``m_r`` holds both
   sources and is corrected for the overlap of training and test sets (Nadeau–Bengio).

**Estimand.** ``θ = E_seed,split[ metric of the cell's training procedure on the patient
population ]``: the expected test metric of one training run of the procedure, for patients like
the study's. Both sources of error are in every interval; the ± std column of the tables is the
training spread alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .clustered import PairCounts, obuchowski, pair_counts
from .scoring import patient_table, weighted_metrics
from .wald import WaldT, corrected_resampled, training_term

CONFIDENCE = 0.95
#: Schemes whose runs all test the same patients.
SHARED_COHORT = ("holdout", "nested-cv", "predefined")
#: Metrics whose patient term is Obuchowski's (pair-count kernels) instead of the bootstrap's.
KERNEL_METRICS = ("roc_auc", "patient_roc_auc")
#: Largest number of patients (clusters) for the pair-count kernels (a P × P matrix per run);
#: larger cohorts take the patient bootstrap, which needs no such matrix.
KERNEL_MAX_PATIENTS = 3000

Cell = tuple[str, str]


@dataclass(frozen=True)
class Resamples:
    """One resample plan: ``patient_weights[b, i]`` = times patient ``patients[i]`` is drawn in
    replicate ``b``; ``runs`` the study's training runs (sorted)."""

    patients: np.ndarray
    runs: np.ndarray
    patient_weights: np.ndarray

    @property
    def n_bootstrap(self) -> int:
        return int(self.patient_weights.shape[0])


def draw_resamples(patients: Iterable[str], runs: Iterable[int], *, n_bootstrap: int,
                   seed: int) -> Resamples:
    """The shared plan of step 2: multinomial multiplicities of the (sorted, unique) patients,
    ``n_bootstrap`` replicates, from ``default_rng([seed, 0])``."""
    ids = np.unique(np.asarray(list(patients)).astype(str))
    run_ids = np.unique(np.asarray(list(runs), dtype=np.int64))
    pw = np.random.default_rng([seed, 0]).multinomial(
        len(ids), np.full(len(ids), 1 / max(len(ids), 1)), size=n_bootstrap).astype(np.float64)
    return Resamples(ids, run_ids, pw)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take (MCC ∈ [−1, 1], every other metric ∈ [0, 1])."""
    return (-1.0, 1.0) if metric.removeprefix("test_") == "mcc" else (0.0, 1.0)


def with_runs(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with a ``run`` column: ``repeat × R + refit`` (``R`` the most refits of
    any fold), so each (repeat, refit) pair is one training run; without a ``refit`` column
    (older folders) a run is a repeat."""
    refit = (predictions["refit"].astype(np.int64) if "refit" in predictions
             else pd.Series(0, index=predictions.index, dtype=np.int64))
    width = int(refit.max()) + 1 if len(refit) else 1
    return predictions.assign(run=predictions["repeat"].astype(np.int64) * width + refit)


def kernel_wald(cells: list[list[PairCounts]], signs: list[float]) -> WaldT | None:
    """The signed sum ``Σ_c s_c θ̂_c`` of run-averaged AUCs of cells scored on the same items
    (``cells[c]``: the pair-count kernel of each run of cell ``c``): the patient term is
    Obuchowski's covariance of the run-averaged kernels (patients as clusters) on
    ``min(I₁, I₀) − 1`` df, each cell adds its training term ``s_c² / R_c``. None when the
    cells' runs do not share their items (labels per patient differ)."""
    m, n = cells[0][0].m, cells[0][0].n
    if any(not (np.array_equal(pc.m, m) and np.array_equal(pc.n, n))
           for runs in cells for pc in runs):
        return None
    mean_a = [np.mean([pc.A for pc in runs], axis=0) for runs in cells]
    one = np.ones((1, len(m)))
    aucs, cov = obuchowski([a.sum(axis=1)[None] for a in mean_a],
                           [a.sum(axis=0)[None] for a in mean_a], m, n, one)
    sign = np.asarray(signs, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # a cell without both classes: NaN, no interval
        variance = float(sign @ cov[0] @ sign)
    variance = max(variance, 0.0) if math.isfinite(variance) else math.nan
    df = float(min((m > 0).sum(), (n > 0).sum()) - 1)
    training: list[tuple[float, float]] = []
    known = True
    for runs in cells:
        parts, ok = training_term([pc.auc for pc in runs])
        training += parts
        known &= ok
    return WaldT(float(sign @ aucs[0]), (variance, df), tuple(training), known)


@dataclass
class StudyBootstrap:
    """Every cell's per-run values and patient replicates over one shared :class:`Resamples`
    plan, computed lazily and cached per (cell, metric, patient score). ``predictions`` are
    the primary predictions (trained time steps) with columns backend, rule, repeat, fold,
    (refit), patient_id, label, prob, threshold. ``n_train`` / ``n_test``: mean training and
    test patients per split (the Nadeau–Bengio correction of ``repeated-splits``)."""

    predictions: pd.DataFrame
    scheme: str = "nested-cv"
    n_bootstrap: int = 2000
    seed: int = 0
    top_k: int = 3
    n_train: float = math.nan
    n_test: float = math.nan
    resamples: Resamples = field(init=False)
    #: Each run's repeat (runs of one repeat are refits of the same folds).
    run_repeat: dict[int, int] = field(init=False)
    _units: dict[Cell, dict[int, list[pd.DataFrame]]] = field(init=False, repr=False)
    _cache: dict[tuple[Cell, str, str], tuple[np.ndarray, np.ndarray]] = field(
        init=False, repr=False, default_factory=dict)
    _kernels: dict[tuple[Cell, str, str], list[PairCounts] | None] = field(
        init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        pred = with_runs(self.predictions)
        self.predictions = pred
        pairs = pred[["run", "repeat"]].drop_duplicates().to_numpy(dtype=np.int64)
        self.run_repeat = {int(run): int(rep) for run, rep in pairs}
        self.resamples = draw_resamples(pred["patient_id"].astype(str), pred["run"],
                                        n_bootstrap=self.n_bootstrap, seed=self.seed)
        self._units = {}
        for (backend, rule), g in pred.groupby(["backend", "rule"], sort=False):
            per_run: dict[int, list[pd.DataFrame]] = {}
            for _, r in g.groupby("run", sort=True):
                folds = [r] if self.scheme == "nested-cv" else [f for _, f in r.groupby("fold")]
                per_run[int(r["run"].iloc[0])] = folds
            self._units[(str(backend), str(rule))] = per_run

    @property
    def cells(self) -> list[Cell]:
        return list(self._units)

    def runs_of(self, cell: Cell) -> list[int]:
        return sorted(self._units.get(cell, {}))

    # -- per-run values ----------------------------------------------------------------------

    def per_run(self, cell: Cell, metric: str, patient_score: str = "max"
                ) -> tuple[np.ndarray, np.ndarray]:
        """``(point, replicates)``: ``point[j]`` = ``m_r(1)`` and ``replicates[j]`` =
        ``m_r(w_b)`` (shape ``(R, B)``) for run ``resamples.runs[j]``; NaN rows for runs the
        cell lacks."""
        metric = metric.removeprefix("test_")
        if (cell, metric, patient_score) not in self._cache:
            self.prefetch(cell, (metric,), patient_score)
        return self._cache[(cell, metric, patient_score)]

    def prefetch(self, cell: Cell, metrics: Iterable[str], patient_score: str = "max") -> None:
        """Compute several metrics of one cell in one pass (slice weights built once)."""
        rs = self.resamples
        names = tuple(m.removeprefix("test_") for m in metrics)
        point = {m: np.full(len(rs.runs), np.nan) for m in names}
        reps = {m: np.full((len(rs.runs), rs.n_bootstrap), np.nan) for m in names}
        for run, folds in self._units.get(cell, {}).items():
            j = int(np.searchsorted(rs.runs, run))
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

    def estimate(self, cell: Cell, metric: str, patient_score: str = "max") -> float:
        """Point estimate ``θ̂ = mean_r m_r(1)`` over the cell's runs."""
        point, _ = self.per_run(cell, metric, patient_score)
        return float(np.nanmean(point)) if np.isfinite(point).any() else float("nan")

    # -- uncertainty -------------------------------------------------------------------------

    def wald(self, cell: Cell, metric: str, patient_score: str = "max") -> WaldT:
        """The cell's estimate with its patient and training terms (module docstring)."""
        return self._combined([(cell, 1.0)], metric, patient_score)

    def paired(self, a: Cell, b: Cell, metric: str, patient_score: str = "max") -> WaldT:
        """``a − b`` on the same patients: the patient term of the difference (shared
        resamples / joint kernel covariance) plus both cells' training terms."""
        return self._combined([(a, 1.0), (b, -1.0)], metric, patient_score)

    def interval(self, cell: Cell, metric: str, patient_score: str = "max",
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The cell's interval, inside the metric's range."""
        return self.wald(cell, metric, patient_score).interval(confidence, metric_range(metric))

    def intervals(self, cell: Cell, metrics: Iterable[str]) -> dict[str, tuple[float, float]]:
        """:meth:`interval` of every metric in ``metrics`` (names without ``test_``)."""
        return {m: self.interval(cell, m) for m in metrics}

    def _combined(self, terms: list[tuple[Cell, float]], metric: str, patient_score: str
                  ) -> WaldT:
        metric = metric.removeprefix("test_")
        if self.scheme in SHARED_COHORT and metric in KERNEL_METRICS:
            kernels = [self.kernels(c, metric, patient_score) for c, _ in terms]
            if all(k is not None for k in kernels):
                w = kernel_wald([k for k in kernels if k is not None], [s for _, s in terms])
                if w is not None:
                    return w
        points = [self.per_run(c, metric, patient_score)[0] for c, _ in terms]
        estimate = sum(s * (float(np.nanmean(p)) if np.isfinite(p).any() else math.nan)
                       for (_, s), p in zip(terms, points, strict=True))
        if self.scheme not in SHARED_COHORT:
            return self._resampled_splits(estimate, terms, points)
        training: list[tuple[float, float]] = []
        known = True
        for p in points:
            parts, ok = training_term(list(p))
            training += parts
            known &= ok
        dfp = self._patient_df(terms[0][0], metric, patient_score)
        v = self._bootstrap_variance(terms, metric, patient_score)
        return WaldT(estimate, (v, dfp), tuple(training), known)

    def _bootstrap_variance(self, terms: list[tuple[Cell, float]], metric: str,
                            patient_score: str) -> float:
        """Variance over patient replicates of the signed sum of run-averaged metrics."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            total = sum(s * np.nanmean(self.per_run(c, metric, patient_score)[1], axis=0)
                        for c, s in terms)
        reps = np.asarray(total, dtype=np.float64)
        finite = reps[np.isfinite(reps)]
        return float(finite.var(ddof=1)) if finite.size > 1 else math.nan

    def kernels(self, cell: Cell, metric: str, patient_score: str = "max"
                ) -> list[PairCounts] | None:
        """The pair-count kernel of each of the cell's runs for slice (``roc_auc``) or patient
        (``patient_roc_auc``) ROC-AUC, on the study's patient index; None when a run has
        several folds (their AUCs are averaged, not pooled) or the cohort exceeds
        :data:`KERNEL_MAX_PATIENTS`."""
        key = (cell, metric, patient_score)
        if key not in self._kernels:
            self._kernels[key] = self._build_kernels(cell, metric, patient_score)
        return self._kernels[key]

    def _build_kernels(self, cell: Cell, metric: str, patient_score: str
                       ) -> list[PairCounts] | None:
        units = self._units.get(cell, {})
        patients = self.resamples.patients
        if (not units or any(len(folds) != 1 for folds in units.values())
                or len(patients) > KERNEL_MAX_PATIENTS):
            return None
        out = []
        for run in sorted(units):
            frame = units[run][0]
            if metric == "roc_auc":
                y = frame["label"].to_numpy() == 1
                score = frame["prob"].to_numpy(dtype=np.float64)
                ids = frame["patient_id"].to_numpy().astype(str)
            else:
                table = patient_table(frame, patient_score, self.top_k)
                y = table["label"].to_numpy() == 1
                score = table["prob"].to_numpy(dtype=np.float64)
                ids = table["patient_id"].to_numpy().astype(str)
            out.append(pair_counts(y, score, np.searchsorted(patients, ids), len(patients)))
        return out

    def _patient_df(self, cell: Cell, metric: str, patient_score: str) -> float:
        """``min(I₁, I₀) − 1``: patients holding a positive / a negative of the metric's unit
        (slices, or patients for ``patient_*`` metrics), in the cell's first run."""
        units = self._units.get(cell, {})
        if not units:
            return math.nan
        frame = pd.concat(units[min(units)])
        if metric.startswith("patient_"):
            labels = patient_table(frame, patient_score, self.top_k)["label"].to_numpy()
            return float(min((labels == 1).sum(), (labels == 0).sum()) - 1)
        has = frame.groupby("patient_id")["label"].agg(["max", "min"])
        return float(min((has["max"] == 1).sum(), (has["min"] == 0).sum()) - 1)

    def _resampled_splits(self, estimate: float, terms: list[tuple[Cell, float]],
                          points: list[np.ndarray]) -> WaldT:
        """repeated-splits: the per-split signed sum (refits of a split averaged first), with
        the Nadeau–Bengio variance."""
        runs = self.resamples.runs
        by_split: dict[int, list[float]] = {}
        for j, run in enumerate(runs):
            values = [s * p[j] for (_, s), p in zip(terms, points, strict=True)]
            if all(math.isfinite(v) for v in values):
                by_split.setdefault(self.run_repeat[int(run)], []).append(sum(values))
        per_split = [float(np.mean(v)) for v in by_split.values()]
        return corrected_resampled(estimate, per_split, self.n_train, self.n_test)

    def identical(self, a: Cell, b: Cell) -> bool:
        """Whether the two cells predicted exactly the same probability for every test slice
        of every run (then there is nothing to test: the report says "identical")."""
        cols = ["run", "fold", "patient_id", "slice_idx", "prob"]
        frames = []
        for cell in (a, b):
            rows = [f for folds in self._units.get(cell, {}).values() for f in folds]
            if not rows:
                return False
            frame = pd.concat(rows)
            frames.append(frame[[c for c in cols if c in frame]].sort_values(
                [c for c in cols[:-1] if c in frame]).reset_index(drop=True))
        return frames[0].shape == frames[1].shape and bool(
            frames[0].equals(frames[1]))
