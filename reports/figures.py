"""The report's figures: for each, its file name, caption, the data it plots and how it is drawn.

Each figure kind is its own module (``figure_*``) with a ``data(...)`` function that returns
exactly what its ``draw(...)`` plots; :func:`figure_plans` binds them to one study's tables.
Keeping the data apart from the drawing is what lets a test recompute every figure's numbers
from the tables and compare (a figure must never contradict the table next to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import (
    figure_confusion,
    figure_heatmap,
    figure_history,
    figure_importance,
    figure_labels,
    figure_pareto,
    figure_patient_curves,
    figure_steps,
    figure_training_time,
)
from .load import StudyTables
from .tables import metric_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class FigurePlan:
    """One figure of the report: ``draw(data())`` is the figure (None: nothing to draw)."""

    name: str
    caption: str
    data: Callable[[], Any]
    draw: Callable[[Any], Figure | None]

    def make(self) -> Figure | None:
        """The figure, drawn from its data."""
        return self.draw(self.data())


def objective_label(t: StudyTables) -> str:
    """``validation PR-AUC``: the metric Optuna maximised (the spec's ``[study].metric``)."""
    study = t.spec.get("study")
    study = study if isinstance(study, dict) else {}
    metric = study.get("metric") or t.protocol.get("metric")
    return f"validation {metric_label(str(metric))}" if metric else "validation objective"


def patient_prevalence(preds: pd.DataFrame | None) -> float | None:
    """Share of lesion patients among the pooled (repeat, patient) pairs: the PR chance line."""
    if preds is None or preds.empty:
        return None
    patients = figure_patient_curves.pooled_patients(preds)
    return float(patients["label"].mean())


def figure_plans(t: StudyTables, main: pd.DataFrame, primary: str) -> list[FigurePlan]:
    """Every figure of the report of ``t`` whose main table is ``main`` and primary metric
    ``primary`` (a ``test_*`` column), in the report's order."""
    preds = t.primary_predictions()
    objective = objective_label(t)
    multi = figure_pareto.is_multi_objective(t.trials)
    history = figure_history.data(t.trials)
    prevalence = patient_prevalence(preds)
    pareto_caption = (
        f"{objective[0].upper()}{objective[1:]} of every tuning trial and test "
        f"{metric_label(primary)} of every cell vs synaptic operations per sample (log scale)"
        + (" with the Pareto front." if multi else " (single objective: no Pareto front).")
        + " Points at the same position show as concentric rings, one per backend.")
    return [
        FigurePlan("heatmap",
                   f"Backend × rule heatmap of test {metric_label(primary)} (SNN cells).",
                   lambda: figure_heatmap.data(main, primary),
                   lambda d: figure_heatmap.draw(d[0], d[1], primary)),
        FigurePlan("optimisation_history", figure_history.caption(history, objective),
                   lambda: history, lambda d: figure_history.draw(d, objective)),
        FigurePlan("parameter_importance", "Hyper-parameter importance per cell (η² main "
                   "effects, see Methods).",
                   lambda: figure_importance.data(t.trials), figure_importance.draw),
        FigurePlan("pareto", pareto_caption,
                   lambda: (figure_pareto.trial_points(t.trials),
                            figure_pareto.cell_points(main, primary)),
                   lambda d: figure_pareto.draw(d[0], d[1], primary, multi=multi,
                                              objective=objective)),
        FigurePlan("training_time", "Training seconds per epoch per backend and rule (log "
                   "scale; mean ± std over refits). Rules that do not train in epochs (solver "
                   "fits such as logistic regression) have no time per epoch and are left out.",
                   lambda: figure_training_time.data(main), figure_training_time.draw),
        FigurePlan("patient_roc_pr", "Patient-level ROC and precision–recall curves, each "
                   "pooling the test patients of all repeats (patient score = max slice "
                   "probability; dotted grey: chance). The legend quotes the main table's mean "
                   "over repeats, not the area under the pooled curve.",
                   lambda: figure_patient_curves.data(preds),
                   lambda d: figure_patient_curves.draw(d, prevalence,
                                                        figure_patient_curves.table_areas(main))),
        FigurePlan("confusion", "Slice-level confusion matrices at each model's decision "
                   "threshold chosen on validation (the tables' threshold; t in each title), "
                   "counts of all repeats pooled; each title quotes the main table's accuracy "
                   "and balanced accuracy.",
                   lambda: figure_confusion.data(preds), figure_confusion.draw),
        FigurePlan("inference_steps", "Test metrics vs time steps at inference (log scale; "
                   "trained T ringed), each model at its validation-chosen threshold, mean ± "
                   "std over repeats: at the trained T, the main table's numbers.",
                   lambda: figure_steps.data(t.thresholded_predictions(), primary),
                   figure_steps.draw),
        FigurePlan("labels_used", "Active learning: validation metrics vs labels used per "
                   "strategy.", lambda: figure_labels.data(t.curves), figure_labels.draw),
    ]
