"""Intervals and tests of an estimate averaged over training runs: patients plus training noise.

A cell's estimate is the mean over its ``R`` training runs (refit seeds, repeats) of the run's
metric on the test patients. Its sampling error has two independent sources, and the standard
error adds them::

    SE² = V_patients + s² / R                     (a cell)
    SE² = V_patients(a − b) + s_a² / R_a + s_b² / R_b   (a paired difference)

- ``V_patients``: the patient-sampling variance of the run-averaged estimate — Obuchowski's
  clustered DeLong covariance of the run-averaged pair-count kernel for slice ROC-AUC
  (:mod:`~spikebench.reports.clustered`), else the variance over patient-bootstrap replicates
  of the run-averaged metric (one resample of patients shared by every run and cell, so a
  difference is paired on patients). On ``ν_p = min(I₁, I₀) − 1`` degrees of freedom, ``I₁`` /
  ``I₀`` the patients holding positives / negatives of the metric's unit (slices or patients).
- ``s²``: the sample variance of the cell's per-run values (``R − 1`` df): the training
  randomness that a single run leaves out. Two cells train independently, so their terms add.

The reference distribution is Student's t with Welch–Satterthwaite degrees of freedom
``ν = SE⁴ / Σ_k (V_k² / ν_k)``: with three runs the training term has 2 df and the t quantile
widens the interval accordingly. Then

- interval ``θ̂ ± t_{ν, 1−α/2} · SE`` (inside the metric's range);
- two-sided p of ``θ = θ₀``: ``2 P(T_ν > |θ̂ − θ₀| / SE)``;
- TOST with margin ``δ`` (Schuirmann 1987): ``p = max(P(T_ν > (θ̂ + δ)/SE),
  P(T_ν > (δ − θ̂)/SE))``; equivalent when ``p < α``, i.e. the ``1 − 2α`` interval lies inside
  ``(−δ, δ)``.

Under ``repeated-splits`` the runs test different (overlapping) patients and train on
overlapping sets; their spread already holds both sources, and Nadeau & Bengio (2003) correct
its variance for the overlap: ``SE² = (1/J + n_test/n_train) s²`` on ``J − 1`` df
(:func:`corrected_resampled`).

Why this and not a percentile bootstrap over runs: resampling three runs with replacement
underestimates the training variance (by ``(R − 1)/R`` and with heavy noise), which the
calibration shows as type-I error of 10–20 % once runs differ; the t reference with
Satterthwaite df holds its level (docs/protocol.md, ``spikebench calibrate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import ndtr, ndtri
from scipy.stats import t as student

#: One variance term and its degrees of freedom (``inf``: known).
Part = tuple[float, float]


def satterthwaite(parts: tuple[Part, ...]) -> float:
    """Welch–Satterthwaite degrees of freedom of ``Σ V_k`` with ``V_k`` on ``ν_k`` df."""
    total = sum(v for v, _ in parts)
    den = sum(v * v / d for v, d in parts if v > 0 and d > 0 and math.isfinite(d))
    return total * total / den if den > 0 else math.inf


@dataclass(frozen=True)
class WaldT:
    """An estimate with its variance terms (module docstring).

    ``patients`` is the patient-sampling term, ``training`` the training terms (empty when
    the cell has one run: then the training randomness is not in the interval, and
    :attr:`training_known` says so)."""

    estimate: float
    patients: Part
    training: tuple[Part, ...] = ()
    #: False when a cell had a single run, so no training term could be estimated.
    training_known: bool = True

    @property
    def parts(self) -> tuple[Part, ...]:
        return (self.patients, *self.training)

    @property
    def variance(self) -> float:
        return float(sum(max(v, 0.0) for v, _ in self.parts))

    @property
    def se(self) -> float:
        return math.sqrt(self.variance)

    @property
    def se_patients(self) -> float:
        return math.sqrt(max(self.patients[0], 0.0))

    @property
    def se_training(self) -> float:
        return math.sqrt(sum(max(v, 0.0) for v, _ in self.training))

    @property
    def df(self) -> float:
        return satterthwaite(self.parts)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the reference distribution (t on :attr:`df`, else normal)."""
        nu = self.df
        return float(student.ppf(q, nu)) if math.isfinite(nu) else float(ndtri(q))

    def _sf(self, x: float) -> float:
        nu = self.df
        return float(student.sf(x, nu)) if math.isfinite(nu) else float(ndtr(-x))

    def interval(self, confidence: float = 0.95,
                 bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
        """``θ̂ ± t · SE`` clipped to ``bounds`` (NaN when the estimate is)."""
        if not math.isfinite(self.estimate):
            return math.nan, math.nan
        half = self.quantile(1 - (1 - confidence) / 2) * self.se
        return (max(self.estimate - half, bounds[0]), min(self.estimate + half, bounds[1]))

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p of ``θ = null``; with SE 0, 1 when the estimate is the null, else 0."""
        if not math.isfinite(self.estimate):
            return math.nan
        d = abs(self.estimate - null)
        if self.se == 0:
            return 1.0 if d == 0 else 0.0
        return min(1.0, 2 * self._sf(d / self.se))

    def tost_p(self, margin: float) -> float:
        """TOST p of ``|θ| ≥ margin`` (small: equivalent within ``margin``)."""
        if not math.isfinite(self.estimate):
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.estimate) < margin else 1.0
        return max(self._sf((self.estimate + margin) / self.se),
                   self._sf((margin - self.estimate) / self.se))

    def minimum_detectable(self, alpha: float, power: float = 0.80) -> float:
        """The smallest true difference a two-sided level-``alpha`` test detects with
        probability ``power`` at this SE: ``(t_{1−α/2} + t_{power}) · SE`` (same ν)."""
        return (self.quantile(1 - alpha / 2) + self.quantile(power)) * self.se


def training_term(values: list[float] | tuple[float, ...]) -> tuple[tuple[Part, ...], bool]:
    """The training term ``s² / R`` on ``R − 1`` df of a cell's per-run values, and whether it
    could be estimated (``R ≥ 2``)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    r = len(finite)
    if r < 2:
        return (), False
    mean = sum(finite) / r
    s2 = sum((v - mean) ** 2 for v in finite) / (r - 1)
    return ((s2 / r, float(r - 1)),), True


def corrected_resampled(estimate: float, values: list[float], n_train: float, n_test: float
                        ) -> WaldT:
    """Nadeau & Bengio's corrected resampled variance of the mean of ``J`` per-split values
    ``(1/J + n_test/n_train) s²`` on ``J − 1`` df, as a :class:`WaldT` whose only term is it
    (the splits' spread holds patients and training alike)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    j = len(finite)
    if j < 2 or not (n_train > 0 and n_test > 0):
        return WaldT(estimate, (math.nan, math.inf), training_known=False)
    mean = sum(finite) / j
    s2 = sum((v - mean) ** 2 for v in finite) / (j - 1)
    return WaldT(estimate, ((1 / j + n_test / n_train) * s2, float(j - 1)))


__all__ = ["Part", "WaldT", "corrected_resampled", "satterthwaite", "training_term"]
