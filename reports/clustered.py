"""Patient-clustered ROC-AUC through the pair-count kernel: one matrix per score vector.

For slices of ``P`` patients, the **pair-count matrix** ``A`` (``P × P``) holds
``A[p, q] = Σ_{i ∈ pos(p), j ∈ neg(q)} ψ(x_i, x_j)`` with ``ψ(x, y) = 1[x > y] + ½·1[x = y]``,
and ``m_p`` / ``n_p`` count patient ``p``'s positive and negative slices. Then, for patient
multiplicities ``w`` (all ones: the data; a bootstrap replicate; a jackknife deletion):

- ``AUC(w) = wᵀ A w / ((w·m)(w·n))``: the Mann–Whitney AUC of the resampled slices;
- the mean over training runs of the runs' AUCs is the AUC of the run-averaged kernel
  ``Ā = mean_r A_r`` (the denominator depends on the labels only), so the formulas below apply
  to ``Ā`` unchanged — that is how a cell's estimate averaged over refit seeds gets its
  patient-sampling variance;
- Obuchowski's (1997) clustered DeLong covariance of several such kernels (:func:`obuchowski`)
  is a few matrix products.

A patient-level AUC is the same object with one item per patient (``m_p = 1[lesion]``,
``n_p = 1 − m_p``), where Obuchowski's covariance is DeLong's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["PairCounts", "jackknife_auc", "obuchowski", "pair_counts", "products"]


@dataclass(frozen=True)
class PairCounts:
    """``A`` (P × P), ``m`` and ``n`` (P,): see the module docstring."""

    A: np.ndarray
    m: np.ndarray
    n: np.ndarray

    @property
    def auc(self) -> float:
        return float(self.A.sum() / (self.m.sum() * self.n.sum()))


def pair_counts(y: np.ndarray, score: np.ndarray, patient: np.ndarray, n_patients: int
                ) -> PairCounts:
    """The pair-count matrix of one score vector (``patient`` = integer ids ``0..P-1``).

    With the positives sorted by score, ``x_(0) ≤ … ≤ x_(M−1)``, a negative ``j`` lies below
    ``x_(t)`` iff ``g_j = #{positives ≤ s_j} ≤ t``; so ``T[q, t] = #{j ∈ neg(q): g_j ≤ t}`` is a
    cumulative sum over ``t`` of a ``(P × M)`` bincount, and ``A[p, q] = Σ_{t ∈ pos(p)} T[q, t]``.
    Ties (a negative equal to a positive) count one half, through the same table with
    ``#{positives < s_j}``; they are only handled when present."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    patient = np.asarray(patient, dtype=np.int64)
    P = n_patients
    m = np.bincount(patient[y], minlength=P).astype(np.float64)
    n = np.bincount(patient[~y], minlength=P).astype(np.float64)
    A = np.zeros((P, P))
    pos_s, pos_p = score[y], patient[y]
    M = pos_s.size
    if M == 0 or n.sum() == 0:
        return PairCounts(A, m, n)
    order = np.argsort(pos_s, kind="stable")
    pos_s, pos_p = pos_s[order], pos_p[order]
    neg_s, neg_p = score[~y], patient[~y]

    def table(side: Literal["left", "right"]) -> np.ndarray:
        """``T[q, t]`` (patients × sorted positives); float32 counts are exact below 2²⁴."""
        g = np.searchsorted(pos_s, neg_s, side=side)  # 0..M; g = M: above every positive
        t = np.bincount(neg_p * (M + 1) + g, minlength=(M + 1) * P).reshape(P, M + 1)
        return np.cumsum(t[:, :M], axis=1, dtype=np.float32)

    below = table("right")
    if np.unique(score).size < score.size:
        upto = table("left")
        if not np.array_equal(upto, below):
            below = (below.astype(np.float64) + upto) / 2
    by_patient = np.argsort(pos_p, kind="stable")
    pp = pos_p[by_patient]
    starts = np.flatnonzero(np.r_[True, np.diff(pp) != 0])
    A[pp[starts]] = np.add.reduceat(below[:, by_patient], starts, axis=1, dtype=np.float64).T
    return PairCounts(A, m, n)


def products(A: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(W Aᵀ, W A)``: row ``b`` holds ``(A w_b)_p`` and ``(w_bᵀ A)_q`` (shape ``(B, P)``)."""
    return W @ A.T, W @ A


def obuchowski(RA: list[np.ndarray], CA: list[np.ndarray], m: np.ndarray, n: np.ndarray,
               W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (``(B, k)``) and Obuchowski covariance (``(B, k, k)``) of ``k`` modalities for every
    row of patient multiplicities ``W`` (``(B, P)``), from the products of :func:`products`
    (``RA[j] = W A_jᵀ``, ``CA[j] = W A_j``).

    A patient drawn ``w_p`` times is ``w_p`` clusters with cluster sums ``V10_p = (A w)_p / N*``
    and ``V01_q = (wᵀA)_q / M*`` (``M* = w·m``, ``N* = w·n``); ``I₁₀*``, ``I₀₁*``, ``I*`` count
    clusters with multiplicity. With ``W = 1`` this is
    :func:`~spikebench.reports.delong.delong_covariance` with patient clusters."""
    W = np.atleast_2d(W)
    Ms, Ns = W @ m, W @ n
    I10, I01, n_clusters = W @ (m > 0), W @ (n > 0), W.sum(axis=1)
    auc = np.stack([np.sum(W * ra, axis=1) / (Ms * Ns) for ra in RA], axis=1)
    d10 = [ra / Ns[:, None] - m[None, :] * auc[:, j, None] for j, ra in enumerate(RA)]
    d01 = [ca / Ms[:, None] - n[None, :] * auc[:, j, None] for j, ca in enumerate(CA)]
    k = len(RA)
    cov = np.empty((W.shape[0], k, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        f10 = I10 / ((I10 - 1) * Ms) / Ms
        f01 = I01 / ((I01 - 1) * Ns) / Ns
        f11 = n_clusters / (n_clusters - 1) / (Ms * Ns)
        for j in range(k):
            for i in range(j, k):
                c = (f10 * np.sum(W * d10[j] * d10[i], axis=1)
                     + f01 * np.sum(W * d01[j] * d01[i], axis=1)
                     + f11 * (np.sum(W * d10[j] * d01[i], axis=1)
                              + np.sum(W * d10[i] * d01[j], axis=1)))
                cov[:, j, i] = cov[:, i, j] = c
    return auc, cov


def jackknife_auc(pc: PairCounts) -> np.ndarray:
    """Leave-one-patient-out AUCs (``(P,)``) from the pair counts (NaN when a class vanishes)."""
    A, m, n = pc.A, pc.m, pc.n
    total = A.sum() - A.sum(axis=1) - A.sum(axis=0) + np.diag(A)
    den = (m.sum() - m) * (n.sum() - n)
    out = np.full(len(m), np.nan)
    np.divide(total, den, out=out, where=den > 0)
    return out
