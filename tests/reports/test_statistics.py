"""The report's statistics: intervals that carry patients and training runs, paired tests that
can find a real difference, and the reference computations each statistic must reproduce.

A user builds a report from a results folder; these tests build small synthetic folders (no
committed binaries) and check the numbers behind it against scikit-learn on materialised
resamples, hand computations of DeLong (1988), Obuchowski (1997), Welch–Satterthwaite and
Nadeau–Bengio (2003), and naive re-implementations of every estimator.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from scipy.stats import t as student
from sklearn import metrics as skm

from spikebench.harness.metrics import THRESHOLD
from spikebench.reports import build_report, load_study
from spikebench.reports.analysis import analysis_plan, default_equivalence, default_family
from spikebench.reports.bootstrap import StudyBootstrap
from spikebench.reports.delong import delong_covariance, delong_test
from spikebench.reports.energy import BASIS_OLD, BASIS_SPLIT, energy_nj, operation_counts
from spikebench.reports.inference import compute_statistics
from spikebench.reports.load import ReportError
from spikebench.reports.paired import paired_difference
from spikebench.reports.scoring import patient_table, weighted_metrics
from spikebench.reports.stats import corrected_resampled_t
from spikebench.reports.tables import lesion_recall_table, main_table
from spikebench.reports.wald import WaldT, satterthwaite

METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "mcc",
           "patient_roc_auc", "patient_pr_auc")


# -- a synthetic cohort -----------------------------------------------------------------------

def cohort(n_patients: int = 30, seed: int = 0) -> pd.DataFrame:
    """Patients with 6–14 slices; every other patient has a lesion run with areas in mm²."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        n = int(rng.integers(6, 15))
        label = np.zeros(n, dtype=int)
        if p % 2 == 0:
            start = int(rng.integers(0, n - 3))
            label[start:start + 3] = 1
        area = np.where(label == 1, rng.choice([50.0, 300.0, 900.0], n), 0.0)
        rows.append(pd.DataFrame({"patient_id": f"p{p:03d}", "slice_idx": np.arange(n),
                                  "label": label, "lesion_mm2": area,
                                  "hardness": rng.normal(0, 0.7)}))
    return pd.concat(rows, ignore_index=True)


def predictions(data: pd.DataFrame, cells: dict[tuple[str, str], float], repeats: int, *,
                seed: int = 0, folds: int = 1) -> pd.DataFrame:
    """Holdout-style predictions: every repeat scores every patient; a cell's separation is its
    strength, a patient's hardness is shared by every cell (correlated errors, as on real
    data), each repeat adds its own noise. ``folds > 1`` splits patients into folds."""
    ids = np.array(sorted(data["patient_id"].unique()))
    fold_of = {pid: i % folds for i, pid in enumerate(ids)}
    frames = []
    for ci, ((backend, rule), strength) in enumerate(cells.items()):
        for r in range(repeats):
            noise = np.random.default_rng([seed, ci, r]).normal(0, 1, len(data))
            logit = strength * (2 * data["label"] - 1) - data["hardness"] + noise - 0.5
            frames.append(data.assign(
                backend=backend, rule=rule, repeat=r, seed=r, steps=8, train_steps=8,
                fold=data["patient_id"].map(fold_of), prob=1 / (1 + np.exp(-logit))))
    return pd.concat(frames, ignore_index=True).drop(columns="hardness")


def results_for(preds: pd.DataFrame, *, threshold: float | None = None,
                legacy: bool = False) -> pd.DataFrame:
    """One ok row per backend × rule × repeat × fold with costs (and thresholds unless legacy)."""
    keys = ["backend", "rule", "repeat", "fold"]
    rows = preds[keys].drop_duplicates().reset_index(drop=True)
    rows["kind"] = np.where(rows["backend"] == "reference", "reference", "snn")
    rows["status"], rows["reason"], rows["seed"] = "ok", "", rows["repeat"]
    rows["n_train_patients"], rows["n_val_patients"], rows["n_test_patients"] = 60, 20, 20
    rows["synops_per_sample"] = np.where(rows["kind"] == "snn", 1000.0, np.nan)
    if legacy:
        return rows.drop(columns="fold")
    rows["acs_per_sample"] = np.where(rows["kind"] == "snn", 800.0, 0.0)
    rows["macs_per_sample"] = np.where(rows["kind"] == "snn", 200.0, 12.0)
    rows["threshold"] = THRESHOLD if threshold is None else threshold
    return rows


