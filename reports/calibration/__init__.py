"""``spikebench calibrate``: the error rates of a study's own design, by simulation.

A verdict is only as good as its error rates. For the spec's design — its scheme, test folds,
training runs per cell (refit seeds × repeats), equivalence margin, level and family size —
and a cohort composition (patients, lesion-free share, slices per patient, between-patient
correlation, run-to-run spread), :func:`calibrate` simulates studies with a known truth
(:mod:`.model`) and analyses each with the report's own primary-comparison function
(:mod:`.simulate`). It returns, per composition, with Monte-Carlo standard errors: coverage of
the 95 % cell and difference intervals, type-I error of the paired test, power at the asked
true differences of slice ROC-AUC (at level α and at Holm's first step α / family), the
false-equivalence rate of TOST at the margin, and the minimum detectable difference.

The composition comes from the spec's ``[calibration]`` table (defaults: the Medical
Segmentation Decathlon liver release, docs/protocol.md), or is measured from a results folder
(:func:`composition_from_results`: its patients, lesion-free share, slices, score
correlations and the between-run spread of its cells).

Examples
--------
>>> from spikebench.reports.calibration import Design, Settings, simulate
>>> result = simulate(Design(patients=40, lesion_free=8, slices=(30.0, 5.0, 20, 40)),
...                   Settings(), sigma_run=0.01, replicates=3, seed=0)
>>> sorted(result.as_dict())[:3]
['alpha', 'auc', 'coverage_cell']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .model import Design
from .simulate import Rate, Result, Settings, simulate

if TYPE_CHECKING:
    from spikebench.harness.spec import StudySpec
    from spikebench.reports.load import StudyTables

__all__ = ["Design", "Rate", "Result", "Settings", "calibrate", "composition_from_results",
           "design_of_spec", "for_report", "format_results", "simulate"]


#: Schemes whose every run tests one fixed test set.
SINGLE_TEST_SET = ("holdout", "predefined")


def _test_patients(spec: StudySpec) -> int:
    """``[calibration].test_patients``, required under ``predefined``."""
    if spec.calibration.test_patients is None:
        from spikebench.errors import SpecError

        raise SpecError("[calibration].test_patients: required under [split].scheme = "
                        "'predefined' (the size of the source's own test set, e.g. 310 for "
                        "NoduleMNIST3D); add it to [calibration]")
    return spec.calibration.test_patients


def family_size(spec: StudySpec) -> int:
    """Comparisons in the spec's superiority family (the default family when not given)."""
    if spec.analysis.family is not None:
        return max(len(spec.analysis.family), 1)
    snn = len(spec.grid.backends) * len(spec.grid.rules)
    vs_reference = snn if "logistic_regression" in spec.study.references else 0
    on_custom = len(spec.grid.rules) if "custom" in spec.grid.backends else 0
    return max(vs_reference + on_custom * (on_custom - 1) // 2, 1)


def design_of_spec(spec: StudySpec, patients: int, lesion_free: int) -> Design:
    """The spec's design on a cohort of ``patients`` with ``lesion_free`` of them: under
    ``nested-cv`` every patient is tested once per run in ``outer_folds`` folds; under
    ``holdout`` the sealed test set (``test_fraction``) is tested by every run, under
    ``predefined`` the source's own test set (``[calibration].test_patients``)."""
    c, split = spec.calibration, spec.split
    runs = split.repeats * split.n_refits
    if split.scheme in SINGLE_TEST_SET:
        share = lesion_free / patients
        patients = max(round(patients * split.test_fraction), 4) if split.scheme == "holdout" \
            else _test_patients(spec)
        lesion_free = min(max(round(patients * share), 1), patients - 2)
        folds = 1
    else:
        folds = split.outer_folds
    return Design(patients=patients, lesion_free=lesion_free,
                  slices=(float(c.slices[0]), float(c.slices[1]), int(c.slices[2]),
                          int(c.slices[3])),
                  lesion_fraction=(c.lesion_fraction, 5.0), icc=c.icc, rho=c.rho,
                  folds=folds, runs=runs, auc=c.auc)


def settings_of_spec(spec: StudySpec) -> Settings:
    a = spec.analysis
    return Settings(margin=a.equivalence_margin, alpha=a.alpha, family=family_size(spec),
                    deltas=tuple(spec.calibration.deltas))


def calibrate(spec: StudySpec, *, measured: dict[str, Any] | None = None,
              replicates: int | None = None, seed: int | None = None,
              progress: Callable[[str], None] | None = None) -> list[Result]:
    """Simulate the spec's design at each cohort composition: the ``[calibration]`` table's
    (one per ``lesion_free`` share), or the measured one (:func:`composition_from_results`)."""
    if spec.split.scheme == "repeated-splits":
        from spikebench.errors import SpecError

        raise SpecError("[split].scheme = 'repeated-splits': its runs test different patients "
                        "and are judged by the Nadeau–Bengio test, which this calibration "
                        "does not simulate; calibrate a nested-cv, holdout or predefined "
                        "design")
    c = spec.calibration
    n = replicates or c.replicates
    rng_seed = c.seed if seed is None else seed
    settings = settings_of_spec(spec)
    results = []
    if measured is not None:
        base = design_of_spec(spec, measured["patients"], measured["lesion_free"])
        design = dataclasses.replace(base, **{k: measured[k] for k in (
            "slices", "lesion_fraction", "icc", "rho", "auc") if k in measured})
        if spec.split.scheme in SINGLE_TEST_SET:
            design = dataclasses.replace(design, patients=measured["patients"],
                                         lesion_free=measured["lesion_free"])
        if "runs" in measured:
            design = dataclasses.replace(design, runs=measured["runs"])
        sigma = measured.get("sigma_run", c.sigma_run)
        if progress:
            progress(f"simulating {n} studies of {design.patients} patients")
        results.append(simulate(design, settings, sigma, replicates=n, seed=rng_seed))
        return results
    for share in c.lesion_free:
        free = round(c.patients * share)
        design = design_of_spec(spec, c.patients, free)
        if progress:
            progress(f"simulating {n} studies of {c.patients} patients, {free} lesion-free")
        results.append(simulate(design, settings, c.sigma_run, replicates=n, seed=rng_seed))
    return results


def composition_from_results(tables: StudyTables) -> dict[str, Any] | None:
    """What a results folder says about its cohort and its cells: patients and lesion-free
    patients tested, slices per patient, the lesion share of lesion patients, the
    between-patient share of the score noise (ICC of the negatives' logits), the correlation of
    two cells' logits on the same slices, the cells' slice ROC-AUC, runs per cell and the
    median over cells of the run-to-run SD of slice ROC-AUC. None without predictions."""
    from .measure import measure

    return measure(tables)


def format_results(results: list[Result]) -> str:
    """The plain-text table ``spikebench calibrate`` prints."""
    lines = []
    for r in results:
        d, s = r.design, r.settings
        lines.append(
            f"{d.patients} patients, {d.lesion_free} lesion-free, {d.folds} test fold(s), "
            f"{d.runs} run(s) per cell, run-to-run SD {r.sigma_run:.4f}, {r.replicates} "
            f"simulated studies:")

        def rate(x: Rate) -> str:
            return f"{x.value:.3f} ± {x.se:.3f}" if math.isfinite(x.value) else "n/a"

        lines += [
            f"  coverage of 95 % intervals: cells {rate(r.coverage_cell)}, differences "
            f"{rate(r.coverage_difference)}",
            f"  type-I error of the paired test (α = {s.alpha}): {rate(r.type1)}",
            f"  false equivalence at the margin ±{s.margin}: {rate(r.false_equivalence)}",
            *(f"  power at ΔAUC {delta:g}: {rate(p)} (α), {rate(r.power_family[delta])} "
              f"(α/{s.family}, Holm's first step)" for delta, p in r.power.items()),
            f"  minimum detectable ΔAUC (80 % power, α): {r.mdd:.4f}",
        ]
    return "\n".join(lines)


def for_report(tables: StudyTables, *, margin: float, alpha: float, family: int,
               replicates: int, seed: int = 0, assumed_sigma_run: float = 0.013
               ) -> Result | None:
    """The calibration every report prints: the study's own measured cohort and between-run
    spread, its test folds and runs, its margin, level and family size. With a single run per
    cell the spread cannot be measured and ``assumed_sigma_run`` stands in
    (:attr:`Result.sigma_assumed`). None when there is nothing to simulate (no predictions,
    repeated splits, or ``replicates`` 0)."""
    if replicates <= 0 or tables.scheme not in ("nested-cv", *SINGLE_TEST_SET):
        return None
    measured = composition_from_results(tables)
    from spikebench.reports.bootstrap import KERNEL_MAX_PATIENTS

    if measured is None or measured["lesion_free"] < 1 or \
            measured["patients"] - measured["lesion_free"] < 1 or \
            measured["patients"] > KERNEL_MAX_PATIENTS:
        return None
    pred = tables.primary_predictions()
    folds = int(pred["fold"].nunique()) if pred is not None and tables.scheme == "nested-cv" \
        else 1
    design = Design(patients=measured["patients"], lesion_free=measured["lesion_free"],
                    slices=measured["slices"], lesion_fraction=measured["lesion_fraction"],
                    icc=measured.get("icc", Design.icc), rho=measured.get("rho", Design.rho),
                    folds=max(folds, 1), runs=int(measured.get("runs", 1)),
                    auc=min(max(measured.get("auc", Design.auc), 0.55), 0.99))
    settings = Settings(margin=margin, alpha=alpha, family=max(family, 1))
    sigma = measured.get("sigma_run")
    try:
        result = simulate(design, settings, assumed_sigma_run if sigma is None else sigma,
                          replicates=replicates, seed=seed)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None  # a cohort the model cannot represent: the report says it was not simulated
    result.sigma_assumed = sigma is None
    return result
