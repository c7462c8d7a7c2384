"""Features vs images: the best cell of each track compared on the same test patients.

The image track (rules reading the liver crops: ``conv_surrogate``, ``cnn``, ``cnn_mil``) runs on
the same patients, repeats and folds as the feature track, so the two can be compared *paired*,
with the machinery every other comparison of the report uses
(:func:`~spikebench.reports.paired.paired_difference` on the study's one shared
:class:`~spikebench.reports.bootstrap.StudyBootstrap`: same patient and repeat resamples, same
pooling of a repeat's outer folds under ``nested-cv``, same two-sided bootstrap p). The metric
and patient score are the pre-specified primary analysis's (``protocol.json["analysis"]``).

**How "best" is chosen, and why on validation.** The report's winner elsewhere (the ★ of
:func:`~spikebench.reports.paired.best_cell`) is the cell with the best *test* estimate, which
is fine for a mark that must then beat every other cell after Holm, but a single test of
"test-best features vs test-best images" would reuse the test data that picked the pair: the
p-value would be optimistic by an amount it does not state. Every results row carries the refit
model's validation metrics (``val_<metric>``, computed on rows the test never sees), so each
track's cell is chosen by the mean over repeats (of the mean over folds) of the validation
primary metric. The test comparison of the chosen pair is then an ordinary paired test.

**Ties, broken on validation too.** Small validation sets tie often (every cell at validation
patient PR-AUC 1.0), and taking the first tied cell in table order would be an arbitrary choice.
Cells are therefore compared lexicographically on a list of validation metrics fixed before
any result is read (:func:`selection_criteria`): the primary metric, then
:data:`TIE_BREAK` in its order (the other patient-level metric, then slice-level ROC-AUC and
PR-AUC, which rank many more slices than there are patients and so rarely tie). Two means closer
than :data:`TIE_TOLERANCE` (relative) are tied; a NaN ranks below every value. Only when cells
are still tied on every criterion does table order decide, and the report says so; the
:class:`Pick` records the deciding criterion and the cells tied on the primary metric. The test
data are never read to break a tie. The validation scores are optimistic (they
also steered early stopping and tuning) and favour heavily tuned cells, which can make the
*choice* worse but does not bias the *test* of the chosen pair. When any candidate of a track
lacks a finite validation score (old folders, a validation set with one class), that track falls
back to the test estimate, and the table says the selection is post hoc and its p is not
adjusted for it. The geometry reference is a leak detector, not a model of the features, and is
never a candidate.

**SNN image cells vs the CNN.** Each spiking image cell is also compared with
``reference / cnn`` (the non-spiking reference of the image track, same topology) unless that
pair is already in the report's primary analysis or its exploratory comparisons of the same
metric; these added pairs are exploratory, Holm over them.

Both cells of every pair must have been tested on the same patients in every repeat and fold
they share (a missing fold of a running study is incompleteness, shown by the coverage table,
not a mismatch); otherwise :class:`~spikebench.reports.load.ReportError` names the two cells.
Nothing is computed unless both tracks have cells with predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import pandas as pd

from spikebench.harness.metrics import PATIENT_METRICS, validation_value

from .analysis import AnalysisPlan
from .bootstrap import CONFIDENCE, Cell, StudyBootstrap
from .load import ReportError
from .paired import cell_name, paired_difference, with_holm
from .tables import metric_label

#: The non-spiking reference of the image track.
CNN_REFERENCE: Cell = ("reference", "cnn")
#: The leak detector (ROI area and slice position only): never a track's best cell.
LEAK_DETECTOR: Cell = ("reference", "geometry")
#: How a track's best cell was chosen.
BASES = ("validation", "test")
#: Validation metrics that break a tie on the primary metric, in this order (the primary metric
#: itself is left out when it is one of them): the other patient-level metric, then the
#: slice-level ranking metrics (continuous over many slices, so ties are rare).
TIE_BREAK = ("patient_pr_auc", "patient_roc_auc", "roc_auc", "pr_auc")
#: Two mean validation scores within this relative distance are tied.
TIE_TOLERANCE = 1e-12
#: ``Pick.decided_by`` when the cells are tied on every criterion: the first in table order.
TABLE_ORDER = "table order"


@dataclass(frozen=True)
class Pick:
    """A track's chosen cell, what it was chosen on (``validation`` | ``test``) and the score
    (the primary metric's). ``decided_by``: the criterion that separated the chosen cell (a
    metric name, or :data:`TABLE_ORDER`); ``tied``: the cells tied with it on the primary metric,
    itself included, in table order (empty when the primary metric alone decided)."""

    track: str
    cell: Cell
    basis: str
    score: float
    decided_by: str
    tied: tuple[Cell, ...] = ()


@dataclass
class CrossTrack:
    """The cross-track comparison (``best``: one row, images − features) and the SNN image
    cells vs the CNN reference (``cnn_pairs``; ``already``: pairs the report already has)."""

    metric: str
    patient_score: str
    features: Pick
    images: Pick
    best: pd.DataFrame
    cnn_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    already: list[str] = field(default_factory=list)
    in_family: bool = False
    snn_images: list[Cell] = field(default_factory=list)
    has_cnn: bool = False

    @property
    def post_hoc(self) -> bool:
        """Whether either cell was chosen on test data."""
        return "test" in (self.features.basis, self.images.basis)


def track_cells(main: pd.DataFrame, sb: StudyBootstrap) -> dict[str, list[Cell]]:
    """Cells with predictions per track, in the main table's order (leak detector left out)."""
    out: dict[str, list[Cell]] = {"features": [], "images": []}
    if main.empty or "track" not in main.columns:
        return out
    for backend, rule, track in zip(main["backend"], main["rule"], main["track"]):
        cell = (str(backend), str(rule))
        if cell in sb.cells and cell != LEAK_DETECTOR and str(track) in out:
            out[str(track)].append(cell)
    return out


