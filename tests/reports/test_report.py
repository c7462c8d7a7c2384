"""A user builds a report from a results folder; the numbers in it must be the right ones.

Steps a new user takes — run a study, then ``build_report(study_dir)`` — and the invariants:
tables equal what the results / predictions imply, stars appear only for corrected-significant
differences, the HTML page is self-contained, partial studies say what is missing.
"""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.errors import SpikebenchError
from spikebench.harness.metrics import all_metrics
from spikebench.harness.results import METRICS
from spikebench.reports import ReportError, build_report, load_study
from spikebench.reports.energy import E_AC_PJ, E_MAC_PJ
from spikebench.reports.scoring import point_metrics
from spikebench.reports.stats import holm
from spikebench.reports.tables import TEST_METRICS, coverage_table, main_table

PRIMARY = "test_roc_auc"  # the pre-specified default


@pytest.fixture(scope="session")
def small_study(tmp_path_factory, make_synthetic_study, study_plan):
    """2 backends × 2 rules × 3 repeats, references, trials, curves, one skipped cell."""
    plan = study_plan(backends=("custom", "snntorch"), rules=("surrogate", "active"),
                     repeats=3, n_patients=32, n_trials=8,
                     skipped={("snntorch", "active"): "active learning not supported here"})
    return make_synthetic_study(tmp_path_factory.mktemp("small") / "study", plan)


@pytest.fixture(scope="session")
def small_report(small_study):
    return build_report(small_study, n_bootstrap=200, seed=3)


# -- metrics and statistics -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_report_metrics_equal_the_harness_metrics(seed):
    rng = np.random.default_rng(seed)
    n = 150
    pid = rng.integers(0, 25, n).astype(str)
    y = (rng.random(n) < 0.3).astype(int)
    prob = np.round(rng.random(n) * 0.6 + 0.3 * y, 1 if seed % 2 else 6)  # ties when rounded
    ours = point_metrics(METRICS, pd.DataFrame({"patient_id": pid, "label": y, "prob": prob}))
    theirs = all_metrics(y, prob, pid)
    for m in METRICS:
        assert ours[m] == pytest.approx(theirs[m], abs=1e-12, nan_ok=True), m


def test_holm():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, np.nan])),
                               [0.03, 0.06, 0.06, np.nan])


def test_energy_constants():
    assert E_AC_PJ == 0.9 and pytest.approx(4.6) == E_MAC_PJ


# -- the main table ---------------------------------------------------------------------------

def test_main_table_means_and_stds_equal_results_parquet(small_study):
    table = main_table(load_study(small_study), n_bootstrap=20).set_index(["backend", "rule"])
    res = pd.read_parquet(small_study / "results.parquet")
    ok = res[res["status"] == "ok"]
    expected = ok.groupby(["backend", "rule"])[list(TEST_METRICS)].agg(["mean", "std"])
    assert len(table) == len(expected) == 5  # 3 SNN cells (one skipped) + 2 references
    for (backend, rule), row in expected.iterrows():
        for m in TEST_METRICS:
            assert table.loc[(backend, rule), f"{m}_mean"] == pytest.approx(row[(m, "mean")])
            assert table.loc[(backend, rule), f"{m}_std"] == pytest.approx(row[(m, "std")])
    assert ("snntorch", "active") not in table.index


def test_cli_summary_quotes_the_report_mean_and_std(small_study):
    """The table `study run` prints and the report's main table use the same (sample) std."""
    from spikebench.harness.summary import summary_frame

    table = main_table(load_study(small_study), n_bootstrap=20).set_index(["backend", "rule"])
    summary = summary_frame(small_study)
    summary = summary[summary["backend"] != "baseline"].set_index(["backend", "rule"])
    for (backend, rule), row in summary.iterrows():
        if row["repeats"] == 0:
            continue
        m, s = table.loc[(backend, rule), ["test_balanced_accuracy_mean",
                                            "test_balanced_accuracy_std"]]
        assert row["test bal. acc"] == f"{m:.3f} ± {s:.3f}"


