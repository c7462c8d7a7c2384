"""The pre-specified primary analysis, read from ``protocol.json["analysis"]``.

Keys (absent → default): ``primary_metric`` (``"roc_auc"``: slice-level ROC-AUC), ``family``
(list of ``["backend/rule", "backend/rule"]`` pairs; null → every SNN cell vs
``reference/logistic_regression`` plus every pair of rules on the ``custom`` backend),
``equivalence`` (pairs; null → every other backend vs ``custom`` for the same rule),
``equivalence_metric`` (``"roc_auc"``) and ``equivalence_margin`` (0.05 on that metric's
scale), ``alpha`` (0.05), ``patient_score`` (``"max"`` | ``"topk_mean"``), ``top_k`` (3),
``n_bootstrap`` (2000), ``bootstrap_seed`` (0).

Why slice-level ROC-AUC: on the liver release nearly every patient has a lesion (10–20 %
lesion-free), so a patient-level endpoint rests on ~13–26 negatives and cannot detect
realistic differences, while the ~19k slices carry the information; ROC-AUC is
prevalence-free, so a margin means the same at any lesion share. Inference still respects
patients: the patient term is Obuchowski's clustered DeLong (patients as clusters), and the
training term comes from the refit seeds (:mod:`spikebench.reports.wald`). Patient-level ROC-AUC
and PR-AUC are secondary endpoints. ``spikebench calibrate`` simulates this design and prints its
coverage, type-I error, power and false-equivalence rate (docs/protocol.md).

- **Superiority family**: each pair ``a − b`` by the paired two-component t-test
  (:mod:`spikebench.reports.paired`); Holm–Bonferroni over this family only. The first pair is
  *the primary comparison*; the report gives its minimum detectable difference at 80 % power.
  Secondary columns: the same comparison of patient-level ROC-AUC and PR-AUC.
- **Equivalence family**: TOST with margin ``δ`` on ``equivalence_metric`` (Holm within this
  family), reported separately: "not significantly different" is not "equivalent", and cells
  with identical predictions are reported as identical, not as equivalent.
- **Sensitivity**: the primary comparison's patient-level secondary endpoints under both patient
  scores, max over slices and mean of the top-k slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spikebench.harness.results import METRICS

from .bootstrap import Cell, StudyBootstrap
from .load import ReportError
from .paired import POWER, cell_name, paired_difference, with_holm
from .scoring import PATIENT_SCORES
from .stats import holm
from .tables import metric_label

REFERENCE = ("reference", "logistic_regression")
ANCHOR_BACKEND = "custom"
#: The patient-level secondary endpoints of every superiority comparison.
SECONDARY = ("patient_roc_auc", "patient_pr_auc")


@dataclass(frozen=True)
class AnalysisPlan:
    """``protocol.json["analysis"]`` with defaults filled in (module docstring)."""

    primary_metric: str = "roc_auc"
    family: tuple[tuple[Cell, Cell], ...] | None = None
    equivalence: tuple[tuple[Cell, Cell], ...] | None = None
    equivalence_metric: str = "roc_auc"
    equivalence_margin: float = 0.05
    alpha: float = 0.05
    patient_score: str = "max"
    top_k: int = 3
    n_bootstrap: int = 2000
    bootstrap_seed: int = 0


def _cell(text: Any, key: str) -> Cell:
    parts = str(text).split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ReportError(f'protocol.json analysis.{key}: {text!r} is not "backend/rule"')
    return parts[0].strip(), parts[1].strip()


def _pairs(value: Any, key: str) -> tuple[tuple[Cell, Cell], ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, list | tuple) and len(p) == 2
                                              for p in value):
        raise ReportError(f"protocol.json analysis.{key} must be a list of [a, b] pairs")
    return tuple((_cell(a, key), _cell(b, key)) for a, b in value)


def _metric(raw: dict[str, Any], key: str, default: str) -> str:
    metric = str(raw.get(key) or default).removeprefix("test_")
    if metric not in METRICS:
        raise ReportError(f"protocol.json analysis.{key} {metric!r} is not one of "
                          f"{list(METRICS)}")
    return metric


def analysis_plan(protocol: dict[str, Any]) -> AnalysisPlan:
    """Parse and check ``protocol["analysis"]``; a bad value is one error naming the key.
    Folders from before the slice-level endpoint keep what their protocol named (their
    ``primary_metric`` is recorded there)."""
    raw = protocol.get("analysis") or {}
    if not isinstance(raw, dict):
        raise ReportError("protocol.json analysis must be an object")
    d = AnalysisPlan()
    score = str(raw.get("patient_score") or d.patient_score)
    if score not in PATIENT_SCORES:
        raise ReportError(f"protocol.json analysis.patient_score {score!r} is not one of "
                          f"{list(PATIENT_SCORES)}")
    numbers = {}
    for key, low, high in (("equivalence_margin", 0.0, 1.0), ("alpha", 0.0, 0.5),
                           ("top_k", 1, 10_000), ("n_bootstrap", 1, 1_000_000),
                           ("bootstrap_seed", -1, 2**32 - 1)):
        value = raw.get(key, getattr(d, key))
        try:
            value = type(getattr(d, key))(value)
        except (TypeError, ValueError):
            raise ReportError(f"protocol.json analysis.{key} must be a number") from None
        if not low < value <= high and not (key == "top_k" and value == low):
            raise ReportError(f"protocol.json analysis.{key} = {value} is outside ({low}, {high}]")
        numbers[key] = value
    primary = _metric(raw, "primary_metric", d.primary_metric)
    # an older protocol named no equivalence metric: its margin was on the primary metric
    equivalence = _metric(raw, "equivalence_metric",
                          d.equivalence_metric if "equivalence_metric" in raw or
                          "primary_metric" not in raw else primary)
    return AnalysisPlan(primary, _pairs(raw.get("family"), "family"),
                        _pairs(raw.get("equivalence"), "equivalence"), equivalence,
                        patient_score=score, **numbers)


def default_family(cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    """Every SNN cell vs ``reference/logistic_regression``, then every pair of rules on the
    ``custom`` backend (in cell order)."""
    snn = [c for c in cells if c[0] != "reference"]
    pairs = [(c, REFERENCE) for c in snn] if REFERENCE in cells else []
    anchor = [c for c in snn if c[0] == ANCHOR_BACKEND]
    pairs += [(a, b) for i, a in enumerate(anchor) for b in anchor[i + 1:]]
    return pairs


def default_equivalence(cells: list[Cell]) -> list[tuple[Cell, Cell]]:
    """Every other SNN backend vs ``custom`` for the same rule."""
    return [(c, (ANCHOR_BACKEND, c[1])) for c in cells
            if c[0] not in ("reference", ANCHOR_BACKEND) and (ANCHOR_BACKEND, c[1]) in cells]


@dataclass
class PrimaryAnalysis:
    """The tables and statements of the primary analysis."""

    plan: AnalysisPlan
    scheme: str
    superiority: pd.DataFrame
    equivalence: pd.DataFrame
    sensitivity: pd.DataFrame
    mdd: dict[str, float] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    #: Cells with a single training run: their intervals leave the training randomness out.
    single_run: list[str] = field(default_factory=list)


def _superiority(sb: StudyBootstrap, pairs: list[tuple[Cell, Cell]], plan: AnalysisPlan
                 ) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        rec = paired_difference(sb, a, b, plan.primary_metric,
                                patient_score=plan.patient_score).record()
        for metric in SECONDARY:
            if metric != plan.primary_metric:
                rec[f"p_{metric}"] = paired_difference(
                    sb, a, b, metric, patient_score=plan.patient_score).p
        rows.append(rec)
    return with_holm(pd.DataFrame(rows), plan.alpha) if rows else pd.DataFrame()


def _equivalence(sb: StudyBootstrap, pairs: list[tuple[Cell, Cell]], plan: AnalysisPlan
                 ) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        d = paired_difference(sb, a, b, plan.equivalence_metric,
                              patient_score=plan.patient_score,
                              confidence=1 - 2 * plan.alpha)
        p = math.nan if d.identical else d.wald.tost_p(plan.equivalence_margin)
        rows.append({"metric": f"test_{d.metric}", "a": cell_name(a), "b": cell_name(b),
                     "n_repeats": d.n_runs, "difference": d.estimate,
                     "ci90_low": d.ci_low, "ci90_high": d.ci_high, "se": d.se, "df": d.df,
                     "margin": plan.equivalence_margin, "p_tost": p,
                     "identical": d.identical})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p_tost"].to_numpy(float))
    frame["verdict"] = [
        "identical predictions" if same else "equivalent" if p < plan.alpha
        else "not shown equivalent"
        for same, p in zip(frame["identical"], frame["p_holm"], strict=True)]
    frame["equivalent"] = frame["verdict"] == "equivalent"
    return frame


def _sensitivity(sb: StudyBootstrap, sup: pd.DataFrame, family: list[tuple[Cell, Cell]],
                 plan: AnalysisPlan) -> pd.DataFrame:
    """The primary comparison's patient-level endpoints under both patient scores."""
    a, b = family[0]
    rows = []
    for score in dict.fromkeys((plan.patient_score, *PATIENT_SCORES)):
        label = "max over slices" if score == "max" else f"mean of top-{plan.top_k} slices"
        for metric in SECONDARY:
            d = paired_difference(sb, a, b, metric, patient_score=score)
            rows.append({"patient_score": label, "metric": metric_label(f"test_{metric}"),
                         "a": cell_name(a), "b": cell_name(b), "difference": d.estimate,
                         "ci_low": d.ci_low, "ci_high": d.ci_high, "p": d.p})
    return pd.DataFrame(rows)