def validation_scores(ok: pd.DataFrame, cells: list[Cell], metric: str) -> dict[Cell, float]:
    """Per cell: mean over repeats of the mean over folds of ``val_<metric>`` (NaN if none)."""
    column = f"val_{metric}"
    out = {}
    for cell in cells:
        g = ok[(ok["backend"] == cell[0]) & (ok["rule"] == cell[1])]
        if column not in g.columns or g.empty:
            out[cell] = math.nan
            continue
        per_repeat = pd.to_numeric(g[column], errors="coerce").groupby(g["repeat"]).mean()
        out[cell] = float(per_repeat.mean()) if per_repeat.notna().any() else math.nan
    return out


def selection_criteria(metric: str) -> tuple[str, ...]:
    """The validation metrics a track's cells are compared on, in order: the primary
    ``metric``, then :data:`TIE_BREAK` without it. Fixed in code, so declared before any run."""
    return (metric, *(m for m in TIE_BREAK if m != metric))


def tied_best(scores: dict[Cell, float]) -> list[Cell]:
    """The cells whose score is the best within :data:`TIE_TOLERANCE`, in the given order; a
    NaN ranks below every value (all-NaN cells tie with each other)."""
    ranked = {cell: validation_value(v) for cell, v in scores.items()}
    top = max(ranked.values())
    return [c for c, v in ranked.items() if math.isclose(v, top, rel_tol=TIE_TOLERANCE)]


def lexicographic_best(ok: pd.DataFrame, cells: list[Cell], criteria: tuple[str, ...]
                       ) -> tuple[Cell, str, tuple[Cell, ...]]:
    """The best of ``cells`` (table order) on validation, comparing ``criteria`` in turn:
    ``(cell, deciding criterion or TABLE_ORDER, cells tied on the first criterion or ())``."""
    tied_on_primary: tuple[Cell, ...] = ()
    for i, metric in enumerate(criteria):
        cells = tied_best(validation_scores(ok, cells, metric))
        if i == 0 and len(cells) > 1:
            tied_on_primary = tuple(cells)
        if len(cells) == 1:
            return cells[0], metric, tied_on_primary
    return cells[0], TABLE_ORDER, tied_on_primary