def test_interval_contains_the_estimate_and_narrows_with_more_patients(tmp_path,
                                                                       make_synthetic_study,
                                                                       study_plan):
    widths = []
    for n in (24, 160):
        plan = study_plan(backends=("custom",), rules=("surrogate",), repeats=2, n_patients=n,
                          references=(), trials=False, curves=False, strength={
                              ("custom", "surrogate"): 0.8})
        table = main_table(load_study(make_synthetic_study(tmp_path / f"n{n}", plan)),
                           n_bootstrap=300)
        row = table.iloc[0]
        for m in ("test_balanced_accuracy", "test_pr_auc", "test_roc_auc"):
            assert row[f"{m}_ci_low"] <= row[f"{m}_mean"] <= row[f"{m}_ci_high"], m
        widths.append(row["test_roc_auc_ci_high"] - row["test_roc_auc_ci_low"])
    assert widths[1] < widths[0]


# -- significance marks -----------------------------------------------------------------------

def _performance_rows(report: Path) -> dict[str, str]:
    lines = (report / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| backend | rule | repeats"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[f"{cells[0]} / {cells[1]}"] = cells[3]  # the primary metric column
    return rows


def test_star_marks_only_a_significantly_better_cell(tmp_path, make_synthetic_study,
                                                     study_plan):
    """One clearly better cell (better in each of 10 repeats) gets the star; two identical
    cells (a tie) are never significantly different."""
    plan = study_plan(backends=("alpha", "beta", "gamma"), rules=("surrogate",), repeats=10,
                      n_patients=40, references=(), trials=False, curves=False,
                      strength={("alpha", "surrogate"): 5.0, ("beta", "surrogate"): 0.2,
                                ("gamma", "surrogate"): 0.2},
                      same_as={("gamma", "surrogate"): ("beta", "surrogate")})
    study = make_synthetic_study(tmp_path / "sig", plan)
    # the bootstrap p cannot go below 2 / (B + 1): enough replicates for Holm over 2 tests
    report = build_report(study, n_bootstrap=400, figures=False)
    rows = _performance_rows(report)
    assert rows["alpha / surrogate"].startswith("**") and "★" in rows["alpha / surrogate"]
    assert "★" not in rows["beta / surrogate"] + rows["gamma / surrogate"]
    comp = pd.read_csv(report / "tables" / "comparisons.csv")
    comp = comp[comp["metric"] == PRIMARY]
    tie = comp[(comp["a"] == "beta / surrogate") & (comp["b"] == "gamma / surrogate")].iloc[0]
    assert np.isnan(tie["p"]) and not tie["significant"]  # identical predictions: no test
    assert comp[comp["a"] == "alpha / surrogate"]["p_holm"].lt(0.05).all()
    # every star in the table is backed by corrected p < 0.05 against every other cell
    best = pd.read_csv(report / "tables" / "best_cell_tests.csv")
    starred = best[best["significant_all"]]
    assert PRIMARY in set(starred["metric"])
    assert (starred["p_holm"] < 0.05).all()
    assert (best[~best["significant_all"]].groupby("metric")["p_holm"].max() >= 0.05).all()
    assert "<strong>" in (report / "report.html").read_text()


def test_a_tie_at_the_top_gets_no_star(tmp_path, make_synthetic_study, study_plan):
    plan = study_plan(backends=("alpha", "beta"), rules=("surrogate",), repeats=8,
                      n_patients=40, references=(), trials=False, curves=False,
                      strength={("alpha", "surrogate"): 5.0, ("beta", "surrogate"): 5.0},
                      same_as={("beta", "surrogate"): ("alpha", "surrogate")})
    report = build_report(make_synthetic_study(tmp_path / "tie", plan), n_bootstrap=20,
                          figures=False)
    assert "★" not in "".join(_performance_rows(report).values())


# -- the files of a full report ---------------------------------------------------------------

def test_html_is_self_contained_and_every_image_decodes(small_report):
    from PIL import Image

    page = (small_report / "report.html").read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) >= 8  # heatmap, history, importance, pareto, time, ROC/PR, ...
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.size[0] > 100
    assert not re.search(r'(src|href)="https?:', page)
    assert "<link" not in page
    for svg in (small_report / "figures").glob("*.svg"):
        ET.parse(svg)
    for png in (small_report / "figures").glob("*.png"):
        assert png.with_suffix(".svg").exists()