def primary_analysis(sb: StudyBootstrap, plan: AnalysisPlan) -> PrimaryAnalysis:
    """Run the plan on the cells ``sb`` has predictions for; pairs naming a cell without
    predictions are dropped and listed."""
    cells = sb.cells
    family = list(plan.family) if plan.family is not None else default_family(cells)
    equivalence = (list(plan.equivalence) if plan.equivalence is not None
                   else default_equivalence(cells))
    dropped = [f"{cell_name(a)} vs {cell_name(b)}" for a, b in family + equivalence
               if a not in cells or b not in cells]
    family = [(a, b) for a, b in family if a in cells and b in cells]
    equivalence = [(a, b) for a, b in equivalence if a in cells and b in cells]
    sup = _superiority(sb, family, plan)
    single = [cell_name(c) for c in cells if len(sb.runs_of(c)) < 2]
    out = PrimaryAnalysis(plan, sb.scheme, sup, _equivalence(sb, equivalence, plan),
                          pd.DataFrame(), dropped=dropped, single_run=single)
    if sup.empty:
        return out
    first = paired_difference(sb, *family[0], plan.primary_metric,
                              patient_score=plan.patient_score)
    if not first.identical:
        out.mdd = {"alpha": first.wald.minimum_detectable(plan.alpha, POWER),
                   "alpha_family": first.wald.minimum_detectable(plan.alpha / len(sup), POWER),
                   "se": first.se, "df": first.df, "power": POWER,
                   "se_patients": first.wald.se_patients,
                   "se_training": first.wald.se_training}
    out.sensitivity = _sensitivity(sb, sup, family, plan)
    return out


