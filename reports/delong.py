"""DeLong's test of two correlated ROC-AUCs, and its clustered form for slices of patients.

DeLong, DeLong & Clarke-Pearson (1988), *Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach*, Biometrics 44:837–845.
With ``M`` positives ``X_i``, ``N`` negatives ``Y_j`` and ``ψ(x, y) = 1[x > y] + ½·1[x = y]``,
per modality ``r``:

- placement values ``V10_i = (1/N) Σ_j ψ(X_i, Y_j)``, ``V01_j = (1/M) Σ_i ψ(X_i, Y_j)``;
- ``θ_r = mean_i V10_i`` (the Mann–Whitney AUC);
- ``S10`` / ``S01`` the sample covariance matrices (ddof 1) of the ``V10`` / ``V01`` across
  modalities, and ``Cov(θ) = S10 / M + S01 / N``.

Clustered data (several slices per patient, not independent) use Obuchowski (1997),
*Nonparametric analysis of clustered ROC curve data*, Biometrics 53:567–578: with clusters
``c``, ``m_c`` positives and ``n_c`` negatives in ``c``, cluster sums ``V10_c = Σ_{i∈c} V10_i``,
``V01_c = Σ_{j∈c} V01_j``, ``I₁₀`` / ``I₀₁`` the clusters with a positive / negative, ``I`` all::

    S10 = I₁₀ / ((I₁₀ − 1) M) Σ_c (V10_c − m_c θ)(V10_c − m_c θ)ᵀ
    S01 = I₀₁ / ((I₀₁ − 1) N) Σ_c (V01_c − n_c θ)(V01_c − n_c θ)ᵀ
    S11 = I / (I − 1) Σ_c (V10_c − m_c θ)(V01_c − n_c θ)ᵀ
    Cov(θ) = S10 / M + S01 / N + (S11 + S11ᵀ) / (M N)

With one item per cluster this is exactly DeLong's covariance (a test checks it). The test of
``θ_a = θ_b`` is ``z = (θ_a − θ_b) / sqrt(Var θ_a + Var θ_b − 2 Cov)``, two-sided normal p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeLongResult:
    """Two areas, their difference ``a − b``, its standard error, z and two-sided p."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p: float


def _placements(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V10`` (one per positive) and ``V01`` (one per negative) of one modality."""
    pos, neg = np.sort(score[y]), np.sort(score[~y])
    x, v = score[y], score[~y]
    below = np.searchsorted(neg, x, side="left")
    tied = np.searchsorted(neg, x, side="right") - below
    v10 = (below + tied / 2) / neg.size
    above = pos.size - np.searchsorted(pos, v, side="right")
    tied = np.searchsorted(pos, v, side="right") - np.searchsorted(pos, v, side="left")
    v01 = (above + tied / 2) / pos.size
    return v10, v01


def delong_covariance(y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (shape ``(k,)``) and their covariance matrix (``(k, k)``) for ``k`` score vectors
    (rows of ``scores``) on the same items; ``clusters`` (one id per item) selects
    Obuchowski's clustered form. Raises ``ValueError`` when a class is missing."""
    y = np.asarray(y) == 1
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives, got {m} and {n}")
    v10, v01 = zip(*(_placements(y, s) for s in scores), strict=True)
    v10, v01 = np.vstack(v10), np.vstack(v01)  # (k, M), (k, N)
    auc = v10.mean(axis=1)
    if clusters is None:
        return auc, np.atleast_2d(np.cov(v10) / m + np.cov(v01) / n)
    ids, c = np.unique(np.asarray(clusters), return_inverse=True)
    n_c = len(ids)
    m_c = np.bincount(c[y], minlength=n_c).astype(float)
    k_c = np.bincount(c[~y], minlength=n_c).astype(float)
    s10 = np.vstack([np.bincount(c[y], weights=row, minlength=n_c) for row in v10])
    s01 = np.vstack([np.bincount(c[~y], weights=row, minlength=n_c) for row in v01])
    d10 = s10 - np.outer(auc, m_c)  # (k, clusters)
    d01 = s01 - np.outer(auc, k_c)
    i10, i01 = int((m_c > 0).sum()), int((k_c > 0).sum())
    if min(i10, i01) < 2:
        raise ValueError("clustered DeLong needs positives and negatives in 2+ clusters each")
    cov10 = i10 / ((i10 - 1) * m) * (d10 @ d10.T)
    cov01 = i01 / ((i01 - 1) * n) * (d01 @ d01.T)
    cov11 = n_c / (n_c - 1) * (d10 @ d01.T)
    return auc, cov10 / m + cov01 / n + (cov11 + cov11.T) / (m * n)


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray,
                clusters: np.ndarray | None = None) -> DeLongResult:
    """DeLong's paired test of ``AUC_a = AUC_b`` on the same items (clustered when
    ``clusters`` is given); see the module docstring for the formula."""
    from scipy.stats import norm

    auc, cov = delong_covariance(y, np.vstack([score_a, score_b]), clusters)
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:
        z = diff / se
        p = float(2 * norm.sf(abs(z)))
    return DeLongResult(float(auc[0]), float(auc[1]), diff, se, z, p)