def write_folder(root: Path, preds: pd.DataFrame, results: pd.DataFrame,
                 protocol: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(root / "predictions.parquet")
    results.to_parquet(root / "results.parquet")
    if protocol is not None:
        (root / "protocol.json").write_text(json.dumps(protocol))
    return root


CELLS = {("custom", "surrogate"): 1.6, ("custom", "tempotron"): 1.2,
         ("snntorch", "surrogate"): 1.6, ("reference", "logistic_regression"): 1.0}


@pytest.fixture(scope="module")
def holdout(tmp_path_factory) -> Path:
    preds = predictions(cohort(30), CELLS, repeats=4)
    return write_folder(tmp_path_factory.mktemp("holdout"), preds, results_for(preds),
                        {"scheme": "holdout"})


# -- weighted metrics = scikit-learn on the materialised resample ----------------------------

def _materialise(frame: pd.DataFrame, counts: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    parts = [frame[frame["patient_id"] == pid].assign(patient_id=f"{pid}#{k}")
             for pid, c in zip(ids, counts) for k in range(int(c))]
    return pd.concat(parts, ignore_index=True)


def _sklearn(name: str, sample: pd.DataFrame, score: str, top_k: int) -> float:
    if name.startswith("patient_"):
        pat = patient_table(sample, score, top_k)
        y, s = pat["label"].to_numpy(), pat["prob"].to_numpy()
        name = name.removeprefix("patient_")
    else:
        y, s = sample["label"].to_numpy(), sample["prob"].to_numpy()
    if name in ("roc_auc", "pr_auc"):
        if len(np.unique(y)) < 2:
            return math.nan
        return (skm.roc_auc_score if name == "roc_auc" else skm.average_precision_score)(y, s)
    hit = (sample["prob"] >= sample["threshold"]).astype(int).to_numpy()
    fn = {"accuracy": skm.accuracy_score, "balanced_accuracy": skm.balanced_accuracy_score,
          "f1": lambda a, b: skm.f1_score(a, b, zero_division=0.0),
          "mcc": skm.matthews_corrcoef}[name]
    return float(fn(y, hit))


@pytest.mark.parametrize(("score", "rounding"), [("max", 6), ("topk_mean", 6), ("max", 1)])
def test_weighted_metrics_equal_sklearn_on_the_materialised_resample(score, rounding):
    data = cohort(14, seed=3)
    frame = predictions(data, {("custom", "surrogate"): 1.0}, repeats=1)
    frame["prob"] = frame["prob"].round(rounding)  # rounding to 1 digit makes many ties
    rng = np.random.default_rng(0)
    frame["threshold"] = rng.choice([0.3, 0.5, 0.6], len(frame))  # per-slice thresholds
    ids = np.array(sorted(frame["patient_id"].unique()))
    counts = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=8).astype(float)
    ours = weighted_metrics(METRICS, frame, counts, patient_score=score, top_k=3)
    for b in range(len(counts)):
        sample = _materialise(frame, counts[b], ids)
        for m in METRICS:
            assert ours[m][b] == pytest.approx(_sklearn(m, sample, score, 3), abs=1e-12,
                                               nan_ok=True), (m, b)


def test_topk_patient_score_is_the_mean_of_the_k_highest_slices():
    frame = pd.DataFrame({"patient_id": ["a"] * 4 + ["b"] * 2, "label": [0, 1, 0, 0, 0, 0],
                          "prob": [0.1, 0.9, 0.5, 0.7, 0.2, 0.4]})
    table = patient_table(frame, "topk_mean", 3).set_index("patient_id")
    assert table.loc["a", "prob"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert table.loc["b", "prob"] == pytest.approx(0.3)  # fewer slices than k: all of them
    assert table.loc["a", "label"] == 1 and table.loc["b", "label"] == 0


# -- the cell's interval: patients and training runs -----------------------------------------

def _naive_terms(g: pd.DataFrame, metric: str, ids: np.ndarray, weights: np.ndarray
                 ) -> tuple[float, float, float, int]:
    """By hand: the per-run metric (scikit-learn), the run-averaged metric on every
    materialised patient resample; return (estimate, V_patients, s², R)."""
    runs = sorted(g["repeat"].unique())
    values = [_sklearn(metric, g[g["repeat"] == r], "max", 3) for r in runs]
    reps = [np.mean([_sklearn(metric, _materialise(g[g["repeat"] == r], w, ids), "max", 3)
                     for r in runs]) for w in weights]
    return float(np.mean(values)), float(np.var(reps, ddof=1)), float(np.var(values, ddof=1)), \
        len(runs)


def test_interval_is_t_with_a_patient_term_and_a_training_term(holdout):
    """Re-implemented naively: SE² = var over patient resamples of the run-averaged metric +
    var over runs / R; Student's t on Welch–Satterthwaite df (patient df = min(I₁, I₀) − 1)."""
    tables = load_study(holdout)
    pred = tables.primary_predictions()
    sb = StudyBootstrap(pred, scheme="holdout", n_bootstrap=40, seed=5)
    cell = ("custom", "surrogate")
    ids = np.array(sorted(pred["patient_id"].unique()))
    pw = np.random.default_rng([5, 0]).multinomial(len(ids), np.full(len(ids), 1 / len(ids)),
                                                   size=40)
    g = pred[(pred["backend"] == cell[0]) & (pred["rule"] == cell[1])]
    for metric in ("balanced_accuracy", "patient_pr_auc"):
        estimate, v_pat, s2, r = _naive_terms(g, metric, ids, pw)
        first = g[g["repeat"] == 0]
        if metric.startswith("patient_"):
            labels = patient_table(first)["label"]
            dfp = min((labels == 1).sum(), (labels == 0).sum()) - 1
        else:
            per = first.groupby("patient_id")["label"].agg(["max", "min"])
            dfp = min((per["max"] == 1).sum(), (per["min"] == 0).sum()) - 1
        v_run = s2 / r
        nu = (v_pat + v_run) ** 2 / (v_pat ** 2 / dfp + v_run ** 2 / (r - 1))
        half = student.ppf(0.975, nu) * math.sqrt(v_pat + v_run)
        w = sb.wald(cell, metric)
        assert w.estimate == pytest.approx(estimate, abs=1e-12)
        assert w.df == pytest.approx(nu, rel=1e-10)
        low, high = sb.interval(cell, metric)
        assert (low, high) == pytest.approx((max(estimate - half, 0), min(estimate + half, 1)),
                                            abs=1e-12)


def test_the_roc_auc_patient_term_is_obuchowskis_clustered_delong(holdout):
    """For ROC-AUC the patient term is exact: with one run it equals the clustered DeLong
    variance of delong.py (an independent implementation), and with several runs it is that
    of the run-averaged placement values (computed here by hand)."""
    tables = load_study(holdout)
    pred = tables.primary_predictions()
    sb = StudyBootstrap(pred, scheme="holdout", n_bootstrap=10, seed=0)
    a, b = ("custom", "surrogate"), ("custom", "tempotron")
    rows = {c: pred[(pred["backend"] == c[0]) & (pred["rule"] == c[1])].sort_values(
        ["repeat", "patient_id", "slice_idx"]) for c in (a, b)}
    first = rows[a][rows[a]["repeat"] == 0]
    y, clusters = first["label"].to_numpy(), first["patient_id"].to_numpy()
    scores = {c: np.vstack([g["prob"].to_numpy() for _, g in rows[c].groupby("repeat")])
              for c in (a, b)}
    one = StudyBootstrap(pred[pred["repeat"] == 0], scheme="holdout", n_bootstrap=10, seed=0)
    _, cov = delong_covariance(y, np.vstack([scores[a][0], scores[b][0]]), clusters)
    assert one.wald(a, "roc_auc").patients[0] == pytest.approx(cov[0, 0], rel=1e-10)
    assert one.paired(a, b, "roc_auc").patients[0] == pytest.approx(
        cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], rel=1e-10)
    # several runs: Obuchowski's formula on the run-averaged placements, by hand
    pos, neg = y == 1, y == 0

    def averaged_placements(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v10 = np.mean([[(np.sum(r[i] > r[neg]) + 0.5 * np.sum(r[i] == r[neg])) / neg.sum()
                        for i in np.flatnonzero(pos)] for r in runs], axis=0)
        v01 = np.mean([[(np.sum(r[pos] > r[j]) + 0.5 * np.sum(r[pos] == r[j])) / pos.sum()
                        for j in np.flatnonzero(neg)] for r in runs], axis=0)
        return v10, v01

    ids, c = np.unique(clusters, return_inverse=True)
    v10, v01 = averaged_placements(scores[a])
    theta = v10.mean()
    s10 = np.bincount(c[pos], v10, len(ids)) - theta * np.bincount(c[pos], minlength=len(ids))
    s01 = np.bincount(c[neg], v01, len(ids)) - theta * np.bincount(c[neg], minlength=len(ids))
    i10, i01, n = (np.bincount(c[pos], minlength=len(ids)) > 0).sum(), \
        (np.bincount(c[neg], minlength=len(ids)) > 0).sum(), len(ids)
    m_, n_ = pos.sum(), neg.sum()
    var = (i10 / ((i10 - 1) * m_) * (s10 @ s10) / m_ + i01 / ((i01 - 1) * n_) * (s01 @ s01) / n_
           + 2 * n / (n - 1) * (s10 @ s01) / (m_ * n_))
    assert sb.wald(a, "roc_auc").patients[0] == pytest.approx(var, rel=1e-10)
    assert sb.wald(a, "roc_auc").estimate == pytest.approx(
        np.mean([skm.roc_auc_score(y, r) for r in scores[a]]), abs=1e-12)


def test_training_spread_widens_the_interval_and_one_run_says_so(holdout):
    """Runs that differ add a training term to the SE; the same cell with every run a copy of
    run 0 has none; with a single run the training term is marked as not estimated."""
    pred = load_study(holdout).primary_predictions()
    cell = ("custom", "surrogate")
    g = pred[(pred["backend"] == cell[0]) & (pred["rule"] == cell[1])]
    copies = pd.concat([g[g["repeat"] == 0].assign(repeat=r) for r in range(4)])
    noisy = StudyBootstrap(g, scheme="holdout", n_bootstrap=200, seed=0).wald(cell, "roc_auc")
    quiet = StudyBootstrap(copies, scheme="holdout", n_bootstrap=200, seed=0).wald(cell,
                                                                                   "roc_auc")
    assert noisy.se_training > 0 and noisy.se > noisy.se_patients
    assert quiet.se_training == 0 and quiet.se == quiet.se_patients
    single = StudyBootstrap(g[g["repeat"] == 0], scheme="holdout", n_bootstrap=50, seed=0)
    assert not single.wald(cell, "roc_auc").training_known


def test_the_plan_is_shared_and_fast():
    """2000 replicates × 10 cells × 6 repeats, every metric, in a few seconds."""
    cells = {(f"b{i}", "surrogate"): 1.0 + 0.05 * i for i in range(10)}
    pred = predictions(cohort(40), cells, repeats=6).assign(threshold=0.5)
    started = time.perf_counter()
    sb = StudyBootstrap(pred, n_bootstrap=2000, seed=0)
    for cell in sb.cells:
        sb.prefetch(cell, METRICS)
        sb.intervals(cell, METRICS)
    sb.paired(sb.cells[0], sb.cells[1], "roc_auc")
    assert time.perf_counter() - started < 20  # ~2 s alone; 2 shared cores in CI
    assert sb.resamples.patient_weights.shape == (2000, 40)
    assert np.all(sb.resamples.patient_weights.sum(axis=1) == 40)


# -- paired comparisons, Holm, power ------------------------------------------------------------

def test_a_clearly_better_cell_is_significant_after_holm(tmp_path):
    """Six runs on one sealed cohort: the paired test finds the clearly better cell; cells with
    identical predictions are reported as identical, never as equivalent."""
    cells = {("custom", "surrogate"): 3.0, ("custom", "tempotron"): 0.3,
             ("snntorch", "surrogate"): 3.0, ("reference", "logistic_regression"): 0.3}
    preds = predictions(cohort(40, seed=1), cells, repeats=6)
    same = preds[(preds["backend"] == "custom") & (preds["rule"] == "tempotron")]
    preds = pd.concat([preds, same.assign(backend="snntorch")], ignore_index=True)
    folder = write_folder(tmp_path / "s", preds, results_for(preds), {"scheme": "holdout"})
    stats = compute_statistics(load_study(folder), "test_roc_auc", n_bootstrap=1000, seed=0)
    sup = stats.analysis.superiority.set_index(["a", "b"])
    assert len(sup) == 4 + 1  # 4 SNN cells vs logistic regression + the custom rules pair
    best = sup.loc[("custom / surrogate", "reference / logistic_regression")]
    assert best["difference"] > 0 and best["p_holm"] < 0.05 and best["significant"]
    assert best["p_patient_roc_auc"] < 0.05 and 0 <= best["p_patient_pr_auc"] <= 1
    eq = stats.analysis.equivalence.set_index(["a", "b"])
    tie = eq.loc[("snntorch / tempotron", "custom / tempotron")]
    assert tie["difference"] == 0 and tie["identical"]
    assert tie["verdict"] == "identical predictions" and not tie["equivalent"]
    assert math.isnan(tie["p_tost"])
    assert stats.analysis.mdd["alpha"] > 0
    assert stats.analysis.mdd["alpha_family"] > stats.analysis.mdd["alpha"]
    assert set(stats.analysis.sensitivity["patient_score"]) == {
        "max over slices", "mean of top-3 slices"}


def test_paired_difference_cancels_what_two_cells_share(holdout):
    """Cells that share their patients' hardness: the paired patient term is smaller than the
    two cells' patient terms added; the training terms add (independent runs)."""
    sb = StudyBootstrap(load_study(holdout).primary_predictions(), scheme="holdout",
                        n_bootstrap=400, seed=0)
    a, b = ("custom", "surrogate"), ("custom", "tempotron")
    for metric in ("roc_auc", "patient_roc_auc", "balanced_accuracy"):
        d = paired_difference(sb, a, b, metric)
        wa, wb = sb.wald(a, metric), sb.wald(b, metric)
        assert d.estimate == pytest.approx(wa.estimate - wb.estimate)
        assert d.wald.patients[0] < wa.patients[0] + wb.patients[0]
        assert d.wald.se_training ** 2 == pytest.approx(wa.se_training ** 2
                                                        + wb.se_training ** 2)
    same = paired_difference(sb, a, a, "roc_auc")
    assert same.identical and same.estimate == 0 and math.isnan(same.p)


def test_wald_t_interval_p_tost_and_minimum_detectable_difference_by_hand():
    """V_p = 4e-4 on 20 df, training 1e-4 on 2 df: SE = sqrt(5e-4),
    ν = 25e-8 / (16e-8/20 + 1e-8/2) = 19.2307..."""
    w = WaldT(0.03, (4e-4, 20.0), ((1e-4, 2.0),))
    nu = (5e-4) ** 2 / ((4e-4) ** 2 / 20 + (1e-4) ** 2 / 2)
    assert w.df == pytest.approx(nu) and satterthwaite(w.parts) == pytest.approx(19.2307692)
    se = math.sqrt(5e-4)
    assert w.interval(0.95) == pytest.approx((0.03 - student.ppf(0.975, nu) * se,
                                              0.03 + student.ppf(0.975, nu) * se))
    assert w.p_value() == pytest.approx(2 * student.sf(0.03 / se, nu))
    assert w.tost_p(0.05) == pytest.approx(max(student.sf((0.03 + 0.05) / se, nu),
                                               student.sf((0.05 - 0.03) / se, nu)))
    assert w.minimum_detectable(0.05) == pytest.approx(
        (student.ppf(0.975, nu) + student.ppf(0.8, nu)) * se)
    assert WaldT(0.0, (0.0, math.inf)).p_value() == 1.0
    known = WaldT(0.01, (1e-4, math.inf))
    assert known.interval(0.95)[1] == pytest.approx(0.01 + norm.ppf(0.975) * 0.01)


# -- DeLong and Nadeau–Bengio against hand computations ---------------------------------------

def test_delong_matches_the_hand_computed_1988_covariance():
    """3 positives, 2 negatives, a tie. By hand (ψ = 1, ½, 0):
    A: V10 = [1, 3/4, 0], V01 = [2/3, 1/2] → θ = 7/12, S10 = 13/48, S01 = 1/72,
       Var = S10/3 + S01/2 = 7/72.
    B: V10 = [1/2, 1/2, 1/2], V01 = [1, 0] → θ = 1/2, Var = 0 + (1/2)/2 = 1/4.
    Cov: S10_AB = 0, S01_AB = 1/12 → Cov = 1/24. Var(θA − θB) = 7/72 + 1/4 − 1/12 = 19/72."""
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.4, 0.5, 0.6])
    b = np.array([0.8, 0.3, 0.7, 0.2, 0.9])
    auc, cov = delong_covariance(y, np.vstack([a, b]))
    np.testing.assert_allclose(auc, [7 / 12, 1 / 2])
    np.testing.assert_allclose(cov, [[7 / 72, 1 / 24], [1 / 24, 1 / 4]], atol=1e-15)
    result = delong_test(y, a, b)
    z = (1 / 12) / math.sqrt(19 / 72)
    assert result.z == pytest.approx(z) and result.p == pytest.approx(2 * norm.sf(z))
    assert result.auc_a == pytest.approx(skm.roc_auc_score(y, a))


