"""Which differences between cells are real: paired tests across repeats, Holm–Bonferroni.

Two cells are compared on the repeats both finished (matched by ``repeat``: same split, same
test patients), so the test is paired. With ``n`` matched repeats:

- ``n >= 6``: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided);
- ``n < 6``: exact paired permutation (sign-flip) test on the mean difference: all ``2**n`` sign
  patterns, two-sided.

Either way the smallest attainable two-sided p-value is ``2 / 2**n``: 0.0625 with 5 repeats, so
**no difference can be significant at 0.05 with 5 or fewer repeats**, however large. Pairs with
fewer than 2 matched repeats or with all differences zero get ``p = 1`` (no evidence).

Holm–Bonferroni (step-down) controls the family-wise error rate within one family: all pairwise
comparisons of one metric (every backend pair within a rule plus every rule pair within a
backend), and, for the best-cell marks, the comparisons of the best cell with every other cell
of one column.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd

ALPHA = 0.05
WILCOXON_MIN_N = 6


def min_p_value(n: int) -> float:
    """Smallest two-sided p-value a paired sign-based test can give with ``n`` pairs."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2**n)


def sign_flip_p(diff: np.ndarray) -> float:
    """Exact two-sided paired permutation p-value of ``mean(diff) == 0`` (all sign flips)."""
    diff = np.asarray(diff, dtype=np.float64)
    n = diff.size
    if n == 0 or np.allclose(diff, 0):
        return 1.0
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    stats = np.abs(signs @ diff)
    observed = abs(diff.sum())
    return float(np.mean(stats >= observed - 1e-12 * max(1.0, observed)))


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """Two-sided paired p-value of ``a`` vs ``b`` (same repeats, same order) and the test used."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = diff.size
    if n < 2 or np.allclose(diff, 0):
        return 1.0, "none"
    if n >= WILCOXON_MIN_N:
        from scipy.stats import wilcoxon

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(wilcoxon(diff, alternative="two-sided").pvalue)
        return (p if math.isfinite(p) else 1.0), "wilcoxon"
    return sign_flip_p(diff), "sign-flip"


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (same order as given; NaN stays NaN)."""
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


def _by_repeat(ok: pd.DataFrame, metric: str) -> dict[tuple[str, str], pd.Series]:
    """Per cell: the metric indexed by repeat (one value per repeat, duplicates averaged)."""
    out = {}
    for (backend, rule), g in ok.groupby(["backend", "rule"], sort=False):
        out[(backend, rule)] = g.groupby("repeat")[metric].mean()
    return out


def _compare(x: pd.Series, y: pd.Series) -> dict[str, object]:
    both = x.index.intersection(y.index)
    xa, ya = x.loc[both].to_numpy(float), y.loc[both].to_numpy(float)
    keep = np.isfinite(xa) & np.isfinite(ya)
    p, test = paired_test(xa[keep], ya[keep])
    diff = xa[keep] - ya[keep]
    return {"n_pairs": int(keep.sum()), "mean_diff": float(diff.mean()) if diff.size else np.nan,
            "test": test, "p": p}


def pairwise_comparisons(ok: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Every backend pair within a rule and every rule pair within a backend, per metric, with
    Holm-adjusted p-values (family = one metric). ``mean_diff`` is ``a − b``."""
    rows = []
    for metric in metrics:
        if metric not in ok.columns:
            continue
        cells = _by_repeat(ok, metric)
        family = []
        keys = list(cells)
        for (ca, cb) in itertools.combinations(keys, 2):
            if ca[1] == cb[1]:
                within = f"rule {ca[1]}"
            elif ca[0] == cb[0]:
                within = f"backend {ca[0]}"
            else:
                continue
            family.append({"metric": metric, "within": within,
                           "a": f"{ca[0]} / {ca[1]}", "b": f"{cb[0]} / {cb[1]}",
                           **_compare(cells[ca], cells[cb])})
        if family:
            adjusted = holm(np.array([r["p"] for r in family]))
            for r, adj in zip(family, adjusted):
                r["p_holm"] = float(adj)
                r["significant"] = bool(adj < ALPHA)
            rows.extend(family)
    columns = ["metric", "within", "a", "b", "n_pairs", "mean_diff", "test", "p", "p_holm",
               "significant"]
    return pd.DataFrame(rows, columns=columns)


def best_cell(ok: pd.DataFrame, metric: str, *, higher_is_better: bool = True
              ) -> tuple[tuple[str, str] | None, bool, pd.DataFrame]:
    """The cell with the best mean ``metric``; whether its difference to *every* other cell is
    significant after Holm correction (family = best vs each other cell); and those tests."""
    cells = _by_repeat(ok, metric)
    means = {k: float(np.nanmean(v.to_numpy(float))) if v.notna().any() else np.nan
             for k, v in cells.items()}
    finite = {k: v for k, v in means.items() if math.isfinite(v)}
    if not finite:
        return None, False, pd.DataFrame()
    pick = max if higher_is_better else min
    best = pick(finite, key=finite.__getitem__)
    rows = [{"metric": metric, "best": f"{best[0]} / {best[1]}", "other": f"{k[0]} / {k[1]}",
             **_compare(cells[best], cells[k])} for k in cells if k != best]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return best, False, frame
    frame["p_holm"] = holm(frame["p"].to_numpy())
    significant = bool((frame["p_holm"] < ALPHA).all())
    return best, significant, frame
