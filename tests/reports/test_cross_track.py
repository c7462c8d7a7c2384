"""Features vs images: the report pairs the best feature cell with the best image cell on the
same test patients, chooses each on validation (post hoc on test only when it must, and says
so), breaks ties on the primary validation metric with further validation metrics (never test
data) and says how, pairs SNN image cells with the CNN reference once, and refuses cells tested
on different patients.

Each test writes a small synthetic results folder (predictions, results rows with a ``track``
and validation scores, protocol.json) the way ``test_statistics.py`` does; nothing binary is
committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_statistics import cohort  # the same synthetic patients as the statistics tests
from test_statistics import results_for as statistics_rows
from test_statistics import write_folder as statistics_folder

from spikebench.reports import build_report, load_study
from spikebench.reports.cross_track import TABLE_ORDER, cross_track_lines, pick_best
from spikebench.reports.inference import compute_statistics
from spikebench.reports.load import ReportError

Cell = tuple[str, str]
FEATURE = ("custom", "surrogate")
IMAGE = ("custom", "conv_surrogate")
LOGREG = ("reference", "logistic_regression")
CNN = ("reference", "cnn")
IMAGE_RULES = {"conv_surrogate", "cnn", "cnn_mil"}
N_BOOT = 200


def predictions(data: pd.DataFrame, cells: dict[Cell, float], repeats: int = 3, *,
                folds: int = 1, same_as: dict[Cell, Cell] | None = None) -> pd.DataFrame:
    """Every repeat scores every patient (holdout / nested-cv); a cell's separation is its
    strength; ``same_as`` copies another cell's predictions exactly."""
    ids = np.array(sorted(data["patient_id"].unique()))
    fold_of = {pid: i % folds for i, pid in enumerate(ids)}
    frames: dict[Cell, pd.DataFrame] = {}
    for ci, (cell, strength) in enumerate(cells.items()):
        parts = []
        for r in range(repeats):
            noise = np.random.default_rng([0, ci, r]).normal(0, 1, len(data))
            logit = strength * (2 * data["label"] - 1) - data["hardness"] + noise - 0.5
            parts.append(data.assign(repeat=r, seed=r, steps=8, train_steps=8,
                                     fold=data["patient_id"].map(fold_of),
                                     prob=1 / (1 + np.exp(-logit))))
        frames[cell] = pd.concat(parts, ignore_index=True)
    for cell, source in (same_as or {}).items():
        frames[cell] = frames[source].copy()
    return pd.concat([f.assign(backend=c[0], rule=c[1]) for c, f in frames.items()],
                     ignore_index=True).drop(columns="hardness")


def results_for(preds: pd.DataFrame, val: dict[Cell, float]) -> pd.DataFrame:
    """The statistics tests' result rows plus each row's track and validation score
    (``val_patient_pr_auc``, NaN for cells ``val`` does not name)."""
    rows = statistics_rows(preds)
    rows["track"] = np.where(rows["rule"].isin(IMAGE_RULES), "images", "features")
    rows["val_patient_pr_auc"] = [val.get((b, r), np.nan) + 0.01 * k for b, r, k in zip(
        rows["backend"], rows["rule"], rows["repeat"])]
    return rows


def write_folder(root: Path, preds: pd.DataFrame, results: pd.DataFrame,
                 protocol: dict | None = None) -> Path:
    # these folders' validation scores are patient PR-AUC: their protocol names it primary
    return statistics_folder(root, preds, results, {
        "scheme": "holdout", "analysis": {"primary_metric": "patient_pr_auc"},
        **(protocol or {})})


#: Image cells clearly better than feature cells on the same patients.
CLEAR = {FEATURE: 0.3, LOGREG: 0.2, IMAGE: 3.0, CNN: 2.5}
CLEAR_VAL = {FEATURE: 0.6, LOGREG: 0.5, IMAGE: 0.9, CNN: 0.85}


@pytest.fixture(scope="module")
def clear_study(tmp_path_factory) -> Path:
    preds = predictions(cohort(), CLEAR)
    return write_folder(tmp_path_factory.mktemp("clear"), preds, results_for(preds, CLEAR_VAL))


