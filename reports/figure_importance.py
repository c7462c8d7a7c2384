"""Hyper-parameter importance per cell from ``trials.parquet``.

Method (fast, deterministic, documented rather than fANOVA's random forest): for each parameter,
the share of the objective's variance explained by that parameter alone — the correlation ratio
``η² = Σ_g n_g (ȳ_g − ȳ)² / Σ (y − ȳ)²`` where the groups ``g`` are the parameter's categories,
or, for a numeric parameter, its quantile bins (at most 5, so the scale — log or linear — does not
matter). The η² of a cell's parameters are then normalised to sum to 1. It captures main effects
only (no interactions), like the first-order terms of fANOVA. Cells with fewer than 4 complete
trials get no bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figure_history import objective_column
from .plotting import cell_label, grid_shape, new_figure

MIN_TRIALS = 4
MAX_BINS = 5


def eta_squared(param: pd.Series, y: np.ndarray) -> float:
    """Variance share of ``y`` explained by the groups of ``param`` (see module docstring)."""
    ok = param.notna().to_numpy() & np.isfinite(y)
    param, y = param[ok], y[ok]
    if len(y) < 2 or np.var(y) == 0:
        return 0.0
    numeric = pd.to_numeric(param, errors="coerce")
    if numeric.notna().all() and numeric.nunique() > MAX_BINS:
        groups = pd.qcut(numeric.rank(method="first"), q=min(MAX_BINS, len(y) // 2),
                         labels=False)
    else:
        groups = param.astype(str)
    frame = pd.DataFrame({"g": np.asarray(groups), "y": y})
    means = frame.groupby("g")["y"].agg(["mean", "size"])
    between = float((means["size"] * (means["mean"] - y.mean()) ** 2).sum())
    return between / float(((y - y.mean()) ** 2).sum())


def data(trials: pd.DataFrame | None) -> pd.DataFrame:
    """Columns backend, rule, param, importance (normalised per cell)."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    col = objective_column(trials)
    params = [c for c in trials.columns if c.startswith("params_")]
    if col is None or not params:
        return pd.DataFrame()
    frame = trials
    if "state" in frame:
        frame = frame[frame["state"].astype(str).str.upper().str.contains("COMPLETE")]
    rows = []
    for (backend, rule), g in frame.groupby(["backend", "rule"], sort=False):
        y = pd.to_numeric(g[col], errors="coerce").to_numpy(float)
        if np.isfinite(y).sum() < MIN_TRIALS:
            continue
        used = [p for p in params if g[p].notna().any()]
        eta = {p: eta_squared(g[p], y) for p in used}
        total = sum(eta.values())
        for p, v in eta.items():
            rows.append({"backend": backend, "rule": rule, "param": p.removeprefix("params_"),
                         "importance": v / total if total > 0 else 0.0})
    return pd.DataFrame(rows, columns=["backend", "rule", "param", "importance"])


def draw(frame: pd.DataFrame) -> Figure | None:
    """One horizontal bar chart per cell, most important parameter on top."""
    if frame.empty:
        return None
    cells = list(dict.fromkeys(zip(frame["backend"], frame["rule"])))
    n_rows, n_cols = grid_shape(len(cells))
    most = frame.groupby(["backend", "rule"]).size().max()
    fig = new_figure(4.2 * n_cols, (0.28 * most + 1.1) * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax, (backend, rule) in zip(axes.flat, cells):
        g = frame[(frame["backend"] == backend) & (frame["rule"] == rule)]
        g = g.sort_values("importance")
        ax.barh(g["param"], g["importance"], color="#009E73")
        ax.set_xlim(0, 1)
        ax.set_title(cell_label(backend, rule), fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.suptitle("Parameter importance (share of objective variance, η², normalised)")
    return fig
