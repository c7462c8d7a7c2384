"""Metric vs inference time steps: the trained network evaluated with fewer / more steps.

``predictions.parquet`` holds each model's test predictions at several ``steps``;
``train_steps`` is the T it was trained with. Per cell and T the metrics are recomputed from
the predictions as the main table computes them (:mod:`spikebench.reports.per_repeat`: each
model at its own validation-chosen threshold, averaged within a repeat, then mean ± std over
repeats), so at the trained T the figure shows the table's numbers.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .per_repeat import repeat_summary
from .plotting import LINESTYLES, colour_map, log_axis, new_figure
from .tables import metric_label

METRICS = ("accuracy", "balanced_accuracy")


def data(predictions: pd.DataFrame | None, primary: str) -> pd.DataFrame:
    """Columns backend, rule, steps, metric, mean, std, trained (bool: the T the cell was
    trained with); only cells evaluated at more than one T. ``predictions`` carry each model's
    ``threshold`` (:meth:`~spikebench.reports.load.StudyTables.thresholded_predictions`)."""
    if predictions is None or predictions.empty:
        return pd.DataFrame()
    metrics = tuple(dict.fromkeys((*METRICS, primary.removeprefix("test_"))))
    several = predictions.groupby(["backend", "rule"], sort=False)["steps"].transform("nunique")
    predictions = predictions[several > 1]
    if predictions.empty:
        return pd.DataFrame()
    frame = repeat_summary(predictions, metrics, by=("steps",))
    trained = (predictions.assign(trained=predictions["steps"] == predictions["train_steps"])
               .groupby(["backend", "rule", "steps"], sort=False)["trained"].all().reset_index())
    frame = frame.merge(trained, on=["backend", "rule", "steps"], how="left")
    frame["steps"] = frame["steps"].astype(int)
    return frame[["backend", "rule", "steps", "metric", "mean", "std", "trained"]]


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
