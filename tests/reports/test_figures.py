"""A reader looks at the report's figures and LaTeX tables; each must say what it shows.

Invariants: a legend number is the statistic of the table next to it; a curve is never drawn
like the chance line; a single-objective study draws no Pareto front; a log axis has a tick
at each plotted time step; a legend never sits on the data; LaTeX tables fit an article's
text width and carry a caption and a label; in Chromium no image is wider than the page.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from spikebench.reports import (
    build_report,
    figure_history,
    figure_pareto,
    figure_patient_curves,
    figure_steps,
    load_study,
)
from spikebench.reports.render import TEXT_WIDTH_PT, TextTable, latex_parts, latex_width, to_latex
from spikebench.reports.tables import main_table


@pytest.fixture(scope="module")
def study(tmp_path_factory, make_synthetic_study, study_plan):
    plan = study_plan(backends=("custom", "snntorch"), rules=("surrogate", "tempotron"),
                      repeats=3, n_patients=32, n_trials=8)
    return make_synthetic_study(tmp_path_factory.mktemp("figs") / "study", plan)


@pytest.fixture(scope="module")
def report(study):
    return build_report(study, n_bootstrap=20)


def test_curve_legend_quotes_the_table_mean_not_the_pooled_area(study):
    tables = load_study(study)
    main = main_table(tables, n_bootstrap=5)
    areas = figure_patient_curves.table_areas(main)
    fig = figure_patient_curves.draw(figure_patient_curves.data(tables.primary_predictions()),
                                     0.5, areas)
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert "mean over repeats" in legend.get_title().get_text()
    for rec in main.to_dict("records"):
        label = f"{rec['backend']} / {rec['rule']}: "
        entry = next(t for t in texts if t.startswith(label))
        assert entry == (f"{label}{rec['test_patient_roc_auc_mean']:.3f} / "
                         f"{rec['test_patient_pr_auc_mean']:.3f}")
    # one legend for both panels; no panel title promises a legend it lacks
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert not any("legend" in ax.get_title() for ax in fig.axes)
    # only the chance line is dotted
    for ax in fig.axes:
        for line in ax.get_lines():
            assert (line.get_linestyle() == ":") == (line.get_label() in ("chance", "_child"))


def test_single_objective_draws_no_pareto_front(study):
    tables = load_study(study)
    main = main_table(tables, n_bootstrap=5)
    trials, cells = (figure_pareto.trial_points(tables.trials),
                     figure_pareto.cell_points(main, "test_patient_pr_auc"))
    assert not figure_pareto.is_multi_objective(tables.trials)
    fig = figure_pareto.draw(trials, cells, "test_patient_pr_auc", objective="validation PR-AUC")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Pareto front" not in labels and "Pareto" not in fig.get_suptitle()
    assert "accuracy" not in fig.get_suptitle().lower()
    assert "PR-AUC" in fig.get_suptitle()
    multi = figure_pareto.draw(trials, cells, "test_patient_pr_auc", multi=True)
    assert "Pareto front" in [t.get_text() for t in multi.legends[0].get_texts()]


def test_log_step_axis_has_a_tick_at_every_plotted_t():
    frame = pd.DataFrame([{"backend": "custom", "rule": "surrogate", "steps": t,
                           "metric": "accuracy", "mean": 0.8, "std": 0.01, "trained": t == 20}
                          for t in (10, 20, 40)])
    fig = figure_steps.draw(frame)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = {t.get_text() for t in ax.get_xticklabels() if t.get_text()}
    assert {"10", "20", "40"} <= labels


def test_history_legend_is_outside_the_panels(study):
    fig = figure_history.draw(figure_history.data(load_study(study).trials), "validation PR-AUC")
    assert fig.legends and all(ax.get_legend() is None for ax in fig.axes)


def _wide_table() -> TextTable:
    metrics = ["patient PR-AUC", "balanced acc.", "accuracy", "ROC-AUC", "PR-AUC", "F1", "MCC",
               "patient ROC-AUC"]
    rows = [["spikingjelly", "logistic_regression", "6",
             *["0.912 ± 0.031 [0.880, 0.941]"] * len(metrics)] for _ in range(4)]
    return TextTable("performance", "Test-set performance: mean ± std [95 % interval]",
                     ["backend", "rule", "repeats", *metrics], rows, {(0, 3)})


def test_latex_tables_fit_the_text_width_with_caption_and_label(report):
    table = _wide_table()
    parts = latex_parts(table)
    assert len(parts) > 1 and all(p[:3] == [0, 1, 2] for p in parts)
    assert sorted({j for p in parts for j in p}) == list(range(len(table.header)))
    assert all(latex_width(table, p) <= TEXT_WIDTH_PT for p in parts)
    tex = to_latex(table)
    assert tex.count(r"\begin{table}") == len(parts) == tex.count(r"\caption{")
    assert [f"tab:performance-{k}" for k in range(1, len(parts) + 1)] == re.findall(
        r"\\label\{([^}]*)\}", tex)
    for path in (report / "tables").glob("*.tex"):
        text = path.read_text()
        n = text.count(r"\begin{tabular}{")
        assert n and text.count(r"\caption{") == n == text.count(r"\label{tab:"), path.name


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex installed")
def test_latex_tables_compile_without_overfull_boxes(report, tmp_path):
    inputs = "\n".join(rf"\input{{{p}}}\clearpage" for p in sorted(
        (report / "tables").glob("*.tex")))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{inputs}\n\\input{{{tmp_path / 'wide.tex'}}}\n\\end{{document}}\n")
    (tmp_path / "wide.tex").write_text(to_latex(_wide_table()))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)


@pytest.mark.slow
def test_no_image_is_wider_than_the_page_in_chromium(report):
    from spikebench.reports.browser import find_browser, measure_layout

    if find_browser() is None:
        pytest.skip("no chromium installed")
    layout = measure_layout(report / "report.html", width=1400)
    assert layout["scroll"] <= layout["page"]  # no horizontal scroll bar
    assert len(layout["images"]) >= 8
    for image in layout["images"]:
        assert image["right"] <= layout["page"], image
        assert image["shown"] <= image["container"] + 0.5, image
        # shown at 1:1: the figure's text is as legible as it was drawn
        assert image["natural"] <= image["container"], image
    narrow = measure_layout(report / "report.html", width=700)
    assert all(i["right"] <= narrow["page"] for i in narrow["images"])
    assert np.isfinite(narrow["page"])