def pick_best(ok: pd.DataFrame, sb: StudyBootstrap, track: str, cells: list[Cell],
              metric: str, patient_score: str) -> Pick | None:
    """The track's best cell on validation (ties broken by :func:`lexicographic_best`, never
    on test data) when every candidate has a validation score of ``metric``; else on the test
    estimate (post hoc, ties to table order); None when no cell has a finite score."""
    scores = validation_scores(ok, cells, metric)
    if all(math.isfinite(v) for v in scores.values()):
        best, decided_by, tied = lexicographic_best(ok, cells, selection_criteria(metric))
        return Pick(track, best, "validation", scores[best], decided_by, tied)
    estimates = {c: sb.estimate(c, metric, patient_score) for c in cells}
    finite = {c: v for c, v in estimates.items() if math.isfinite(v)}
    if not finite:
        return None
    top = tied_best(finite)
    decided_by = metric if len(top) == 1 else TABLE_ORDER
    return Pick(track, top[0], "test", finite[top[0]], decided_by,
                tuple(top) if len(top) > 1 else ())


def check_same_patients(sb: StudyBootstrap, a: Cell, b: Cell) -> None:
    """Raise :class:`ReportError` naming ``a`` and ``b`` when, in a repeat and fold both have,
    their test patients differ."""
    pred = sb.predictions

    def patients(cell: Cell) -> dict[tuple[int, int], set[str]]:
        g = pred[(pred["backend"] == cell[0]) & (pred["rule"] == cell[1])]
        out = {}
        for key, p in g.groupby(["repeat", "fold"])["patient_id"]:
            r, f = cast(tuple[int, int], key)
            out[(int(r), int(f))] = set(p.astype(str))
        return out

    pa, pb = patients(a), patients(b)
    for key in sorted(pa.keys() & pb.keys()):
        only_a, only_b = sorted(pa[key] - pb[key]), sorted(pb[key] - pa[key])
        if only_a or only_b:
            raise ReportError(
                f"cross-track comparison: {cell_name(a)} and {cell_name(b)} were tested on "
                f"different patients in repeat {key[0]}, fold {key[1]} ({len(only_a)} only in "
                f"{cell_name(a)}: {', '.join(only_a[:3]) or '-'}; {len(only_b)} only in "
                f"{cell_name(b)}: {', '.join(only_b[:3]) or '-'}); a paired comparison needs "
                "the same test patients (were crops missing for some patients?)")


def _pair_names(frame: pd.DataFrame, metric: str | None = None) -> set[frozenset[str]]:
    if frame.empty or not {"a", "b"} <= set(frame.columns):
        return set()
    if metric is not None and "metric" in frame.columns:
        frame = frame[frame["metric"] == f"test_{metric}"]
    return {frozenset((a, b)) for a, b in zip(frame["a"], frame["b"])}


def _cnn_pairs(sb: StudyBootstrap, images: list[Cell], plan: AnalysisPlan,
               shown: set[frozenset[str]]) -> tuple[pd.DataFrame, list[str], list[Cell]]:
    """Each SNN image cell vs ``reference / cnn`` not already ``shown`` (Holm over them)."""
    snn = [c for c in images if c[0] != "reference"]
    if CNN_REFERENCE not in images:
        return pd.DataFrame(), [], snn
    rows, already = [], []
    for cell in snn:
        if frozenset((cell_name(cell), cell_name(CNN_REFERENCE))) in shown:
            already.append(f"{cell_name(cell)} vs {cell_name(CNN_REFERENCE)}")
            continue
        check_same_patients(sb, cell, CNN_REFERENCE)
        rows.append(paired_difference(sb, cell, CNN_REFERENCE, plan.primary_metric,
                                      patient_score=plan.patient_score).record())
    frame = with_holm(pd.DataFrame(rows), plan.alpha) if rows else pd.DataFrame()
    return frame, already, snn


def cross_track_comparison(ok: pd.DataFrame, sb: StudyBootstrap | None, main: pd.DataFrame,
                           plan: AnalysisPlan, superiority: pd.DataFrame,
                           comparisons: pd.DataFrame) -> CrossTrack | None:
    """The comparison of the module docstring, or None unless both tracks have cells with
    predictions. ``ok``: the finished results rows (validation scores); ``superiority`` and
    ``comparisons``: the report's primary and exploratory pair tables (not repeated here)."""
    if sb is None:
        return None
    cells = track_cells(main, sb)
    if not cells["features"] or not cells["images"]:
        return None
    metric, score = plan.primary_metric, plan.patient_score
    feat = pick_best(ok, sb, "features", cells["features"], metric, score)
    img = pick_best(ok, sb, "images", cells["images"], metric, score)
    if feat is None or img is None:
        return None
    check_same_patients(sb, feat.cell, img.cell)
    d = paired_difference(sb, img.cell, feat.cell, metric, patient_score=score)
    best = pd.DataFrame([{
        "metric": f"test_{metric}", "features": cell_name(feat.cell), "features_basis": feat.basis,
        "features_score": feat.score, "images": cell_name(img.cell), "images_basis": img.basis,
        "images_score": img.score, "n_repeats": d.n_runs, "difference": d.estimate,
        "ci_low": d.ci_low, "ci_high": d.ci_high, "se": d.se, "p": d.p,
        "identical": d.identical}])
    family = _pair_names(superiority)
    shown = family | _pair_names(comparisons, metric)
    cnn, already, snn = _cnn_pairs(sb, cells["images"], plan, shown)
    in_family = frozenset((cell_name(feat.cell), cell_name(img.cell))) in family
    return CrossTrack(metric, score, feat, img, best, cnn, already, in_family, snn,
                      CNN_REFERENCE in cells["images"])


