"""Optimisation history per cell: every trial's objective value and the running best."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .plotting import cell_label, grid_shape, new_figure


def objective_column(trials: pd.DataFrame) -> str | None:
    """``value`` (single objective) or ``values_0`` (first objective of a multi-objective
    study), whichever holds numbers."""
    for col in ("value", "values_0"):
        if col in trials.columns and pd.to_numeric(trials[col], errors="coerce").notna().any():
            return col
    return None


def data(trials: pd.DataFrame | None) -> pd.DataFrame:
    """Complete trials with columns backend, rule, number, objective, best_so_far."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    col = objective_column(trials)
    if col is None:
        return pd.DataFrame()
    frame = trials.copy()
    if "state" in frame:
        frame = frame[frame["state"].astype(str).str.upper().str.contains("COMPLETE")]
    frame = frame.assign(objective=pd.to_numeric(frame[col], errors="coerce"))
    frame = frame.dropna(subset=["objective"]).sort_values("number", kind="stable")
    frame["best_so_far"] = frame.groupby(["backend", "rule"], sort=False)["objective"].cummax()
    return frame[["backend", "rule", "number", "objective", "best_so_far"]]


def draw(frame: pd.DataFrame, objective: str = "validation objective") -> Figure | None:
    """Small multiples, one panel per cell (shared y axis)."""
    if frame.empty:
        return None
    cells = list(dict.fromkeys(zip(frame["backend"], frame["rule"])))
    n_rows, n_cols = grid_shape(len(cells))
    fig = new_figure(4.2 * n_cols, 2.7 * n_rows)
    axes = fig.subplots(n_rows, n_cols, sharey=True, squeeze=False)
    for ax, (backend, rule) in zip(axes.flat, cells):
        g = frame[(frame["backend"] == backend) & (frame["rule"] == rule)]
        ax.scatter(g["number"], g["objective"], s=14, color="#0072B2", alpha=0.6,
                   label="trial")
        ax.step(g["number"], g["best_so_far"], where="post", color="#D55E00", label="best so far")
        ax.set_title(cell_label(backend, rule), fontsize=10)
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(objective)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    # outside the panels: a legend inside one would hide some of its points
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle("Optimisation history (validation, complete trials)")
    return fig
