"""A reader compares each figure of the report with the table next to it: they must agree.

Every figure kind exposes the data it plots (``figure_*.data``, bound to a study by
``figures.figure_plans``); here each is recomputed from the tables and compared: confusion
matrices at the validation-chosen thresholds the tables use, metric-vs-T at the trained T equal
to the main table, training time per epoch only for rules that train in epochs, the heatmap
and the Pareto cells equal to the main table. And every figure reads at 800 px: log axes say
so, no text is smaller than the readable minimum, coincident points stay visible; every LaTeX
table the report writes is ASCII and compiles.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from spikebench.reports import build_report, load_study
from spikebench.reports.figures import figure_plans
from spikebench.reports.plotting import MIN_TEXT_PX, PNG_DPI, READ_WIDTH_PX, readable
from spikebench.reports.tables import main_table

PRIMARY = "test_patient_pr_auc"
#: The study's decision thresholds per repeat: none is 0.5, so a figure drawn at 0.5 disagrees.
THRESHOLDS = (0.35, 0.62, 0.44)


@pytest.fixture(scope="module")
def study(tmp_path_factory, make_synthetic_study, study_plan):
    plan = study_plan(backends=("custom", "snntorch"), rules=("surrogate", "tempotron"),
                      repeats=3, n_patients=32, n_trials=6, thresholds=THRESHOLDS,
                      curves=False)
    return make_synthetic_study(tmp_path_factory.mktemp("agree") / "study", plan)


@pytest.fixture(scope="module")
def tables(study):
    return load_study(study)


@pytest.fixture(scope="module")
def main(tables):
    return main_table(tables, n_bootstrap=5)


@pytest.fixture(scope="module")
def plans(tables, main):
    return {p.name: p for p in figure_plans(tables, main, PRIMARY)}


def _cells(main: pd.DataFrame) -> dict[tuple[str, str], dict]:
    return {(r["backend"], r["rule"]): r for r in main.to_dict("records")}


def test_confusion_matrices_use_the_tables_thresholds(tables, main, plans):
    frame = plans["confusion"].data()
    table = _cells(main)
    assert len(frame) == len(main)
    # the counts, recomputed by hand: each slice at its own model's threshold
    preds = tables.predictions
    preds = preds[preds["steps"] == preds["train_steps"]].merge(
        tables.results[["backend", "rule", "repeat", "threshold"]],
        on=["backend", "rule", "repeat"])
    for rec in frame.to_dict("records"):
        cell = preds[(preds["backend"] == rec["backend"]) & (preds["rule"] == rec["rule"])]
        hit, pos = cell["prob"] >= cell["threshold"], cell["label"] == 1
        assert (rec["tp"], rec["fn"]) == (int((hit & pos).sum()), int((~hit & pos).sum()))
        assert (rec["fp"], rec["tn"]) == (int((hit & ~pos).sum()), int((~hit & ~pos).sum()))
        # what each panel quotes is the main table's number
        row = table[(rec["backend"], rec["rule"])]
        assert rec["accuracy"] == pytest.approx(row["test_accuracy_mean"], abs=1e-12)
        assert rec["balanced_accuracy"] == pytest.approx(row["test_balanced_accuracy_mean"],
                                                         abs=1e-12)
    snn = frame[frame["backend"] != "reference"]
    assert set(snn["thresholds"]) == {"0.35–0.62"}
    fig = plans["confusion"].make()
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert all("t = " in t and "acc. " in t for t in titles)
    assert "0.5" not in fig.get_suptitle() and "threshold 0.5" not in plans["confusion"].caption


def test_metrics_at_the_trained_steps_equal_the_main_table(main, plans):
    frame = plans["inference_steps"].data()
    assert not frame.empty
    table = _cells(main)
    trained = frame[frame["trained"]]
    checked = 0
    for rec in trained.to_dict("records"):
        row = table[(rec["backend"], rec["rule"])]
        col = f"test_{rec['metric']}"
        assert rec["mean"] == pytest.approx(row[f"{col}_mean"], abs=1e-12), (rec, col)
        assert rec["std"] == pytest.approx(row[f"{col}_std"], abs=1e-12), (rec, col)
        checked += 1
    assert checked == trained.groupby(["backend", "rule"]).ngroups * 3  # acc, bal., primary


def test_training_time_leaves_out_rules_without_epochs(tables, main, plans):
    frame = plans["training_time"].data()
    no_epochs = tables.ok[tables.ok["epochs"].isna()]
    assert set(no_epochs["rule"]) == {"logistic_regression"}
    assert "logistic_regression" not in set(frame["rule"])
    with_epochs = main[main["train_seconds_per_epoch_mean"].notna()]
    assert len(frame) == len(with_epochs) > 0
    merged = frame.merge(with_epochs, on=["backend", "rule"])
    np.testing.assert_allclose(merged["mean"], merged["train_seconds_per_epoch_mean"])
    # the cost table shows no time per epoch for it either
    lr = main[main["rule"] == "logistic_regression"].iloc[0]
    assert np.isnan(lr["train_seconds_per_epoch_mean"])


def test_heatmap_and_pareto_cells_are_the_main_table(main, plans):
    mean, std = plans["heatmap"].data()
    snn = main[main["kind"] == "snn"]
    for rec in snn.to_dict("records"):
        assert mean.loc[rec["backend"], rec["rule"]] == rec[f"{PRIMARY}_mean"]
        assert std.loc[rec["backend"], rec["rule"]] == rec[f"{PRIMARY}_std"]
    _, cells = plans["pareto"].data()
    merged = cells.merge(snn, on=["backend", "rule"])
    assert len(merged) == len(snn)
    np.testing.assert_array_equal(merged["synops"], merged["synops_per_sample_mean"])
    np.testing.assert_array_equal(merged["score"], merged[f"{PRIMARY}_mean"])


def _figures(plans) -> dict:
    out = {}
    for name, plan in plans.items():
        fig = plan.make()
        if fig is not None:
            readable(fig)
            fig.canvas.draw()
            out[name] = fig
    return out


def test_every_figure_reads_at_800_px_and_marks_its_log_axes(plans):
    figures = _figures(plans)
    assert {"confusion", "pareto", "training_time", "inference_steps", "heatmap"} <= set(
        figures)
    for name, fig in figures.items():
        scale = PNG_DPI / 72 * min(1.0, READ_WIDTH_PX / (fig.get_figwidth() * PNG_DPI))
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        for ax in fig.axes:
            texts += [t for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
        small = {t.get_text() for t in texts if t.get_fontsize() * scale < MIN_TEXT_PX - 1e-9}
        assert not small, (name, sorted(small)[:5])
        for ax in fig.axes:
            for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
                if axis.get_scale() == "log" and label:
                    assert "log" in label, (name, label)


def test_coincident_pareto_points_stay_visible(plans):
    trials, cells = plans["pareto"].data()
    same = cells.copy()
    same[["synops", "score", "synops_std", "score_std"]] = [1000.0, 0.8, 0.0, 0.0]
    fig = plans["pareto"].draw((trials, same))
    ax = fig.axes[-1]  # the refit cells: every marker at one position
    markers: dict[str, tuple[float, float]] = {}  # colour -> (marker size, zorder)
    for line in ax.get_lines():
        if line.get_marker() not in (None, "None", "") and line.get_linestyle() == "None":
            size = line.get_markersize()
            if size > markers.get(line.get_color(), (0.0, 0.0))[0]:
                markers[line.get_color()] = (size, line.get_zorder())
    # each backend its own size, the larger drawn first (underneath): concentric rings
    assert len(markers) == 2
    (big, z_big), (small, z_small) = sorted(markers.values(), reverse=True)
    assert big >= small / 0.75 and z_big < z_small


@pytest.fixture(scope="module")
def report_with_lesions(study, tmp_path_factory):
    """The study's report, its predictions carrying lesion areas (the lesion-recall table)."""
    path = study / "predictions.parquet"
    preds = pd.read_parquet(path)
    rng = np.random.default_rng(0)
    preds["lesion_mm2"] = np.where(preds["label"] == 1, rng.uniform(10, 900, len(preds)),
                                   np.nan)
    preds.to_parquet(path, index=False)
    return build_report(study, tmp_path_factory.mktemp("rep") / "report", n_bootstrap=20,
                        figures=False)


def test_every_latex_table_is_ascii(report_with_lesions):
    files = sorted((report_with_lesions / "tables").glob("*.tex"))
    assert "lesion_recall.tex" in {f.name for f in files}
    for path in files:
        text = path.read_bytes()
        assert text.isascii(), (path.name, sorted({ch for ch in text.decode() if ord(ch) > 127}))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex installed")
def test_every_latex_table_compiles(report_with_lesions, tmp_path):
    inputs = "\n".join(rf"\input{{{p}}}\clearpage" for p in sorted(
        (report_with_lesions / "tables").glob("*.tex")))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{inputs}\n\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (tmp_path / "doc.log").read_text(errors="replace")[-2000:]
