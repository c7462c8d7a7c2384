"""Patient-level bootstrap confidence intervals of a cell's test metrics.

Slices of one patient are correlated, so the unit that is resampled is the patient, never the
slice. The exact scheme (a test re-implements it naively and must get the same numbers):

1. For each repeat ``r`` of the cell (sorted), take the test predictions at the trained number
   of time steps and its test patients sorted by id (``n_r`` of them).
2. Draw ``B`` resamples of ``n_r`` patients with replacement from
   ``numpy.random.default_rng([seed, r])`` as ``rng.integers(0, n_r, size=(B, n_r))``. The
   generator depends on the seed and the repeat only, so every cell of a repeat (same test
   patients) sees the same resamples: common random numbers, which keeps cells comparable.
3. Replicate ``b`` of a metric is computed on the slices of the drawn patients (a patient
   drawn ``k`` times counts ``k`` times).
4. Pool across repeats: replicate ``b`` of the cell is the mean over repeats of the
   replicate-``b`` values (NaN values, e.g. a resample with one class, are skipped).
5. The 95 % interval is the 2.5th and 97.5th percentile of the pooled replicates (percentile
   bootstrap). It describes the uncertainty of the mean-over-repeats due to *which test patients*
   were drawn; the spread due to training seeds and splits is the ± std column.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .scoring import weighted_metrics

CONFIDENCE = 0.95


def patient_counts(n_patients: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """How many times each patient is drawn in each replicate: shape ``(B, n_patients)``."""
    idx = rng.integers(0, n_patients, size=(n_bootstrap, n_patients))
    flat = idx + (np.arange(n_bootstrap) * n_patients)[:, None]
    counts = np.bincount(flat.ravel(), minlength=n_bootstrap * n_patients)
    return counts.reshape(n_bootstrap, n_patients).astype(np.float64)


def cell_replicates(predictions: pd.DataFrame, metrics: tuple[str, ...], *, n_bootstrap: int,
                    seed: int) -> dict[str, np.ndarray]:
    """Pooled bootstrap replicates (shape ``(B,)``) per metric for one cell's predictions
    (already restricted to the trained time steps; column ``repeat`` tells repeats apart)."""
    per_repeat: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for repeat, frame in sorted(predictions.groupby("repeat"), key=lambda kv: kv[0]):
        n = frame["patient_id"].nunique()
        rng = np.random.default_rng([seed, int(repeat)])
        values = weighted_metrics(metrics, frame, patient_counts(n, n_bootstrap, rng))
        for m in metrics:
            per_repeat[m].append(values[m])
    out = {}
    for m, rows in per_repeat.items():
        if not rows:
            out[m] = np.full(n_bootstrap, np.nan)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicate → NaN
            out[m] = np.nanmean(np.vstack(rows), axis=0)
    return out


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE
                        ) -> tuple[float, float]:
    """The percentile interval of the finite replicates (NaN, NaN when there are none)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def cell_intervals(predictions: pd.DataFrame, metrics: tuple[str, ...], *, n_bootstrap: int,
                   seed: int) -> dict[str, tuple[float, float]]:
    """95 % patient-bootstrap interval per metric for one cell (see the module docstring)."""
    reps = cell_replicates(predictions, metrics, n_bootstrap=n_bootstrap, seed=seed)
    return {m: percentile_interval(v) for m, v in reps.items()}
