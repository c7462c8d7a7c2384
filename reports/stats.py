"""A test across repeats and the multiplicity correction.

The corrected resampled t-test treats the **repeat** as the unit, which is only right when
repeats test different patients (``repeated-splits``) or for the training-randomness question
alone. The primary analysis (:mod:`spikebench.reports.analysis`) uses the patient as the unit
instead (:mod:`spikebench.reports.paired`).

- :func:`corrected_resampled_t` — Nadeau & Bengio (2003), *Inference for the generalization
  error*, Machine Learning 52:239–281: for ``J`` random train/test splits with ``n₁`` training
  and ``n₂`` test patients and per-split differences ``d_j``,
  ``t = d̄ / sqrt((1/J + n₂/n₁) · s²)`` with ``s²`` the sample variance (ddof 1), compared to
  Student's t with ``J − 1`` degrees of freedom. The ``n₂/n₁`` term corrects the naive
  ``s²/J``, which ignores that overlapping training sets make the ``d_j`` positively correlated.
- :func:`holm` — Holm–Bonferroni step-down adjusted p-values (family-wise error control).
"""

from __future__ import annotations

import math

import numpy as np


def corrected_resampled_t(diff: np.ndarray, n_train: float, n_test: float
                          ) -> tuple[float, float]:
    """Nadeau–Bengio corrected resampled t-test (module docstring): ``(t, two-sided p)``.
    NaN when fewer than 2 finite differences; ``(0, 1)`` when all differences are equal to 0;
    ``±inf, 0`` when they are equal and non-zero."""
    from scipy.stats import t as student

    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]
    j = d.size
    if j < 2 or not (n_train > 0 and n_test > 0):
        return math.nan, math.nan
    mean, var = float(d.mean()), float(d.var(ddof=1))
    if var == 0:
        return (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / math.sqrt((1 / j + n_test / n_train) * var)
    return t, float(2 * student.sf(abs(t), j - 1))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given; NaN stays NaN):
    ``p̃_(i) = max_{k ≤ i} min(1, (m − k + 1) p_(k))`` over the sorted ``p_(1) ≤ … ≤ p_(m)``."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out
