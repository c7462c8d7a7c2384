"""Simulated studies analysed by the report's own verdict function: error rates with their
Monte-Carlo standard errors.

Each replicate draws one cohort and one set of noise (:mod:`.model`) and analyses, with common
random numbers, a pair of cells under every scenario: a true difference ``Δ`` of slice ROC-AUC of
0 (the null), the equivalence margin, and each ``Δ`` whose power is asked. Every analysis is
:func:`spikebench.reports.bootstrap.kernel_wald` — the function the report's primary comparison
calls — on the runs' pair-count kernels, so what is calibrated is what the report computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spikebench.reports.bootstrap import kernel_wald
from spikebench.reports.clustered import PairCounts, pair_counts

from .model import Cohort, Design, draw_cohort, draw_noise, scores, solve_cell, true_auc


@dataclass(frozen=True)
class Settings:
    """The analysis that is calibrated: the equivalence margin, the level, the size of the
    superiority family (power is also given at Holm's first step, ``α / family``) and the true
    differences whose power is asked."""

    margin: float = 0.05
    alpha: float = 0.05
    family: int = 1
    deltas: tuple[float, ...] = (0.05, 0.10)
    confidence: float = 0.95


@dataclass(frozen=True)
class Rate:
    """A Monte-Carlo proportion and its standard error."""

    value: float
    se: float

    @classmethod
    def of(cls, hits: np.ndarray) -> Rate:
        n = hits.size
        p = float(hits.mean()) if n else math.nan
        return cls(p, math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan)


@dataclass
class Result:
    """The error rates of one design (see :meth:`as_dict` for the JSON)."""

    design: Design
    settings: Settings
    sigma_run: float
    replicates: int
    coverage_cell: Rate
    coverage_difference: Rate
    type1: Rate
    false_equivalence: Rate
    power: dict[float, Rate] = field(default_factory=dict)
    power_family: dict[float, Rate] = field(default_factory=dict)
    #: Minimum detectable difference (80 % power, level α) from the mean SE under the null.
    mdd: float = math.nan
    #: True when ``sigma_run`` was assumed (a single run per cell: nothing to measure it on).
    sigma_assumed: bool = False

    def as_dict(self) -> dict[str, object]:
        """The machine-readable form ``spikebench calibrate --json`` prints."""
        rates = {"coverage_cell": self.coverage_cell,
                 "coverage_difference": self.coverage_difference, "type1": self.type1,
                 "false_equivalence": self.false_equivalence}
        out: dict[str, object] = {
            "patients": self.design.patients, "lesion_free": self.design.lesion_free,
            "lesion_free_share": round(self.design.lesion_free / self.design.patients, 4),
            "folds": self.design.folds, "runs": self.design.runs,
            "sigma_run": self.sigma_run, "auc": self.design.auc, "icc": self.design.icc,
            "rho": self.design.rho, "slices": list(self.design.slices),
            "margin": self.settings.margin, "alpha": self.settings.alpha,
            "family": self.settings.family, "replicates": self.replicates,
            "mdd": self.mdd}
        for name, rate in rates.items():
            out[name], out[f"{name}_se"] = rate.value, rate.se
        out["power"] = {f"{d:g}": r.value for d, r in self.power.items()}
        out["power_se"] = {f"{d:g}": r.se for d, r in self.power.items()}
        out["power_family"] = {f"{d:g}": r.value for d, r in self.power_family.items()}
        return out


    def as_row(self) -> dict[str, object]:
        """:meth:`as_dict` flattened to one table row (``power_0.05``, ...)."""
        row = {k: v for k, v in self.as_dict().items() if not isinstance(v, dict | list)}
        for key, rates in (("power", self.power), ("power_family", self.power_family)):
            for delta, rate in rates.items():
                row[f"{key}_{delta:g}"] = rate.value
                if key == "power":
                    row[f"power_se_{delta:g}"] = rate.se
        return row


def _kernels(z: np.ndarray, cohort: Cohort) -> list[PairCounts]:
    n = len(cohort.n_slices)
    return [pair_counts(cohort.y, row, cohort.patient, n) for row in z]


def simulate(design: Design, settings: Settings, sigma_run: float, *, replicates: int = 400,
             seed: int = 0) -> Result:
    """``replicates`` simulated studies of ``design`` whose cells' run-to-run SD of slice
    ROC-AUC is ``sigma_run``, each analysed under every scenario (module docstring)."""
    from spikebench.reports.bootstrap import KERNEL_MAX_PATIENTS

    if design.patients > KERNEL_MAX_PATIENTS:
        from spikebench.errors import SpecError

        raise SpecError(f"[calibration].patients = {design.patients}: the calibration "
                        f"simulates at most {KERNEL_MAX_PATIENTS} patients (its clustered "
                        "kernels are patients × patients); give a smaller cohort")
    mu_a, s = solve_cell(design, design.auc, sigma_run)
    deltas = tuple(dict.fromkeys((0.0, settings.margin, *settings.deltas)))
    mu_b = {d: mu_a if d == 0 else solve_cell(design, design.auc - d, sigma_run, s or None)[0]
            for d in deltas}
    truth_a = true_auc(design, mu_a, s)
    truth_b = {d: true_auc(design, mu_b[d], s) for d in deltas}
    rows: dict[float, list[tuple[float, ...]]] = {d: [] for d in deltas}
    for rep in range(replicates):
        rng = np.random.default_rng([seed, rep])
        cohort = draw_cohort(design, rng)
        noise = draw_noise(design, cohort, rng)
        ka = _kernels(scores(design, cohort, noise, "a", mu_a, s), cohort)
        wa = kernel_wald([ka], [1.0])
        for d in deltas:
            kb = _kernels(scores(design, cohort, noise, "b", mu_b[d], s), cohort)
            wb, wd = kernel_wald([kb], [1.0]), kernel_wald([ka, kb], [1.0, -1.0])
            assert wa is not None and wb is not None and wd is not None
            rows[d].append(_analyse(wa, wb, wd, truth_a, truth_b[d], settings))
    table = {d: np.asarray(v, dtype=np.float64) for d, v in rows.items()}
    cells = np.concatenate([table[0.0][:, 0], *(table[d][:, 1] for d in deltas)])
    coverage_d = [Rate.of(table[d][:, 2]) for d in deltas]
    return Result(
        design, settings, sigma_run, replicates,
        coverage_cell=Rate.of(cells),
        coverage_difference=min(coverage_d, key=lambda r: r.value),
        type1=Rate.of(table[0.0][:, 3]),
        false_equivalence=Rate.of(table[settings.margin][:, 5]),
        power={d: Rate.of(table[d][:, 3]) for d in settings.deltas},
        power_family={d: Rate.of(table[d][:, 4]) for d in settings.deltas},
        mdd=float(np.mean(table[0.0][:, 6])))


def _analyse(wa: object, wb: object, wd: object, truth_a: float, truth_b: float,
             settings: Settings) -> tuple[float, ...]:
    """One scenario of one study: covered a, covered b, covered Δ, rejected at α, rejected at
    α/family, declared equivalent, MDD (as floats for one array)."""
    from spikebench.reports.wald import WaldT

    assert isinstance(wa, WaldT) and isinstance(wb, WaldT) and isinstance(wd, WaldT)
    conf, alpha = settings.confidence, settings.alpha
    lo_a, hi_a = wa.interval(conf, (0.0, 1.0))
    lo_b, hi_b = wb.interval(conf, (0.0, 1.0))
    lo_d, hi_d = wd.interval(conf)
    true_d = truth_a - truth_b
    p = wd.p_value()
    return (float(lo_a <= truth_a <= hi_a), float(lo_b <= truth_b <= hi_b),
            float(lo_d <= true_d <= hi_d), float(p < alpha), float(p < alpha / settings.family),
            float(wd.tost_p(settings.margin) < alpha), wd.minimum_detectable(alpha))