def test_clustered_delong_reduces_to_delong_and_widens_for_correlated_slices():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    a, b = rng.normal(y, 1.0), rng.normal(0.5 * y, 1.0)
    plain = delong_covariance(y, np.vstack([a, b]))[1]
    singletons = delong_covariance(y, np.vstack([a, b]), clusters=np.arange(60))[1]
    np.testing.assert_allclose(singletons, plain, rtol=1e-12)
    # every patient contributes 4 identical slices: the clustered variance equals the
    # patient-level one, the naive slice-level variance is ~4x too small
    rep_y, rep_a, rep_b = (np.repeat(v, 4) for v in (y, a, b))
    naive = delong_covariance(rep_y, np.vstack([rep_a, rep_b]))[1]
    clustered = delong_covariance(rep_y, np.vstack([rep_a, rep_b]),
                                  clusters=np.repeat(np.arange(60), 4))[1]
    assert clustered[0, 0] > 3 * naive[0, 0]
    assert clustered[0, 0] == pytest.approx(plain[0, 0], rel=0.1)


def test_nadeau_bengio_matches_the_hand_computation():
    """d = [.02, .05, .01, .04]: mean .03, s² = 1e-3/3; J = 4, n₂/n₁ = 20/80, so
    t = .03 / sqrt((1/4 + 1/4) · 1e-3/3) = 2.3238, df 3."""
    t, p = corrected_resampled_t(np.array([0.02, 0.05, 0.01, 0.04]), n_train=80, n_test=20)
    assert t == pytest.approx(0.03 / math.sqrt(0.5 * 1e-3 / 3))
    assert t == pytest.approx(2.32379, abs=1e-5)
    assert p == pytest.approx(2 * student.sf(t, 3))
    naive_t = 0.03 / math.sqrt(1e-3 / 3 / 4)
    assert abs(t) < naive_t  # the correction widens
    assert math.isnan(corrected_resampled_t(np.array([0.1]), 80, 20)[0])


