"""Metric vs inference time steps: the trained network evaluated with fewer / more steps.

``predictions.parquet`` holds each model's test predictions at several ``steps``;
``train_steps`` is the T it was trained with. Per cell, repeat and T the metrics are recomputed
from the predictions, then averaged over repeats (error bars = std).
"""

from __future__ import annotations

from typing import cast

import pandas as pd
from matplotlib.figure import Figure

from .plotting import LINESTYLES, colour_map, log_axis, new_figure
from .scoring import point_metrics
from .tables import metric_label

METRICS = ("accuracy", "balanced_accuracy")


def data(predictions: pd.DataFrame | None, primary: str) -> pd.DataFrame:
    """Columns backend, rule, steps, trained (bool), metric, mean, std; only cells evaluated at
    more than one T."""
    if predictions is None or predictions.empty:
        return pd.DataFrame()
    metrics = tuple(dict.fromkeys((*METRICS, primary.removeprefix("test_"))))
    rows = []
    for (backend, rule), cell in predictions.groupby(["backend", "rule"], sort=False):
        if cell["steps"].nunique() < 2:
            continue
        for key, g in cell.groupby(["repeat", "steps"]):
            repeat, steps = cast(tuple[int, int], key)
            values = point_metrics(metrics, g)
            trained = bool((g["steps"] == g["train_steps"]).all())
            rows += [{"backend": backend, "rule": rule, "repeat": repeat, "steps": int(steps),
                      "trained": trained, "metric": m, "value": v} for m, v in values.items()]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    return (frame.groupby(["backend", "rule", "steps", "metric"], sort=False)
            .agg(mean=("value", "mean"), std=("value", "std"), trained=("trained", "any"))
            .reset_index())


def draw(frame: pd.DataFrame) -> Figure | None:
    """One panel per metric; filled big marker = the trained T."""
    if frame.empty:
        return None
    metrics = list(dict.fromkeys(frame["metric"]))
    colours = colour_map(list(dict.fromkeys(frame["backend"])))
    rules = list(dict.fromkeys(frame["rule"]))
    style = {r: LINESTYLES[i % len(LINESTYLES)] for i, r in enumerate(rules)}
    fig = new_figure(3.4 * len(metrics) + 2.4, 3.7)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for (backend, rule), g in frame[frame["metric"] == metric].groupby(
                ["backend", "rule"], sort=False):
            g = g.sort_values("steps")
            ax.errorbar(g["steps"], g["mean"], yerr=g["std"].fillna(0), color=colours[backend],
                        ls=style[rule], marker="o", ms=3, capsize=2, label=f"{backend} / {rule}")
            t = g[g["trained"]]
            ax.plot(t["steps"], t["mean"], "o", ms=8, color=colours[backend], mec="black")
        log_axis(ax, "x", base=2, values=frame["steps"].to_numpy(float), exact=True)
        ax.set_xlabel("time steps T at inference\n(log scale; ringed = trained T)")
        ax.set_ylabel(f"test {metric_label(metric)}")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Metric vs inference time steps (mean ± std over repeats)")
    return fig
