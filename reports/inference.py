"""The report's statistics in one place: numbers, their tables and the sentences about them.

:func:`compute_statistics` builds one shared patient-resample plan
(:class:`~spikebench.reports.bootstrap.StudyBootstrap`) and from it the main table's intervals,
the pre-specified primary analysis (:mod:`~spikebench.reports.analysis`), the exploratory
pairwise comparisons and the best-cell marks (:mod:`~spikebench.reports.paired`), and the recall
by lesion size. :mod:`~spikebench.reports.build` only places the results on the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .analysis import (
    AnalysisPlan,
    PrimaryAnalysis,
    analysis_lines,
    analysis_plan,
    primary_analysis,
)
from .bootstrap import CONFIDENCE, SHARED_COHORT
from .calibration import Rate
from .calibration import Result as Calibration
from .cross_track import CrossTrack, cross_track_comparison
from .energy import BASIS_OLD, CITATION, E_AC_PJ, E_MAC_PJ
from .load import StudyTables
from .paired import best_cell, pairwise_comparisons
from .render import TextTable
from .tables import TEST_METRICS, lesion_recall_table, main_table, metric_label, study_bootstrap

#: Metrics the exploratory pairwise comparisons run on besides the primary one.
SECONDARY_TESTED = ("test_balanced_accuracy",)
#: The statistical text tables, in the order the report prints them.
STATISTICS_TABLES = ("primary_analysis", "calibration", "sensitivity", "equivalence",
                     "comparisons", "lesion_recall")
#: The text tables of the features-vs-images section (its own section of the report).
CROSS_TRACK_TABLES = ("cross_track", "cross_track_cnn")


@dataclass
class Statistics:
    """Everything statistical a report shows."""

    plan: AnalysisPlan
    scheme: str
    n_bootstrap: int
    seed: int
    main: pd.DataFrame
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    best_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    marks: dict[str, tuple[str, str]] = field(default_factory=dict)
    analysis: PrimaryAnalysis | None = None
    lesion_recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    cross_track: CrossTrack | None = None
    calibration: Calibration | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """The numeric tables written as CSV besides main / comparisons / best-cell tests."""
        a = self.analysis
        out = {"lesion_recall": self.lesion_recall}
        if a is not None:
            out |= {"primary_analysis": a.superiority, "equivalence": a.equivalence,
                    "sensitivity": a.sensitivity}
        if self.cross_track is not None:
            out |= {"cross_track": self.cross_track.best,
                    "cross_track_cnn": self.cross_track.cnn_pairs}
        if self.calibration is not None:
            out["calibration"] = pd.DataFrame([self.calibration.as_row()])
        return out


def compute_statistics(tables: StudyTables, primary: str, *, n_bootstrap: int | None,
                       seed: int | None) -> Statistics:
    """All statistics of one report; ``n_bootstrap`` / ``seed`` None → the protocol's
    pre-specified ``[analysis].n_bootstrap`` / ``bootstrap_seed`` (defaults 2000 and 0)."""
    plan = analysis_plan(tables.protocol)
    n_boot = int(n_bootstrap or plan.n_bootstrap)
    seed = plan.bootstrap_seed if seed is None else int(seed)
    sb = study_bootstrap(tables, n_bootstrap=n_boot, seed=seed, top_k=plan.top_k)
    main = main_table(tables, n_bootstrap=n_boot, seed=seed, bootstrap=sb)
    stats = Statistics(plan, tables.scheme, n_boot, seed, main)
    stats.lesion_recall = lesion_recall_table(tables)
    if sb is None:
        return stats
    cells = [(b, r) for b, r in zip(main["backend"], main["rule"]) if (b, r) in sb.cells] \
        if not main.empty else []
    tested = tuple(dict.fromkeys((primary, *SECONDARY_TESTED)))
    stats.comparisons = pairwise_comparisons(sb, cells, tested, alpha=plan.alpha)
    frames = []
    for col in TEST_METRICS:
        best, significant, tests = best_cell(sb, cells, col, alpha=plan.alpha,
                                             validation=validation_scores(tables, col))
        if len(tests):
            frames.append(tests.assign(significant_all=significant))
        if best is not None and significant:
            stats.marks[col] = best
    stats.best_tests = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    stats.analysis = primary_analysis(sb, plan)
    stats.cross_track = cross_track_comparison(tables.ok, sb, main, plan,
                                               stats.analysis.superiority, stats.comparisons)
    stats.calibration = _calibration(tables, plan, len(stats.analysis.superiority), seed)
    return stats


def _calibration(tables: StudyTables, plan: AnalysisPlan, family: int, seed: int
                 ) -> Calibration | None:
    """The report's calibration (:func:`spikebench.reports.calibration.for_report`) of the
    slice ROC-AUC endpoint, with the spec's ``[calibration]`` settings when it has them."""
    from .calibration import for_report

    if plan.primary_metric != "roc_auc":
        return None
    settings = tables.spec.get("calibration") or {}
    return for_report(tables, margin=plan.equivalence_margin, alpha=plan.alpha, family=family,
                      replicates=int(settings.get("report_replicates", 100)), seed=seed,
                      assumed_sigma_run=float(settings.get("sigma_run", 0.013)))