def _choice(p: Pick, metric: str) -> str:
    where = ("validation (mean over repeats of each refit's validation score)"
             if p.basis == "validation" else "**test data (post hoc)**")
    return f"{p.track}: **{cell_name(p.cell)}**, {metric} {p.score:.4f} on {where}"


def _criterion_label(metric: str) -> str:
    """``roc_auc`` → ``slice ROC-AUC`` (slice-level said explicitly beside patient-level)."""
    label = metric_label(metric)
    return label if metric in PATIENT_METRICS else f"slice {label}"


def tie_sentence(p: Pick, metric: str) -> str | None:
    """How a tie on the primary ``metric`` was broken (None when there was none)."""
    if not p.tied:
        return None
    noun = {"features": "feature", "images": "image"}.get(p.track, p.track)
    head = (f"{len(p.tied)} {noun} cells tied at {p.basis} {_criterion_label(metric)} "
            f"{p.score:.4f} ({', '.join(cell_name(c) for c in p.tied)})")
    if p.decided_by != TABLE_ORDER:
        return f"{head}; chosen on validation {_criterion_label(p.decided_by)}."
    if p.basis == "validation":
        rest = ", ".join(_criterion_label(m) for m in selection_criteria(metric)[1:])
        return (f"{head}; still tied on every validation tie-break ({rest}): the first in "
                "table order was taken.")
    return f"{head}; the first in table order was taken (no validation scores to break the tie)."


def cross_track_lines(ct: CrossTrack) -> list[str]:
    """The statements printed above the cross-track tables."""
    metric = metric_label(ct.metric)
    row = ct.best.iloc[0]
    result = (f"{row['difference']:+.4f} [{row['ci_low']:.4f}, {row['ci_high']:.4f}], "
              f"p = {row['p']:.4g}" if math.isfinite(row["difference"])
              else "not computable (no repeat both cells finished with a finite value)")
    lines = [
        f"Best cell of each track by the primary metric ({metric}): {_choice(ct.features, metric)}"
        f"; {_choice(ct.images, metric)}. The leak detector is never a candidate.",
        *(s for p in (ct.features, ct.images) if (s := tie_sentence(p, ct.metric))),
        f"Images − features on the same test patients: {result} (paired test with a patient "
        f"and a training term, {CONFIDENCE:.0%} interval, patient score {ct.patient_score}).",
    ]
    if ct.post_hoc:
        lines.append("**Post hoc selection:** at least one cell was chosen on the test data "
                     "(no validation score for every cell of its track); the p-value is not "
                     "adjusted for that choice and overstates the evidence.")
    else:
        lines.append("Both cells were chosen on validation scores before the test data were "
                     "read, so this is an ordinary paired test of two pre-selected cells; the "
                     "validation scores also steered tuning and early stopping and are "
                     "optimistic, which affects the choice, not this test.")
    if ct.in_family:
        lines.append("This pair is also in the primary analysis (its Holm-adjusted p is there).")
    if ct.snn_images and not ct.has_cnn:
        lines.append(f"No {cell_name(CNN_REFERENCE)} cell: the SNN image cells are not paired "
                     "with a CNN.")
    if not ct.cnn_pairs.empty:
        lines.append(f"SNN image cells vs {cell_name(CNN_REFERENCE)} (exploratory, Holm over "
                     "these pairs): table below.")
    if ct.already:
        lines.append("Already in the tables above, not repeated: " + "; ".join(ct.already) + ".")
    return lines