def test_a_clearly_better_image_cell_is_found_and_significant(clear_study):
    out = build_report(clear_study, n_bootstrap=N_BOOT, figures=False)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Features vs images" in md and '<h2 id="tracks">Features vs images</h2>' in page
    assert 'href="#tracks"' in page
    section = md.split("## Features vs images")[1].split("## Figures")[0]
    assert "custom / surrogate" in section and "custom / conv_surrogate" in section
    assert "chosen on validation" in section and "post hoc" not in section.lower()
    best = pd.read_csv(out / "tables" / "cross_track.csv").iloc[0]
    assert (best["features"], best["images"]) == ("custom / surrogate", "custom / conv_surrogate")
    assert best["features_basis"] == best["images_basis"] == "validation"
    assert best["difference"] > 0.2 and best["ci_low"] > 0  # images − features
    assert best["p"] < 0.05
    assert (out / "tables" / "cross_track.tex").exists()
    # the pair is one of the default family's custom rule pairs: the report says so
    assert "also in the primary analysis" in section


def test_the_comparison_uses_the_shared_resamples(clear_study):
    stats = compute_statistics(load_study(clear_study), "test_patient_pr_auc",
                               n_bootstrap=N_BOOT, seed=0)
    ct = stats.cross_track
    sup = stats.analysis.superiority
    row = sup[(sup["a"] == "custom / surrogate") & (sup["b"] == "custom / conv_surrogate")].iloc[0]
    # same resamples as the primary analysis: the same pair gives the mirrored numbers
    assert ct.best["difference"].iloc[0] == pytest.approx(-row["difference"])
    assert ct.best["p"].iloc[0] == pytest.approx(row["p"])
    assert ct.best["ci_low"].iloc[0] == pytest.approx(-row["ci_high"])


def test_snn_image_cells_are_paired_with_the_cnn_once(clear_study, tmp_path):
    out = build_report(clear_study, tmp_path / "r", n_bootstrap=N_BOOT, figures=False)
    cnn = pd.read_csv(out / "tables" / "cross_track_cnn.csv")
    assert list(zip(cnn["a"], cnn["b"])) == [("custom / conv_surrogate", "reference / cnn")]
    assert "SNN image cells vs the CNN reference" in (out / "report.md").read_text()
    # when the protocol's family already holds the pair, it is not repeated
    preds = pd.read_parquet(clear_study / "predictions.parquet")
    family = {"family": [["custom/conv_surrogate", "reference/cnn"]]}
    folder = write_folder(tmp_path / "fam", preds, pd.read_parquet(clear_study /
                                                                   "results.parquet"),
                          {"analysis": family})
    out = build_report(folder, n_bootstrap=N_BOOT, figures=False)
    md = (out / "report.md").read_text()
    assert not (out / "tables" / "cross_track_cnn.csv").exists()
    assert "SNN image cells vs the CNN reference" not in md
    assert "not repeated: custom / conv_surrogate vs reference / cnn" in md


def test_identical_predictions_are_reported_as_identical_not_tested(tmp_path):
    preds = predictions(cohort(), {FEATURE: 1.0, IMAGE: 1.0}, same_as={IMAGE: FEATURE})
    folder = write_folder(tmp_path / "tie", preds, results_for(preds, {FEATURE: 0.7,
                                                                       IMAGE: 0.7}))
    stats = compute_statistics(load_study(folder), "test_patient_pr_auc",
                               n_bootstrap=N_BOOT, seed=0)
    best = stats.cross_track.best.iloc[0]
    assert best["difference"] == 0 and best["identical"] and np.isnan(best["p"])
    assert best["ci_low"] == best["ci_high"] == 0
    assert stats.cross_track.cnn_pairs.empty  # no CNN reference in this study


@pytest.mark.parametrize("keep", ["features", "images"])
def test_one_track_alone_has_no_section(tmp_path, keep):
    cells = {c: s for c, s in CLEAR.items() if (c[1] in IMAGE_RULES) == (keep == "images")}
    preds = predictions(cohort(), cells)
    folder = write_folder(tmp_path / keep, preds, results_for(preds, CLEAR_VAL))
    out = build_report(folder, n_bootstrap=50, figures=False)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "Features vs images" not in md and "Features vs images" not in page
    assert not list((out / "tables").glob("cross_track*"))


def test_selection_is_on_validation_not_test(tmp_path):
    # logistic regression is better on test, custom / surrogate on validation: validation wins
    cells = {FEATURE: 0.3, LOGREG: 1.5, IMAGE: 1.0}
    preds = predictions(cohort(), cells)
    folder = write_folder(tmp_path / "val", preds,
                          results_for(preds, {FEATURE: 0.8, LOGREG: 0.6, IMAGE: 0.7}))
    ct = compute_statistics(load_study(folder), "test_patient_pr_auc", n_bootstrap=50,
                            seed=0).cross_track
    assert ct.features.cell == FEATURE and ct.features.basis == "validation"
    assert not ct.post_hoc