def test_repeated_splits_use_the_corrected_resampled_t(tmp_path):
    """Runs test different patients: a difference's SE is Nadeau–Bengio's on the per-split
    differences (the same number as corrected_resampled_t, computed by hand above)."""
    data = cohort(40)
    preds = predictions(data, CELLS, repeats=5)
    ids = np.array(sorted(data["patient_id"].unique()))
    keep = [preds[(preds["repeat"] == r) & preds["patient_id"].isin(
        np.random.default_rng(r).choice(ids, 20, replace=False))] for r in range(5)]
    preds = pd.concat(keep, ignore_index=True)
    folder = write_folder(tmp_path / "rs", preds, results_for(preds),
                          {"scheme": "repeated-splits"})
    tables = load_study(folder)
    stats = compute_statistics(tables, "test_roc_auc", n_bootstrap=200, seed=0)
    row = stats.analysis.superiority.iloc[0]
    a, b = (tuple(row[k].split(" / ")) for k in ("a", "b"))
    per = []
    for r in range(5):
        vals = []
        for cell in (a, b):
            g = preds[(preds["backend"] == cell[0]) & (preds["rule"] == cell[1])
                      & (preds["repeat"] == r)]
            vals.append(skm.roc_auc_score(g["label"], g["prob"]))
        per.append(vals[0] - vals[1])
    _, p = corrected_resampled_t(np.array(per), n_train=80, n_test=20)
    assert row["p"] == pytest.approx(p, rel=1e-9)