def validation_scores(tables: StudyTables, test_column: str) -> dict[tuple[str, str], float]:
    """Each cell's mean validation score of the metric of ``test_column`` over its refits."""
    column = "val_" + test_column.removeprefix("test_")
    ok = tables.ok
    if column not in ok:
        return {}
    means = pd.to_numeric(ok[column], errors="coerce").groupby([ok["backend"], ok["rule"]]).mean()
    return {(str(cell[0]), str(cell[1])): float(v)
            for cell, v in zip(means.index, means.to_numpy(), strict=True)}


def _fmt(value: object, digits: int = 4) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _table(name: str, title: str, frame: pd.DataFrame, columns: dict[str, str],
           under: dict[str, str] | None = None) -> TextTable:
    """``frame``'s ``columns`` (renamed) as text; ``under``: HTML second lines (TextTable)."""
    frame = frame[[c for c in columns if c in frame.columns]]
    rows = [[_fmt(v) for v in rec] for rec in frame.itertuples(index=False)]
    return TextTable(name, title, [columns[c] for c in frame.columns], rows,
                     under=dict(under or {}))


_PAIR = {"a": "a", "b": "b", "n_repeats": "runs", "difference": "a − b",
         "ci_low": "CI low", "ci_high": "CI high"}


def statistics_text_tables(s: Statistics) -> dict[str, TextTable]:
    """The statistical tables as text: primary, equivalence, sensitivity, exploratory
    comparisons, lesion-size recall."""
    out: dict[str, TextTable] = {}
    a = s.analysis
    if a is not None and not a.superiority.empty:
        out["primary_analysis"] = _table(
            "primary_analysis", f"Primary analysis: superiority family, test "
            f"{metric_label(s.plan.primary_metric)} ({CONFIDENCE:.0%} interval; patients and "
            "training runs)",
            a.superiority, {**_PAIR, "se": "SE", "df": "df", "p": "p", "p_holm": "p (Holm)",
                            "significant": "significant",
                            "p_patient_roc_auc": "p (patient ROC-AUC)",
                            "p_patient_pr_auc": "p (patient PR-AUC)"},
            # HTML: pairs of columns share one cell (second lines), so the table fits a page
            under={"b": "a", "CI high": "CI low", "df": "SE", "p (Holm)": "p",
                   "p (patient PR-AUC)": "p (patient ROC-AUC)"})
    if a is not None and not a.equivalence.empty:
        out["equivalence"] = _table(
            "equivalence", f"Equivalence: TOST on test "
            f"{metric_label(s.plan.equivalence_metric)}, margin ±{s.plan.equivalence_margin}",
            a.equivalence, {"a": "a", "b": "b", "n_repeats": "runs", "difference": "a − b",
                            "ci90_low": "90% CI low", "ci90_high": "90% CI high",
                            "p_tost": "p (TOST)", "p_holm": "p (Holm)",
                            "verdict": "verdict"})
    if a is not None and not a.sensitivity.empty:
        out["sensitivity"] = _table(
            "sensitivity", "Secondary endpoints of the primary comparison under both patient "
            "scores", a.sensitivity, {"patient_score": "patient score", "metric": "metric",
                                      **_PAIR, "p": "p"})
    if not s.comparisons.empty:
        comp = s.comparisons.assign(metric=s.comparisons["metric"].map(metric_label))
        out["comparisons"] = _table(
            "comparisons", "Exploratory paired comparisons (not pre-specified; Holm within "
            "each metric)", comp, {"metric": "metric", "within": "within", **_PAIR, "p": "p",
                                   "p_holm": "p (Holm)", "significant": "significant"})
    if s.calibration is not None:
        out["calibration"] = calibration_table(s.calibration)
    out |= _cross_track_tables(s)
    if not s.lesion_recall.empty:
        out["lesion_recall"] = _table(
            "lesion_recall", "Slice recall by lesion size (at each model's threshold, pooled "
            "over repeats)", s.lesion_recall,
            {"backend": "backend", "rule": "rule", "lesion_mm2": "lesion mm²",
             "slices": "slices", "patients": "patients", "recall": "recall"})
    return out