def test_without_validation_scores_the_selection_is_post_hoc_and_says_so(tmp_path):
    cells = {FEATURE: 0.3, LOGREG: 1.5, IMAGE: 1.0}
    preds = predictions(cohort(), cells)
    folder = write_folder(tmp_path / "test", preds, results_for(preds, {IMAGE: 0.7}))
    out = build_report(folder, n_bootstrap=50, figures=False)
    best = pd.read_csv(out / "tables" / "cross_track.csv").iloc[0]
    assert best["features"] == "reference / logistic_regression"  # the test-best cell
    assert best["features_basis"] == "test" and best["images_basis"] == "validation"
    md = (out / "report.md").read_text()
    assert "selected post hoc on test data, p not adjusted for the selection" in md
    assert "**Post hoc selection:**" in md


def test_nested_cv_pools_the_folds_like_the_main_table(tmp_path):
    cells = {FEATURE: 0.5, IMAGE: 2.0}
    preds = predictions(cohort(24), cells, repeats=2, folds=3)
    folder = write_folder(tmp_path / "cv", preds, results_for(preds, {FEATURE: 0.6, IMAGE: 0.8}),
                          {"scheme": "nested-cv"})
    stats = compute_statistics(load_study(folder), "test_patient_pr_auc", n_bootstrap=50,
                               seed=0)
    main = stats.main.set_index(["backend", "rule"])["test_patient_pr_auc_mean"]
    assert stats.cross_track.best["difference"].iloc[0] == pytest.approx(
        main[IMAGE] - main[FEATURE])
    assert stats.cross_track.best["n_repeats"].iloc[0] == 2


def test_cells_tested_on_different_patients_are_an_error(tmp_path):
    preds = predictions(cohort(), {FEATURE: 0.5, IMAGE: 2.0})
    drop = ((preds["backend"] == IMAGE[0]) & (preds["rule"] == IMAGE[1])
            & (preds["repeat"] == 1) & (preds["patient_id"] == "p004"))
    preds = preds[~drop]
    folder = write_folder(tmp_path / "mismatch", preds,
                          results_for(preds, {FEATURE: 0.6, IMAGE: 0.8}))
    with pytest.raises(ReportError, match=r"custom / surrogate and custom / conv_surrogate "
                                          r"were tested on different patients in repeat 1"):
        build_report(folder, n_bootstrap=50, figures=False)


# --- ties on the primary validation metric ---------------------------------------------------

#: Cells tied at validation patient PR-AUC 1.0 (the small-validation-set case).
PERFECT = {"val_patient_pr_auc": 1.0}


class NoTestData:
    """Stands in for the study bootstrap: reading a test estimate fails the test."""

    def estimate(self, *args, **kwargs) -> float:
        raise AssertionError("the test estimate was read although validation scores exist")


def validation_rows(val: dict[Cell, dict[str, float]], repeats: int = 2) -> pd.DataFrame:
    """Finished result rows with the given ``val_<metric>`` per cell (NaN where not given)."""
    columns = sorted({name for scores in val.values() for name in scores})
    return pd.DataFrame([{"backend": c[0], "rule": c[1], "repeat": r,
                          **{k: scores.get(k, np.nan) for k in columns}}
                         for c, scores in val.items() for r in range(repeats)])


def pick(val: dict[Cell, dict[str, float]], order: list[Cell]):
    return pick_best(validation_rows(val), NoTestData(), "features", order,
                     "patient_pr_auc", "max")


@pytest.mark.parametrize("reverse", [False, True])
def test_a_tie_on_the_primary_metric_goes_to_the_better_next_validation_metric(reverse):
    val = {FEATURE: {**PERFECT, "val_patient_roc_auc": 0.8},
           LOGREG: {**PERFECT, "val_patient_roc_auc": 0.9}}
    order = [FEATURE, LOGREG][::-1 if reverse else 1]
    chosen = pick(val, order)
    assert chosen.cell == LOGREG and chosen.basis == "validation" and chosen.score == 1.0
    assert chosen.decided_by == "patient_roc_auc" and chosen.tied == tuple(order)