# -- thresholds, costs, lesion sizes ----------------------------------------------------------

def test_thresholded_metrics_use_the_rows_threshold(tmp_path):
    preds = predictions(cohort(20), {("custom", "surrogate"): 1.0}, repeats=2)
    at = {}
    for t in (0.5, 0.8):
        folder = write_folder(tmp_path / f"t{t}", preds, results_for(preds, threshold=t))
        table = main_table(load_study(folder), n_bootstrap=20)
        at[t] = table.iloc[0]["test_f1_ci_low"]
        p = load_study(folder).primary_predictions()
        assert (p["threshold"] == t).all()
    assert at[0.5] != at[0.8]
    legacy = write_folder(tmp_path / "old", preds.drop(columns="fold"),
                          results_for(preds, legacy=True))
    assert (load_study(legacy).primary_predictions()["threshold"] == THRESHOLD).all()


def test_energy_prices_acs_and_macs_and_labels_old_rows():
    assert operation_counts("snn", 800, 200, 1000) == (800, 200, BASIS_SPLIT)
    assert operation_counts("snn", None, None, 1000) == (1000, 0.0, BASIS_OLD)
    assert operation_counts("reference", 0.0, 12, None) == (0.0, 12, BASIS_SPLIT)
    assert all(math.isnan(v) for v in operation_counts("reference", None, None, None)[:2])
    assert energy_nj(800, 200) == pytest.approx((800 * 0.9 + 200 * 4.6) / 1000)
    # direct encoding: 1000 real-valued inputs cost ~5x their price as adds
    assert energy_nj(0, 1000) / energy_nj(1000, 0) == pytest.approx(4.6 / 0.9)


