"""The data-generating model of a calibration: a cohort like the study's, and two cells' scores.

Every parameter is a field of :class:`Design`; the defaults describe the Medical Segmentation
Decathlon liver release as spikebench studies it (docs/protocol.md says where each comes from).

- ``patients`` patients, ``lesion_free`` of them without a lesion slice. Patient ``p`` has
  ``n_p`` liver slices (a rounded normal, clipped); a lesion patient's lesion slices are one
  contiguous block of ``k_p = clip(Binomial(n_p, f_p), 1, n_p)`` slices, ``f_p ~ Beta`` with
  mean ``lesion_fraction[0]``.
- Patients are dealt into ``folds`` test folds stratified by patient label (nested CV: each
  patient is tested once per run, by the model of its fold; holdout: one fold).
- The latent score of cell ``c``, training run ``r`` and slice ``i`` of patient ``p`` in fold
  ``f`` is::

      z = (μ_c + δ_crf) · y_i + α_crf + u_cp + e_ci + τ η_cri

  with ``u_cp`` the between-patient effect (its share ``icc`` of the slice-noise variance;
  correlated ``rho`` between the two cells), ``e_ci`` AR(1) slice noise along a patient's
  slices (coefficient ``slice_ar``; the two cells' slice noise correlated ``rho``: they score the
  same slices), and the training noise of the model of (cell, run, fold): a separation shift
  ``δ ~ N(0, s²)``, an intercept shift ``α ~ N(0, (intercept_ratio · s)²)`` and slice noise
  ``τ η`` with ``τ = slice_noise_ratio · s``. ``s`` is solved so that the standard deviation over
  training runs of a run's pooled slice ROC-AUC is ``sigma_run`` (:func:`solve_cell`).

Truth: the population slice AUC of a run with fold shifts ``(δ_f, α_f)`` is, by normality,
``F⁻² Σ_{f,g} Φ((μ + δ_f + α_f − α_g) / √(2(1 + τ²)))`` (a positive and a negative from patients
of folds ``f`` and ``g``); a cell's true AUC is its expectation over training runs
(:func:`true_auc`, Monte Carlo over 10⁵ runs), which is what the report's intervals estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.signal import lfilter
from scipy.special import ndtr, ndtri


@dataclass(frozen=True)
class Design:
    """A study design and its cohort (module docstring)."""

    patients: int = 131
    lesion_free: int = 13
    #: (mean, sd, min, max) of the rounded normal number of liver slices per patient.
    slices: tuple[float, float, int, int] = (145.0, 40.0, 60, 250)
    #: (mean, concentration a + b) of the Beta lesion-slice fraction of a lesion patient.
    lesion_fraction: tuple[float, float] = (0.3, 5.0)
    icc: float = 0.3
    rho: float = 0.65
    slice_ar: float = 0.5
    #: Test folds: the outer folds of nested CV, 1 for a holdout test set.
    folds: int = 5
    #: Training runs per cell (refit seeds × repeats).
    runs: int = 5
    #: The better cell's true slice ROC-AUC.
    auc: float = 0.80
    intercept_ratio: float = 0.5
    slice_noise_ratio: float = 1.0


@lru_cache(maxsize=8)
def _run_noise(folds: int, k: int = 40_000, seed: int = 12345) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((k, folds)), rng.standard_normal((k, folds))


def population_auc(mu: float, s: float, design: Design, d: np.ndarray, a: np.ndarray
                   ) -> np.ndarray:
    """Population slice AUC of runs with standardised fold shifts ``d`` (δ/s) and ``a``
    (α/(s · intercept_ratio)), shape ``(k, F)`` → ``(k,)``."""
    tau = design.slice_noise_ratio * s
    scale = math.sqrt(2 * (1 + tau * tau))
    shift = design.intercept_ratio * s
    num = (mu + s * d)[:, :, None] + shift * (a[:, :, None] - a[:, None, :])
    return np.asarray(ndtr(num / scale).mean(axis=(1, 2)))


def _moments(mu: float, s: float, design: Design) -> tuple[float, float]:
    if s == 0:
        return float(ndtr(mu / math.sqrt(2))), 0.0
    d, a = _run_noise(design.folds)
    v = population_auc(mu, s, design, d, a)
    return float(v.mean()), float(v.std())


@lru_cache(maxsize=1024)
def solve_cell(design: Design, auc: float, sigma_run: float, s: float | None = None
               ) -> tuple[float, float]:
    """``(μ, s)`` such that a cell's true slice AUC is ``auc`` and the SD over training runs of
    its population AUC is ``sigma_run``; with ``s`` given only ``μ`` is solved (the other cell
    of a pair keeps the first cell's training-noise scale)."""
    mu = math.sqrt(2) * float(ndtri(auc))
    if sigma_run == 0 and not s:
        return mu, 0.0
    fixed = s is not None
    scale = s if s is not None else sigma_run * math.sqrt(design.folds) * math.sqrt(2) / 0.28
    for _ in range(30):
        mu_new = _solve_mu(design, auc, scale, mu)
        s_new = scale if fixed else _solve_s(design, sigma_run, mu_new)
        if abs(mu_new - mu) < 1e-9 and abs(s_new - scale) < 1e-9:
            break
        mu, scale = mu_new, s_new
    return float(mu), float(scale)


def _solve_mu(design: Design, auc: float, s: float, start: float) -> float:
    return _root(lambda m: _moments(m, s, design)[0] - auc, start - 3, start + 3)


def _solve_s(design: Design, sigma_run: float, mu: float) -> float:
    return _root(lambda x: _moments(mu, x, design)[1] - sigma_run, 1e-6, 20.0)


def _root(f: Callable[[float], float], low: float, high: float) -> float:
    """The root of ``f`` in [low, high]; when ``f`` keeps its sign there (a target the model
    cannot reach, such as a run-to-run spread larger than any noise scale gives), the end
    closer to it: the nearest design the model can simulate."""
    f_low, f_high = f(low), f(high)
    if f_low * f_high > 0 or not (math.isfinite(f_low) and math.isfinite(f_high)):
        return low if abs(f_low) <= abs(f_high) else high
    return float(brentq(f, low, high, xtol=1e-10))


def true_auc(design: Design, mu: float, s: float) -> float:
    """A cell's true slice AUC: the expectation over training runs (module docstring)."""
    return _moments(mu, s, design)[0]


@dataclass
class Cohort:
    """One simulated cohort: slices in patient order."""

    n_slices: np.ndarray  # (P,)
    lesion: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,)
    patient: np.ndarray  # (S,) patient index of each slice
    y: np.ndarray  # (S,) bool

    @property
    def fold_of_slice(self) -> np.ndarray:
        return self.fold[self.patient]


