"""Active learning: validation metric vs labels used, uncertainty vs random querying."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .plotting import LINESTYLES, colour_map, new_figure

METRICS = {"val_balanced_accuracy": "validation balanced acc.", "val_pr_auc": "validation PR-AUC"}


def data(curves: pd.DataFrame | None) -> pd.DataFrame:
    """Per cell × strategy × labels_used: mean and std over repeats of each curve metric."""
    if curves is None or curves.empty:
        return pd.DataFrame()
    present = [m for m in METRICS if m in curves.columns]
    if not present:
        return pd.DataFrame()
    long = curves.melt(id_vars=["backend", "rule", "repeat", "strategy", "labels_used"],
                       value_vars=present, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return (long.groupby(["backend", "rule", "strategy", "labels_used", "metric"], sort=False)
            ["value"].agg(["mean", "std"]).reset_index())


def draw(frame: pd.DataFrame) -> Figure | None:
    """One panel per metric; colour = cell, line style = strategy."""
    if frame.empty:
        return None
    metrics = list(dict.fromkeys(frame["metric"]))
    cells = [f"{b} / {r}" for b, r in dict.fromkeys(zip(frame["backend"], frame["rule"]))]
    colours = colour_map(cells)
    strategies = list(dict.fromkeys(frame["strategy"]))
    style = {s: LINESTYLES[i % len(LINESTYLES)] for i, s in enumerate(strategies)}
    fig = new_figure(3.8 * len(metrics) + 2.6, 3.7)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        sub = frame[frame["metric"] == metric]
        for (backend, rule, strategy), g in sub.groupby(["backend", "rule", "strategy"],
                                                        sort=False):
            g = g.sort_values("labels_used")
            cell = f"{backend} / {rule}"
            ax.plot(g["labels_used"], g["mean"], color=colours[cell], ls=style[strategy],
                    marker="o", ms=3, label=f"{cell}, {strategy}")
            ax.fill_between(g["labels_used"], g["mean"] - g["std"].fillna(0),
                            g["mean"] + g["std"].fillna(0), color=colours[cell], alpha=0.12)
        ax.set_xlabel("labels used")
        ax.set_ylabel(METRICS.get(metric, metric))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Active learning: metric vs labels used (mean ± std over repeats)")
    return fig
