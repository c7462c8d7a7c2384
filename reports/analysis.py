"""The pre-specified primary analysis, read from ``protocol.json["analysis"]``.

Keys (absent → default): ``primary_metric`` ("patient_pr_auc"), ``family`` (list of
``["backend/rule", "backend/rule"]`` pairs; null → every SNN cell vs
``reference/logistic_regression`` plus every pair of rules on the ``custom`` backend),
``equivalence`` (pairs; null → every other backend vs ``custom`` for the same rule),
``equivalence_margin`` (0.05), ``alpha`` (0.05), ``patient_score`` ("max" | "topk_mean"),
``top_k`` (3), ``n_bootstrap`` (2000).

- **Superiority family**: each pair ``a − b`` by the paired patient bootstrap
  (:mod:`spikebench.reports.paired`); Holm–Bonferroni over this family only. The first pair is
  *the primary comparison*; the report gives its minimum detectable difference at 80 % power.
  Secondary columns: DeLong's test of patient ROC-AUC on the repeat-averaged patient score
  and the clustered (Obuchowski) DeLong test of slice ROC-AUC on repeat-averaged slice
  probabilities, patients as clusters (holdout / nested-cv, where every repeat tests the same
  patients) and, under
  ``repeated-splits``, the Nadeau–Bengio corrected resampled t-test on the per-repeat
  differences.
- **Equivalence family**: TOST with margin ``δ`` on each pair (Holm within this family),
  reported separately: "not significantly different" is not "equivalent".
- **Sensitivity**: the primary comparison (and its Holm-adjusted p within the family) under both
  patient scores, max over slices and mean of the top-k slices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spikebench.harness.results import METRICS

from .bootstrap import Cell, StudyBootstrap, percentile_interval
from .delong import delong_test
from .load import ReportError, StudyTables
from .paired import (
    POWER,
    cell_name,
    minimum_detectable_difference,
    paired_difference,
    tost_p,
    with_holm,
)
from .scoring import PATIENT_SCORES, patient_table
from .stats import corrected_resampled_t, holm
from .tables import metric_label

REFERENCE = ("reference", "logistic_regression")
ANCHOR_BACKEND = "custom"


@dataclass(frozen=True)
class AnalysisPlan:
    """``protocol.json["analysis"]`` with defaults filled in (module docstring)."""

    primary_metric: str = "patient_pr_auc"
    family: tuple[tuple[Cell, Cell], ...] | None = None
    equivalence: tuple[tuple[Cell, Cell], ...] | None = None
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


def analysis_plan(protocol: dict[str, Any]) -> AnalysisPlan:
    """Parse and check ``protocol["analysis"]``; a bad value is one error naming the key."""
    raw = protocol.get("analysis") or {}
    if not isinstance(raw, dict):
        raise ReportError("protocol.json analysis must be an object")
    d = AnalysisPlan()
    metric = str(raw.get("primary_metric") or d.primary_metric).removeprefix("test_")
    if metric not in METRICS:
        raise ReportError(f"protocol.json analysis.primary_metric {metric!r} is not one of "
                          f"{list(METRICS)}")
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
    return AnalysisPlan(metric, _pairs(raw.get("family"), "family"),
                        _pairs(raw.get("equivalence"), "equivalence"), patient_score=score,
                        **numbers)


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


def _delong_patient(sb: StudyBootstrap, a: Cell, b: Cell, score: str, top_k: int) -> float:
    """DeLong p of patient ROC-AUC on each patient's score averaged over the cell's repeats."""
    pred = sb.predictions
    scores = []
    for cell in (a, b):
        g = pred[(pred["backend"] == cell[0]) & (pred["rule"] == cell[1])]
        per = [patient_table(r, score, top_k) for _, r in g.groupby("run")]
        if not per:
            return math.nan
        scores.append(pd.concat(per).groupby("patient_id").agg(label=("label", "max"),
                                                               prob=("prob", "mean")))
    both = scores[0].merge(scores[1], left_index=True, right_index=True, suffixes=("", "_b"))
    try:
        return delong_test(both["label"].to_numpy(), both["prob"].to_numpy(),
                           both["prob_b"].to_numpy()).p
    except ValueError:
        return math.nan


def _delong_slices(sb: StudyBootstrap, a: Cell, b: Cell) -> float:
    """Clustered (Obuchowski) DeLong p of slice ROC-AUC, clusters = patients, on each slice's
    probability averaged over the cell's repeats (the same slices in every repeat)."""
    pred = sb.predictions
    keys = ["patient_id", "slice_idx"]
    scores = [pred[(pred["backend"] == c[0]) & (pred["rule"] == c[1])].groupby(keys).agg(
        label=("label", "max"), prob=("prob", "mean")) for c in (a, b)]
    both = scores[0].merge(scores[1], left_index=True, right_index=True, suffixes=("", "_b"))
    try:
        return delong_test(both["label"].to_numpy(), both["prob"].to_numpy(),
                           both["prob_b"].to_numpy(),
                           clusters=both.index.get_level_values("patient_id").to_numpy()).p
    except ValueError:
        return math.nan


