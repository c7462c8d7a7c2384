"""Score vs synaptic operations; the Pareto front only for a multi-objective study.

Left: every complete tuning trial (validation objective vs the trial's ``synops_per_sample``
user attribute; a multi-objective study's ``pareto`` flags are ringed). Right: every finished
cell's refit (test primary metric vs synops per sample, mean ± std over repeats). The axes and
title name the metrics actually plotted.

A single-objective study optimised the metric alone, so no trade-off front is drawn for it.
For a multi-objective study (``[search].minimize``) the drawn front is recomputed from the
plotted points: a point is on it when no other point has at most its operations and at least
its metric, one of them strictly.

Coincident points are the common case, not the exception: seeded backends are numerically
equal, so one configuration trained on three backends gives three identical points. Alpha
cannot show three identical markers and jitter would move points off their values (on a log
axis, by an amount that depends on where they are), so each backend's markers have their own
size, drawn largest first (:func:`marker_scale`): coincident points show as concentric rings
in every backend's colour, each at its exact position.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figure_history import objective_column
from .plotting import colour_map, log_axis, new_figure
from .tables import metric_label

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def marker_scale(backends: list[str]) -> dict[str, float]:
    """Backend → marker size factor: the first backend's markers are the largest (drawn first,
    underneath), each next one 0.7 × smaller in diameter, so that points of several backends at
    one position stay visible as rings."""
    return {b: 0.7 ** -(len(backends) - 1 - i) for i, b in enumerate(backends)}


def pareto_mask(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """True where (cost, score) is not dominated (lower cost and higher score are better)."""
    cost, score = np.asarray(cost, float), np.asarray(score, float)
    ok = np.isfinite(cost) & np.isfinite(score)
    mask = np.zeros(cost.shape, bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (cost <= cost[i]) & (score >= score[i]) & (
            (cost < cost[i]) | (score > score[i]))
        mask[i] = not dominated.any()
    return mask


def is_multi_objective(trials: pd.DataFrame | None) -> bool:
    """True when ``trials`` holds a second objective (``values_1``) with numbers."""
    return (trials is not None and "values_1" in trials.columns
            and bool(pd.to_numeric(trials["values_1"], errors="coerce").notna().any()))


def trial_points(trials: pd.DataFrame | None) -> pd.DataFrame:
    """Complete trials with backend, rule, synops, objective, flagged (pareto column)."""
    if trials is None or trials.empty:
        return pd.DataFrame()
    col = objective_column(trials)
    synops_col = next((c for c in ("user_attrs_synops_per_sample", "synops_per_sample")
                       if c in trials.columns), None)
    if col is None or synops_col is None:
        return pd.DataFrame()
    frame = trials
    if "state" in frame:
        frame = frame[frame["state"].astype(str).str.upper().str.contains("COMPLETE")]
    multi = is_multi_objective(frame)
    out = pd.DataFrame({
        "backend": frame["backend"], "rule": frame["rule"],
        "synops": pd.to_numeric(frame[synops_col], errors="coerce"),
        "objective": pd.to_numeric(frame[col], errors="coerce"),
        "flagged": frame["pareto"].astype(bool) if (multi and "pareto" in frame) else False,
    }).dropna(subset=["synops", "objective"])
    out["front"] = pareto_mask(out["synops"].to_numpy(), out["objective"].to_numpy())
    return out


def cell_points(main: pd.DataFrame, primary: str) -> pd.DataFrame:
    """SNN cells: synops mean/std and primary mean/std, with the front flag."""
    if main.empty or "synops_per_sample_mean" not in main:
        return pd.DataFrame()
    snn = main[(main["kind"] == "snn") & main["synops_per_sample_mean"].notna()
               & main[f"{primary}_mean"].notna()]
    out = pd.DataFrame({"backend": snn["backend"], "rule": snn["rule"],
                        "synops": snn["synops_per_sample_mean"],
                        "synops_std": snn["synops_per_sample_std"],
                        "score": snn[f"{primary}_mean"], "score_std": snn[f"{primary}_std"]})
    out["front"] = pareto_mask(out["synops"].to_numpy(), out["score"].to_numpy())
    return out


def _front_line(ax, x: np.ndarray, y: np.ndarray) -> None:
    order = np.argsort(x)
    ax.step(x[order], y[order], where="post", color="black", lw=1.2, alpha=0.7,
            label="Pareto front")


def draw(trials: pd.DataFrame, cells: pd.DataFrame, primary: str, *, multi: bool = False,
         objective: str = "validation objective") -> Figure | None:
    """Two panels (tuning trials, refit cells); markers by rule, colours by backend. The
    Pareto front is drawn only when ``multi`` (a multi-objective study); ``objective`` names
    the trials' validation metric on the y axis."""
    if trials.empty and cells.empty:
        return None
    both = pd.concat([trials[["backend", "rule"]] if not trials.empty else None,
                      cells[["backend", "rule"]] if not cells.empty else None])
    backends = list(dict.fromkeys(both["backend"]))
    colours = colour_map(backends)
    scale = marker_scale(backends)
    rules = list(dict.fromkeys(both["rule"]))
    marker = {r: MARKERS[i % len(MARKERS)] for i, r in enumerate(rules)}
    panels = [(p, f) for p, f in (("trials", trials), ("cells", cells)) if not f.empty]
    fig = new_figure(4.8 * len(panels) + 2.4, 4.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (kind, frame) in zip(axes, panels):
        for key, g in frame.groupby(["backend", "rule"], sort=False):
            backend, rule = cast(tuple[str, str], key)
            label = f"{backend} / {rule}"
            if kind == "trials":
                ax.scatter(g["synops"], g["objective"], s=18 * scale[backend] ** 2, alpha=0.75,
                           label=label, color=colours[backend], marker=marker[rule],
                           edgecolors="white", linewidths=0.4,
                           zorder=2 + backends.index(backend))
                flagged = g[g["flagged"]]
                if len(flagged):
                    ax.scatter(flagged["synops"], flagged["objective"],
                               s=45 * scale[backend] ** 2,
                               facecolors="none", edgecolors="black", lw=1)
            else:
                ax.errorbar(g["synops"], g["score"], xerr=g["synops_std"].fillna(0),
                            yerr=g["score_std"].fillna(0), fmt=marker[rule],
                            ms=6 * scale[backend], mec="white", mew=0.6,
                            color=colours[backend], label=label, capsize=2, elinewidth=1,
                            zorder=2 + backends.index(backend))
        front = frame[frame["front"]]
        y = front["objective" if kind == "trials" else "score"].to_numpy(float)
        if multi and len(front):
            _front_line(ax, front["synops"].to_numpy(float), y)
        log_axis(ax, "x", values=frame["synops"].to_numpy(float))
        ax.set_xlabel("synaptic operations per sample (log scale)")
        ax.set_ylabel(objective if kind == "trials" else f"test {metric_label(primary)}")
        low, high = ax.get_ylim()  # metrics end at 1: error bars must not stretch the axis
        ax.set_ylim(low, min(high, 1.02))
        ax.set_title("tuning trials" if kind == "trials" else "refit cells (mean ± std)",
                     fontsize=10)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[-1].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[:-1]:
        h, lab = ax.get_legend_handles_labels()
        seen.update({k: v for k, v in zip(lab, h) if k not in seen})
    fig.legend(seen.values(), seen.keys(), loc="outside right center", fontsize=8)
    names = {"trials": objective, "cells": f"test {metric_label(primary)}"}
    title = " and ".join(names[k] for k, _ in panels) + " vs synaptic operations"
    fig.suptitle(title[0].upper() + title[1:] + (" with the Pareto front" if multi else ""))
    return fig