def calibration_table(c: Calibration) -> TextTable:
    """What this design's primary comparison can claim, by simulation of its own cohort."""
    d, st = c.design, c.settings

    def rate(x: Rate) -> str:
        return f"{x.value:.3f} ± {x.se:.3f}" if math.isfinite(x.value) else ""

    sigma = f"{c.sigma_run:.4f}" + (" (assumed: one run per cell)" if c.sigma_assumed else "")
    rows = [["coverage of 95 % cell intervals", rate(c.coverage_cell), "≥ 0.935"],
            ["coverage of 95 % difference intervals", rate(c.coverage_difference), "≥ 0.935"],
            [f"type-I error of the paired test (α = {st.alpha})", rate(c.type1), "≤ 0.06"],
            [f"false equivalence at the margin ±{st.margin}", rate(c.false_equivalence),
             "≤ 0.05"]]
    for delta, p in c.power.items():
        rows.append([f"power at a true ΔAUC of {delta:g} (α; α/{st.family})",
                     f"{rate(p)}; {rate(c.power_family[delta])}", "≥ 0.80"])
    rows.append(["minimum detectable ΔAUC (80 % power, α)", f"{c.mdd:.4f}", ""])
    title = (f"Calibration of this design: {c.replicates} simulated studies of its cohort "
             f"({d.patients} patients, {d.lesion_free} lesion-free, {d.folds} test fold(s), "
             f"{d.runs} run(s) per cell, run-to-run SD of slice ROC-AUC {sigma}); "
             "Monte-Carlo standard errors")
    return TextTable("calibration", title, ["property", "simulated", "target"], rows)


def _cross_track_tables(s: Statistics) -> dict[str, TextTable]:
    """The best feature cell vs the best image cell, and SNN image cells vs the CNN."""
    ct, label = s.cross_track, metric_label(s.plan.primary_metric)
    if ct is None:
        return {}
    caveat = ("; cells selected post hoc on test data, p not adjusted for the selection"
              if ct.post_hoc else "; cells selected on validation")
    out = {"cross_track": _table(
        "cross_track", f"Features vs images: best cell of each track, test {label} "
        f"({CONFIDENCE:.0%} paired interval, patients and training runs{caveat})", ct.best,
        {"features": "features", "features_basis": "features chosen on", "images": "images",
         "images_basis": "images chosen on", "n_repeats": "repeats",
         "difference": "images − features", "ci_low": "CI low", "ci_high": "CI high",
         "p": "p"})}
    if not ct.cnn_pairs.empty:
        out["cross_track_cnn"] = _table(
            "cross_track_cnn", f"SNN image cells vs the CNN reference, test {label} "
            "(exploratory; Holm over these pairs)", ct.cnn_pairs,
            {**_PAIR, "p": "p", "p_holm": "p (Holm)", "significant": "significant"})
    return out