def test_recall_by_lesion_size(tmp_path):
    preds = predictions(cohort(20), {("custom", "surrogate"): 1.0}, repeats=2)
    folder = write_folder(tmp_path / "l", preds, results_for(preds, threshold=0.4))
    table = lesion_recall_table(load_study(folder)).set_index("lesion_mm2")
    assert list(table.index) == ["<100", "100–500", "≥500"]
    lesions = preds[preds["label"] == 1]
    small = lesions[lesions["lesion_mm2"] < 100]
    assert table.loc["<100", "slices"] == len(small)
    assert table.loc["<100", "recall"] == pytest.approx((small["prob"] >= 0.4).mean())
    assert lesion_recall_table(load_study(folder), (0.0, 200.0)).shape[0] == 2


# -- the pre-specified plan and old folders ---------------------------------------------------

def test_analysis_plan_defaults_and_errors():
    plan = analysis_plan({})
    assert (plan.primary_metric, plan.equivalence_metric, plan.alpha, plan.equivalence_margin,
            plan.n_bootstrap, plan.bootstrap_seed, plan.patient_score, plan.top_k) == (
        "roc_auc", "roc_auc", 0.05, 0.05, 2000, 0, "max", 3)
    # an older protocol without an equivalence metric had its margin on the primary metric
    old = analysis_plan({"analysis": {"primary_metric": "patient_pr_auc"}})
    assert (old.primary_metric, old.equivalence_metric) == ("patient_pr_auc", "patient_pr_auc")
    plan = analysis_plan({"analysis": {"family": [["custom/surrogate", "reference/mlp"]],
                                       "patient_score": "topk_mean", "top_k": 5}})
    assert plan.family == ((("custom", "surrogate"), ("reference", "mlp")),)
    for bad, key in (({"primary_metric": "speed"}, "primary_metric"),
                     ({"family": [["custom"]]}, "family"), ({"alpha": 2}, "alpha"),
                     ({"family": [["custom", "x/y"]]}, "family")):
        with pytest.raises(ReportError, match=key):
            analysis_plan({"analysis": bad})
    cells = list(CELLS)
    assert default_family(cells) == [
        (("custom", "surrogate"), ("reference", "logistic_regression")),
        (("custom", "tempotron"), ("reference", "logistic_regression")),
        (("snntorch", "surrogate"), ("reference", "logistic_regression")),
        (("custom", "surrogate"), ("custom", "tempotron"))]
    assert default_equivalence(cells) == [(("snntorch", "surrogate"), ("custom", "surrogate"))]