def analysis_lines(a: PrimaryAnalysis, confidence: float = 0.95) -> list[str]:
    """The statements the report prints above the primary-analysis tables."""
    p = a.plan
    metric = f"test {metric_label(p.primary_metric)}"
    lines = [
        f"Pre-specified in protocol.json: primary metric **{metric}**, scheme **{a.scheme}**, "
        f"patient score **{p.patient_score}**"
        + (f" (top-{p.top_k})" if p.patient_score == "topk_mean" else "") + ".",
        f"Superiority family ({len(a.superiority)} comparisons"
        + (", default" if p.family is None else ", from the protocol") + "): "
        + ("; ".join(f"{r.a} vs {r.b}" for r in a.superiority.itertuples()) or "none")
        + f". Each is a paired t-test whose standard error adds the patient-sampling term "
        f"(patients as clusters) and both cells' training terms (their refit spread), on "
        f"Satterthwaite degrees of freedom ({confidence:.0%} interval, two-sided p); "
        f"Holm–Bonferroni over this family only; significant means adjusted p < {p.alpha}.",
        f"Equivalence family ({len(a.equivalence)} pairs"
        + (", default" if p.equivalence is None else ", from the protocol")
        + f"): TOST on test {metric_label(p.equivalence_metric)} with margin "
        f"±{p.equivalence_margin} ({1 - 2 * p.alpha:.0%} interval), Holm within this family, "
        "reported separately; cells with identical predictions are reported as such.",
    ]
    if a.mdd:
        lines.append(
            f"Primary comparison **{a.superiority['a'].iloc[0]} vs "
            f"{a.superiority['b'].iloc[0]}**: standard error of the difference "
            f"{a.mdd['se']:.4f} (patients {a.mdd['se_patients']:.4f}, training "
            f"{a.mdd['se_training']:.4f}; {a.mdd['df']:.0f} df); minimum detectable "
            f"difference at {a.mdd['power']:.0%} power {a.mdd['alpha']:.4f} at α = {p.alpha} "
            f"(two-sided), {a.mdd['alpha_family']:.4f} at the Holm first step "
            f"α/{len(a.superiority)}.")
    if a.single_run:
        lines.append("One training run only (no refit seeds), so their intervals leave the "
                     "training randomness out: " + ", ".join(a.single_run) + ".")
    if a.dropped:
        lines.append("Left out (no predictions for a cell): " + "; ".join(a.dropped) + ".")
    return lines