def test_criteria_are_taken_in_order_and_nan_ranks_worst():
    val = {FEATURE: {**PERFECT, "val_patient_roc_auc": 1.0, "val_roc_auc": 0.91},
           LOGREG: {**PERFECT, "val_patient_roc_auc": 1.0, "val_roc_auc": 0.93},
           CNN: {**PERFECT, "val_patient_roc_auc": np.nan, "val_roc_auc": 0.99},
           IMAGE: {"val_patient_pr_auc": 0.99, "val_patient_roc_auc": 1.0, "val_roc_auc": 1.0}}
    chosen = pick(val, [FEATURE, CNN, LOGREG, IMAGE])
    # IMAGE is out on the primary metric, CNN (NaN) on the second; slice ROC-AUC decides
    assert chosen.cell == LOGREG and chosen.decided_by == "roc_auc"
    assert chosen.tied == (FEATURE, CNN, LOGREG)


def test_b_without_a_tie_the_primary_metric_decides():
    val = {FEATURE: {"val_patient_pr_auc": 0.95, "val_patient_roc_auc": 0.7},
           LOGREG: {"val_patient_pr_auc": 0.9, "val_patient_roc_auc": 1.0}}
    chosen = pick(val, [LOGREG, FEATURE])
    assert chosen.cell == FEATURE and chosen.decided_by == "patient_pr_auc"
    assert chosen.tied == () and chosen.score == pytest.approx(0.95)


@pytest.mark.parametrize("reverse", [False, True])
def test_c_cells_tied_on_every_validation_metric_go_to_table_order(reverse):
    same = {**PERFECT, "val_patient_roc_auc": 1.0, "val_roc_auc": 0.9, "val_pr_auc": 0.8}
    order = [FEATURE, LOGREG][::-1 if reverse else 1]
    chosen = pick({FEATURE: same, LOGREG: dict(same)}, order)
    assert chosen.cell == order[0] and chosen.decided_by == TABLE_ORDER
    assert chosen.tied == tuple(order)


def test_d_the_report_breaks_the_tie_on_validation_and_says_how(tmp_path):
    # logistic regression is far better on test, custom / surrogate first in table order; the
    # tie at validation patient PR-AUC 1.0 goes to the better validation patient ROC-AUC
    preds = predictions(cohort(), {FEATURE: 1.5, LOGREG: 0.3, IMAGE: 1.0})
    rows = results_for(preds, {})
    rows["val_patient_pr_auc"] = 1.0
    rows["val_patient_roc_auc"] = rows["rule"].map({"surrogate": 0.7, "logistic_regression": 0.9,
                                                    "conv_surrogate": 0.8})
    out = build_report(write_folder(tmp_path / "tie", preds, rows), n_bootstrap=50,
                       figures=False)
    best = pd.read_csv(out / "tables" / "cross_track.csv").iloc[0]
    assert best["features"] == "reference / logistic_regression"
    assert best["features_basis"] == "validation"
    md = (out / "report.md").read_text()
    assert ("2 feature cells tied at validation patient PR-AUC 1.0000 (custom / surrogate, "
            "reference / logistic_regression); chosen on validation patient ROC-AUC.") in md
    assert "image cells tied" not in md  # a single image cell: nothing to break


def test_a_full_tie_is_reported_as_table_order(tmp_path):
    # an older folder: only the primary validation metric was stored, so nothing breaks the tie
    preds = predictions(cohort(), {FEATURE: 1.5, LOGREG: 0.3, IMAGE: 1.0})
    rows = results_for(preds, {})
    rows["val_patient_pr_auc"] = 1.0
    ct = compute_statistics(load_study(write_folder(tmp_path / "full", preds, rows)),
                            "test_patient_pr_auc", n_bootstrap=50, seed=0).cross_track
    assert ct.features.cell == FEATURE and ct.features.decided_by == TABLE_ORDER
    sentence = next(line for line in cross_track_lines(ct) if "cells tied at" in line)
    assert sentence.startswith("2 feature cells tied at validation patient PR-AUC 1.0000")
    assert sentence.endswith("still tied on every validation tie-break (patient ROC-AUC, slice "
                             "ROC-AUC, slice PR-AUC): the first in table order was taken.")


def test_an_untied_choice_prints_no_tie_sentence(clear_study):
    ct = compute_statistics(load_study(clear_study), "test_patient_pr_auc", n_bootstrap=50,
                            seed=0).cross_track
    assert ct.features.tied == ct.images.tied == ()
    assert ct.features.decided_by == ct.images.decided_by == "patient_pr_auc"
    assert not any("cells tied at" in line for line in cross_track_lines(ct))