def test_an_old_results_folder_still_makes_a_report(tmp_path):
    """No fold / threshold / acs / macs columns, no scheme, no analysis: holdout defaults,
    synops priced as ACs and labelled, the primary analysis runs."""
    preds = predictions(cohort(20), CELLS, repeats=3)
    folder = write_folder(tmp_path / "old", preds.drop(columns=["fold", "lesion_mm2"]),
                          results_for(preds, legacy=True).drop(columns=["macs_per_sample"],
                                                               errors="ignore"))
    report = build_report(folder, n_bootstrap=100, figures=False)
    md = (report / "report.md").read_text()
    assert "scheme **holdout**" in md and "Holm" in md
    assert "Priced that way here: custom / surrogate, custom / tempotron" in md
    main = pd.read_csv(report / "tables" / "main.csv")
    snn = main[main["kind"] == "snn"].iloc[0]
    assert snn["energy_nj_per_sample_mean"] == pytest.approx(1000 * 0.9 / 1000)
    assert (report / "tables" / "primary_analysis.csv").exists()


def test_a_nested_cv_folder_pools_the_folds(tmp_path):
    preds = predictions(cohort(24), CELLS, repeats=2, folds=3)
    folder = write_folder(tmp_path / "cv", preds, results_for(preds), {
        "scheme": "nested-cv", "analysis": {"primary_metric": "patient_roc_auc",
                                            "patient_score": "topk_mean"}})
    tables = load_study(folder)
    stats = compute_statistics(tables, "test_patient_roc_auc", n_bootstrap=100, seed=0)
    row = stats.main.set_index(["backend", "rule"]).loc[("custom", "surrogate")]
    g = preds[(preds["backend"] == "custom") & (preds["rule"] == "surrogate")]
    pooled = [skm.roc_auc_score(*patient_table(g[g["repeat"] == r])[["label", "prob"]]
                                .to_numpy().T) for r in range(2)]
    assert row["test_patient_roc_auc_mean"] == pytest.approx(np.mean(pooled))
    assert stats.analysis.plan.patient_score == "topk_mean"
    report = build_report(folder, n_bootstrap=100, figures=False)
    md = (report / "report.md").read_text()
    assert "Slice recall by lesion size" in md and "Equivalence" in md
    # costs vary over every refit (2 repeats × 3 outer folds), and the caption says so
    assert "Cost per test sample and training time (mean ± std over refits (repeats × outer " \
           "folds))" in md