def significance_lines(s: Statistics, star: str) -> list[str]:
    """What the primary analysis and the marks mean (the report's significance section)."""
    lines = analysis_lines(s.analysis, CONFIDENCE) if s.analysis is not None else [
        "No predictions.parquet: the patient-level analysis cannot be run."]
    marked = ", ".join(f"{metric_label(c)}: {b} / {r}" for c, (b, r) in s.marks.items())
    lines.append(f"A {star} marks the cell with the best validation score of a column only "
                 "when it also beats every other cell on test in a paired patient bootstrap, "
                 "Holm over those comparisons (chosen on validation, judged on test). "
                 + (f"Marked: {marked}." if marked else "No cell is marked."))
    return lines


def methods_lines(s: Statistics) -> list[str]:
    """How the intervals, tests and costs were computed (the report's Methods section)."""
    old = [] if s.main.empty or "cost_basis" not in s.main else [
        f"{b} / {r}" for b, r, basis in zip(s.main["backend"], s.main["rule"],
                                            s.main["cost_basis"]) if BASIS_OLD in basis]
    if s.scheme in SHARED_COHORT:
        intervals = (
            f"**Confidence intervals.** {CONFIDENCE:.0%}, scheme {s.scheme}: estimate ± "
            "t × SE with SE² = V_patients + s²/R. A cell's estimate is the mean over its R "
            "training runs (repeats × refit seeds) of the run's metric on the test patients "
            "(under nested-cv a run's folds are pooled into one out-of-fold set); s² is the "
            "variance of those run values (the training randomness); V_patients the variance "
            "of the run-averaged metric over patient resamples — Obuchowski's clustered DeLong "
            "variance (patients as clusters) for ROC-AUC, else a patient bootstrap of "
            f"{s.n_bootstrap} replicates (seed {s.seed}) shared by every cell and run. Student's "
            "t on Welch–Satterthwaite degrees of freedom; estimand: the expected test metric of "
            "one training run of the cell's procedure, for patients like the study's. The ± "
            "std is the spread over runs alone.")
    else:
        intervals = (
            f"**Confidence intervals.** {CONFIDENCE:.0%}, scheme {s.scheme}: the runs test "
            "different patients, so their spread holds patient sampling and training alike; "
            "its variance is corrected for the overlap of the splits (Nadeau & Bengio 2003: "
            "SE² = (1/J + n_test/n_train) s² over J splits, t on J − 1 df).")
    return [
        intervals,
        "**Tests.** A paired difference has the same two terms: the patient term of the "
        "difference on the same resampled patients (for ROC-AUC the joint clustered DeLong "
        "covariance of both cells' kernels) plus both cells' training terms; two-sided t-test, "
        "Holm–Bonferroni within a family; TOST for equivalence (the 90 % interval inside "
        "± the margin); cells with identical predictions are reported as identical. Minimum "
        "detectable difference = (t₁₋α/₂ + t₀.₈) × SE. The calibration section says how "
        "often these intervals cover and these tests err for this design.",
        "**Metrics.** Thresholded metrics at each model's validation-chosen threshold (0.5 when "
        "the results do not record one); PR-AUC is average precision; a patient's label is 1 "
        "when any slice has a lesion, its score the maximum slice probability (sensitivity: "
        f"the mean of its top-{s.plan.top_k} slices). Chance level of PR-AUC is the "
        "prevalence.",
        f"**Energy.** ACs × E_AC + MACs × E_MAC with E_AC = {E_AC_PJ:.1f} pJ (float add) and "
        f"E_MAC = {E_MAC_PJ:.1f} pJ (float mult 3.7 + add 0.9). A MAC is counted wherever a "
        "layer's input is real-valued (direct-encoded first layer, real-valued readout, "
        f"non-spiking references). Source: {CITATION}. Memory access is not counted; this "
        "compares operation counts, not measured energy. Rows marked 'synops as ACs (old "
        "results)' predate the AC/MAC split and understate direct-encoded networks."
        + (f" Priced that way here: {', '.join(old)}." if old else ""),
    ]
