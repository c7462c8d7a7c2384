"""Patient-level ROC and precision–recall curves per cell, pooled over repeats.

A patient's score is its maximum slice probability and its label is 1 when any slice has a
lesion (as for ``patient_roc_auc`` / ``patient_pr_auc``). The (repeat, patient) pairs of all
repeats are pooled into one curve per cell (a curve per repeat would be a tangle). The legend
quotes the same numbers as the main table — the mean over repeats of each repeat's area, see
:func:`table_areas` — not the area under the pooled curve, which can differ; a cell the table
lacks falls back to the pooled area and says so.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plotting import CHANCE, LINESTYLES, cell_label, colour_map, new_figure
from .scoring import curve_points, patient_table, ranking


def pooled_patients(predictions: pd.DataFrame) -> pd.DataFrame:
    """Columns backend, rule, repeat, patient_id, label, prob (one row per repeat × patient)."""
    frames = []
    for key, g in predictions.groupby(["backend", "rule", "repeat"], sort=False):
        backend, rule, repeat = cast(tuple[str, str, int], key)
        p = patient_table(g)
        p.insert(0, "repeat", repeat)
        p.insert(0, "rule", rule)
        p.insert(0, "backend", backend)
        frames.append(p)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def data(predictions: pd.DataFrame | None) -> pd.DataFrame:
    """Long table backend, rule, curve (roc / pr), x, y, area (pooled)."""
    if predictions is None or predictions.empty:
        return pd.DataFrame()
    patients = pooled_patients(predictions)
    frames = []
    for (backend, rule), g in patients.groupby(["backend", "rule"], sort=False):
        y, p = g["label"].to_numpy(), g["prob"].to_numpy(float)
        if len(np.unique(y)) < 2:
            continue
        # pooled areas with the same code as the tables (every pooled patient weight 1)
        areas = {k: float(v[0]) for k, v in ranking(("roc_auc", "pr_auc"), y, p,
                                                     np.ones((1, len(y)))).items()}
        pts = curve_points(y, p)
        frames.append(pd.DataFrame({"backend": backend, "rule": rule, "curve": "roc",
                                    "x": pts["fpr"], "y": pts["tpr"], "area": areas["roc_auc"]}))
        frames.append(pd.DataFrame({"backend": backend, "rule": rule, "curve": "pr",
                                    "x": np.r_[0.0, pts["recall"]],
                                    "y": np.r_[pts["precision"][0], pts["precision"]],
                                    "area": areas["pr_auc"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def table_areas(main: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float]]:
    """(backend, rule) → (patient ROC-AUC, patient PR-AUC) as the main table shows them: the
    mean over repeats of ``test_patient_roc_auc`` / ``test_patient_pr_auc``."""
    cols = ("test_patient_roc_auc_mean", "test_patient_pr_auc_mean")
    if main.empty or not all(c in main for c in cols):
        return {}
    return {(str(r.backend), str(r.rule)): (float(getattr(r, cols[0])), float(getattr(r, cols[1])))
            for r in main.itertuples(index=False)}


def _legend_label(backend: str, rule: str, g: pd.DataFrame,
                  areas: dict[tuple[str, str], tuple[float, float]]) -> str:
    if (backend, rule) in areas and all(np.isfinite(areas[(backend, rule)])):
        roc, pr = areas[(backend, rule)]
        return f"{cell_label(backend, rule)}: {roc:.3f} / {pr:.3f}"
    roc, pr = (float(g[g["curve"] == c]["area"].iloc[0]) for c in ("roc", "pr"))
    return f"{cell_label(backend, rule)}: {roc:.3f} / {pr:.3f} (pooled)"


def draw(frame: pd.DataFrame, prevalence: float | None = None,
         areas: dict[tuple[str, str], tuple[float, float]] | None = None) -> Figure | None:
    """ROC (left) and PR (right) with one legend for both, outside: colour = backend, line
    style = rule (never dotted; dotted grey = chance). Each entry quotes ``areas`` (see
    :func:`table_areas`), the numbers of the main table."""
    if frame.empty:
        return None
    areas = areas or {}
    colours = colour_map(list(dict.fromkeys(frame["backend"])))
    rules = list(dict.fromkeys(frame["rule"]))
    style = {r: LINESTYLES[i % len(LINESTYLES)] for i, r in enumerate(rules)}
    fig = new_figure(11.5, 5.0)
    ax_roc, ax_pr = fig.subplots(1, 2)
    for key, g in frame.groupby(["backend", "rule"], sort=False):
        backend, rule = cast(tuple[str, str], key)
        label = _legend_label(backend, rule, g, areas)
        for ax, curve in ((ax_roc, "roc"), (ax_pr, "pr")):
            c = g[g["curve"] == curve]
            kw = {"color": colours[backend], "ls": style[rule], "lw": 1.5, "label": label}
            if curve == "roc":  # straight segments (trapezoidal area)
                ax.plot(c["x"], c["y"], **kw)
            else:  # precision holds on (R_{k-1}, R_k]: average precision is this step area
                ax.step(c["x"], c["y"], where="pre", **kw)
    ax_roc.plot([0, 1], [0, 1], **CHANCE)
    if prevalence is not None and np.isfinite(prevalence):
        ax_pr.axhline(prevalence, **CHANCE)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate",
               title="Patient ROC (curve: all repeats pooled)", xlim=(0, 1), ylim=(0, 1.02))
    ax_pr.set(xlabel="recall", ylabel="precision",
              title="Patient precision–recall (curve: all repeats pooled)", xlim=(0, 1),
              ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.set_aspect("equal")
    handles, labels = ax_roc.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8,
               title="patient ROC-AUC / PR-AUC\nmean over repeats, as in the table",
               title_fontsize=8)
    return fig