def test_report_states_protocol_costs_and_energy_constants(small_report):
    md = (small_report / "report.md").read_text()
    assert "sha256" in md and "excluded cases**: 1" in md
    assert "0.9 pJ" in md and "4.6 pJ" in md and "Horowitz" in md
    assert "active learning not supported here" in md  # the skipped cell's reason
    assert "Holm" in md and "minimum detectable difference" in md
    assert "training time (mean ± std over repeats)" in md  # a holdout study: one refit each
    main = pd.read_csv(small_report / "tables" / "main.csv")
    lr = main[main["rule"] == "logistic_regression"].iloc[0]
    assert lr["macs_per_sample_mean"] == 12  # the harness's count, read from the row
    assert lr["energy_nj_per_sample_mean"] == pytest.approx(12 * 4.6 / 1000)
    snn = main[main["kind"] == "snn"].iloc[0]
    assert snn["energy_nj_per_sample_mean"] == pytest.approx(
        (snn["acs_per_sample_mean"] * 0.9 + snn["macs_per_sample_mean"] * 4.6) / 1000)


def test_latex_tables_use_booktabs(small_report):
    texs = list((small_report / "tables").glob("*.tex"))
    assert {"performance.tex", "cost.tex"} <= {t.name for t in texs}
    for tex in texs:
        text = tex.read_text()
        assert text.index(r"\toprule") < text.index(r"\midrule") < text.index(r"\bottomrule")
    perf = (small_report / "tables" / "performance.tex").read_text()
    assert r"$\pm$" in perf and "±" not in perf
    cost = (small_report / "tables" / "cost.tex").read_text()
    assert r"logistic\_regression" in cost


# -- partial and broken studies ---------------------------------------------------------------

def test_a_partial_study_reports_what_is_missing(tmp_path, make_synthetic_study, study_plan):
    plan = study_plan(backends=("custom", "snntorch"), rules=("surrogate", "tempotron"),
                      repeats=3, n_patients=24, trials=False, curves=False,
                      missing={("snntorch", "surrogate"): (1, 2)},
                      skipped={("snntorch", "tempotron"): "tempotron needs latency coding"})
    study = make_synthetic_study(tmp_path / "partial", plan)
    # a still-running study: results.parquet lacks a cell whose predictions exist already
    res = pd.read_parquet(study / "results.parquet")
    res[~((res["backend"] == "custom") & (res["rule"] == "tempotron"))].to_parquet(
        study / "results.parquet")
    coverage = coverage_table(load_study(study)).set_index(["backend", "rule"])
    assert coverage.loc[("snntorch", "surrogate"), "state"] == "partial"
    assert coverage.loc[("snntorch", "surrogate"), "missing_repeats"] == "1, 2"
    assert coverage.loc[("snntorch", "tempotron"), "state"] == "skipped"
    assert coverage.loc[("custom", "tempotron"), "state"] == "not started"
    report = build_report(study, n_bootstrap=30, figures=False)
    md = (report / "report.md").read_text()
    assert "tempotron needs latency coding" in md and "| snntorch | surrogate | partial" in md
    assert "trials.parquet not present" in md


@pytest.mark.slow
def test_a_partial_study_without_optional_tables_still_draws(tmp_path, make_synthetic_study,
                                                             study_plan):
    plan = study_plan(backends=("custom",), rules=("surrogate", "tempotron"), repeats=2,
                      n_patients=24, trials=False, curves=False, protocol=False,
                      missing={("custom", "tempotron"): (1,)})
    study = make_synthetic_study(tmp_path / "bare", plan)
    (study / "predictions.parquet").unlink()
    report = build_report(study, n_bootstrap=30)
    md = (report / "report.md").read_text()
    assert "Not drawn (no data): optimisation_history, parameter_importance" in md
    assert "protocol.json not present" in md
    assert (report / "figures" / "heatmap.png").exists()


def test_a_folder_without_results_parquet_is_a_clear_error(tmp_path):
    (tmp_path / "predictions.parquet").write_bytes(b"")
    with pytest.raises(ReportError, match=r"results\.parquet") as info:
        build_report(tmp_path)
    assert isinstance(info.value, SpikebenchError)
    with pytest.raises(ReportError, match="not a folder"):
        build_report(tmp_path / "nope")


# -- looking at it ----------------------------------------------------------------------------

@pytest.mark.slow
def test_screenshot_of_the_report(small_report, tmp_path):
    from PIL import Image

    from spikebench.reports.browser import find_browser, screenshot

    if find_browser() is None:
        pytest.skip("no chromium installed")
    png = screenshot(small_report / "report.html", tmp_path / "page.png", height=2000)
    with Image.open(png) as image:
        assert image.size == (1400, 2000)
        assert len(np.unique(np.asarray(image.convert("L")))) > 5  # not blank