def _nadeau_bengio(tables: StudyTables, sb: StudyBootstrap, a: Cell, b: Cell, metric: str,
                   score: str) -> float:
    pa, _ = sb.per_repeat(a, metric, score)
    pb, _ = sb.per_repeat(b, metric, score)
    ok = tables.ok
    n_train = (pd.to_numeric(ok["n_train_patients"], errors="coerce")
               + pd.to_numeric(ok["n_val_patients"], errors="coerce").fillna(0)).mean()
    n_test = pd.to_numeric(ok["n_test_patients"], errors="coerce").mean()
    return corrected_resampled_t(pa - pb, float(n_train), float(n_test))[1]


def _superiority(tables: StudyTables, sb: StudyBootstrap, pairs: list[tuple[Cell, Cell]],
                 plan: AnalysisPlan, score: str) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        rec = paired_difference(sb, a, b, plan.primary_metric, patient_score=score).record()
        if sb.scheme == "repeated-splits":
            rec["p_nadeau_bengio"] = _nadeau_bengio(tables, sb, a, b, plan.primary_metric, score)
        else:
            rec["p_delong_patient_roc_auc"] = _delong_patient(sb, a, b, score, plan.top_k)
            if "slice_idx" in sb.predictions:
                rec["p_delong_slice_roc_auc"] = _delong_slices(sb, a, b)
        rows.append(rec)
    return with_holm(pd.DataFrame(rows), plan.alpha) if rows else pd.DataFrame()


def _equivalence(sb: StudyBootstrap, pairs: list[tuple[Cell, Cell]], plan: AnalysisPlan
                 ) -> pd.DataFrame:
    rows = []
    for a, b in pairs:
        d = paired_difference(sb, a, b, plan.primary_metric, patient_score=plan.patient_score)
        low, high = percentile_interval(d.replicates, 1 - 2 * plan.alpha)
        rows.append({"metric": f"test_{d.metric}", "a": cell_name(a), "b": cell_name(b),
                     "n_repeats": d.n_repeats, "difference": d.estimate,
                     "ci90_low": low, "ci90_high": high, "margin": plan.equivalence_margin,
                     "p_tost": tost_p(d.replicates, plan.equivalence_margin)})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["p_holm"] = holm(frame["p_tost"].to_numpy(float))
    frame["equivalent"] = frame["p_holm"] < plan.alpha
    return frame


def primary_analysis(tables: StudyTables, sb: StudyBootstrap, plan: AnalysisPlan
                     ) -> PrimaryAnalysis:
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
    sup = _superiority(tables, sb, family, plan, plan.patient_score)
    out = PrimaryAnalysis(plan, sb.scheme, sup, _equivalence(sb, equivalence, plan),
                          pd.DataFrame(), dropped=dropped)
    if sup.empty:
        return out
    se = float(sup["se"].iloc[0])
    out.mdd = {"alpha": minimum_detectable_difference(se, plan.alpha),
               "alpha_bonferroni": minimum_detectable_difference(se, plan.alpha / len(sup)),
               "se": se, "power": POWER}
    rows = []
    for score in dict.fromkeys((plan.patient_score, *PATIENT_SCORES)):
        frame = sup if score == plan.patient_score else _superiority(
            tables, sb, family, plan, score)
        first = frame.iloc[0]
        label = "max over slices" if score == "max" else f"mean of top-{plan.top_k} slices"
        rows.append({"patient_score": label, "a": first["a"], "b": first["b"],
                     "difference": first["difference"], "ci_low": first["ci_low"],
                     "ci_high": first["ci_high"], "p": first["p"], "p_holm": first["p_holm"],
                     "significant": bool(first["significant"])})
    out.sensitivity = pd.DataFrame(rows)
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
        + f". Each is a paired patient bootstrap ({confidence:.0%} interval, two-sided p); "
        f"Holm–Bonferroni over this family only; significant means adjusted p < {p.alpha}.",
        f"Equivalence family ({len(a.equivalence)} pairs"
        + (", default" if p.equivalence is None else ", from the protocol")
        + f"): TOST with margin ±{p.equivalence_margin} ({1 - 2 * p.alpha:.0%} interval), "
        "Holm within this family, reported separately.",
    ]
    if a.mdd:
        lines.append(
            f"Primary comparison **{a.superiority['a'].iloc[0]} vs "
            f"{a.superiority['b'].iloc[0]}**: bootstrap SE of the difference "
            f"{a.mdd['se']:.4f}; minimum detectable difference at {a.mdd['power']:.0%} power "
            f"{a.mdd['alpha']:.4f} at α = {p.alpha} (two-sided), {a.mdd['alpha_bonferroni']:.4f} "
            f"at the Holm first step α/{len(a.superiority)}.")
    if a.dropped:
        lines.append("Left out (no predictions for a cell): " + "; ".join(a.dropped) + ".")
    return lines