def draw_cohort(design: Design, rng: np.random.Generator) -> Cohort:
    """Patients, their slices and lesion blocks, and the stratified test folds."""
    n_patients, lesion_free = design.patients, design.lesion_free
    mean, sd, low, high = design.slices
    n = np.clip(np.rint(rng.normal(mean, sd, n_patients)), low, high).astype(np.int64)
    lesion = np.ones(n_patients, dtype=bool)
    lesion[rng.permutation(n_patients)[:lesion_free]] = False
    fm, conc = design.lesion_fraction
    frac = rng.beta(fm * conc, (1 - fm) * conc, n_patients)
    k = np.where(lesion, np.clip(rng.binomial(n, frac), 1, n), 0)
    begin = (rng.random(n_patients) * (n - k + 1)).astype(np.int64)
    starts = np.r_[0, np.cumsum(n)[:-1]]
    patient = np.repeat(np.arange(n_patients), n)
    position = np.arange(n.sum()) - starts[patient]
    y = (position >= begin[patient]) & (position < (begin + k)[patient])
    fold = np.empty(n_patients, dtype=np.int64)
    for group in (np.flatnonzero(lesion), np.flatnonzero(~lesion)):  # stratified, dealt
        order = rng.permutation(group)
        fold[order] = (np.arange(len(order)) + rng.integers(design.folds)) % design.folds
    return Cohort(n, lesion, fold, patient, y)


def ar1_series(n: np.ndarray, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary unit-variance AR(1) series, independent between patients (lengths ``n``)."""
    total = int(n.sum())
    if phi == 0:
        return rng.standard_normal(total)
    c = math.sqrt(1 - phi * phi)
    width = int(n.max())
    mask = np.arange(width)[None, :] < n[:, None]
    x = np.zeros((len(n), width))
    x[mask] = rng.standard_normal(total)
    x[:, 0] /= c
    return np.asarray(lfilter([c], [1.0, -phi], x, axis=1))[mask]


@dataclass
class Noise:
    """The standard-normal draws of one simulated study, shared by every scenario analysed on
    it (common random numbers): patient and slice noise (shared part and per cell), and per
    cell the runs' fold shifts and slice noise."""

    patient_shared: np.ndarray
    patient_own: dict[str, np.ndarray]
    slice_shared: np.ndarray
    slice_own: dict[str, np.ndarray]
    separation: dict[str, np.ndarray]  # (R, F)
    intercept: dict[str, np.ndarray]  # (R, F)
    run_slices: dict[str, np.ndarray]  # (R, S)


def draw_noise(design: Design, cohort: Cohort, rng: np.random.Generator) -> Noise:
    n_p, n_s, runs, folds = design.patients, len(cohort.y), design.runs, design.folds
    cells = ("a", "b")
    return Noise(
        rng.standard_normal(n_p), {c: rng.standard_normal(n_p) for c in cells},
        ar1_series(cohort.n_slices, design.slice_ar, rng),
        {c: ar1_series(cohort.n_slices, design.slice_ar, rng) for c in cells},
        {c: rng.standard_normal((runs, folds)) for c in cells},
        {c: rng.standard_normal((runs, folds)) for c in cells},
        {c: rng.standard_normal((runs, n_s)) for c in cells})


def scores(design: Design, cohort: Cohort, noise: Noise, cell: str, mu: float, s: float
           ) -> np.ndarray:
    """Latent scores ``(R, S)`` of ``cell``'s runs (module docstring); rank-based metrics need
    no link function."""
    rho, icc = design.rho, design.icc
    u = math.sqrt(icc) * (math.sqrt(rho) * noise.patient_shared
                          + math.sqrt(1 - rho) * noise.patient_own[cell])
    base = (u[cohort.patient] + math.sqrt(1 - icc) * (
        math.sqrt(rho) * noise.slice_shared + math.sqrt(1 - rho) * noise.slice_own[cell]))
    z = np.empty((design.runs, len(cohort.y)))
    fold = cohort.fold_of_slice
    for r in range(design.runs):
        z[r] = base + mu * cohort.y
        if s > 0:
            d = s * noise.separation[cell][r]
            a = design.intercept_ratio * s * noise.intercept[cell][r]
            z[r] += (d[fold] * cohort.y + a[fold]
                     + design.slice_noise_ratio * s * noise.run_slices[cell][r])
    return z
