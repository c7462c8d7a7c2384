"""The calibration simulates a design and analyses it with the report's own function: its model
must match closed forms, its estimator's variance must match the simulated spread, and a user
gets the numbers from ``spikebench calibrate`` and in every report."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtr

from spikebench.reports.bootstrap import kernel_wald
from spikebench.reports.calibration import Design, Settings, simulate
from spikebench.reports.calibration.model import (
    draw_cohort,
    draw_noise,
    population_auc,
    scores,
    solve_cell,
    true_auc,
)
from spikebench.reports.calibration.simulate import _kernels

ROOT = Path(__file__).resolve().parents[2]
#: One slice per patient, no clustering: DeLong's setting.
SINGLE = Design(patients=200, lesion_free=100, slices=(1.0, 0.0, 1, 1), icc=0.0, rho=0.0,
                slice_ar=0.0, folds=1, runs=1)


def test_the_binormal_truth_is_phi_of_mu_over_root_two():
    """Without training noise a cell's true AUC is Φ(μ/√2) (unit-variance binormal scores);
    solve_cell inverts it."""
    mu, s = solve_cell(SINGLE, 0.8, 0.0)
    assert s == 0 and true_auc(SINGLE, mu, s) == pytest.approx(0.8, abs=1e-12)
    assert ndtr(mu / math.sqrt(2)) == pytest.approx(0.8, abs=1e-12)


def test_solved_training_noise_gives_the_asked_run_to_run_spread():
    design = Design()
    mu, s = solve_cell(design, 0.8, 0.02)
    rng = np.random.default_rng(3)
    d, a = rng.standard_normal((40_000, design.folds)), rng.standard_normal((40_000,
                                                                           design.folds))
    runs = population_auc(mu, s, design, d, a)
    assert runs.std() == pytest.approx(0.02, rel=0.03)
    assert runs.mean() == pytest.approx(0.8, abs=1e-3)


def test_the_empirical_auc_approaches_the_truth_on_a_large_cohort():
    design = dataclasses.replace(SINGLE, patients=3000, lesion_free=1500)  # P × P kernel
    mu, _ = solve_cell(design, 0.75, 0.0)
    rng = np.random.default_rng(0)
    cohort = draw_cohort(design, rng)
    z = scores(design, cohort, draw_noise(design, cohort, rng), "a", mu, 0.0)
    w = kernel_wald([_kernels(z, cohort)], [1.0])
    assert w is not None and w.estimate == pytest.approx(0.75, abs=0.025)


def _simulated_aucs(design, *, replicates: int, seed: int) -> tuple[list[float], list[float]]:
    """One cell at slice AUC 0.8 without training noise, simulated ``replicates`` times:
    each cohort's AUC estimate and its clustered (patient) variance."""
    mu, _ = solve_cell(design, 0.8, 0.0)
    estimates, variances = [], []
    for rep in range(replicates):
        rng = np.random.default_rng([seed, rep])
        cohort = draw_cohort(design, rng)
        z = scores(design, cohort, draw_noise(design, cohort, rng), "a", mu, 0.0)
        w = kernel_wald([_kernels(z, cohort)], [1.0])
        assert w is not None
        estimates.append(w.estimate)
        variances.append(w.patients[0])
    return estimates, variances


def test_delongs_variance_matches_the_simulated_spread_of_the_auc():
    """DeLong's (here Obuchowski's with one slice per patient) variance of the AUC, averaged
    over simulated cohorts, equals the variance of the AUC estimates across them."""
    estimates, variances = _simulated_aucs(SINGLE, replicates=400, seed=11)
    empirical = np.var(estimates, ddof=1)
    # the MC SE of a variance from 400 draws is about 7 %
    assert np.mean(variances) == pytest.approx(empirical, rel=0.2)
    assert np.mean(estimates) == pytest.approx(0.8, abs=0.005)


def test_clustered_slices_make_the_naive_variance_too_small():
    """Correlated slices of a patient: the clustered variance is the one that matches the
    simulated spread; treating slices as independent would understate it several-fold."""
    design = Design(patients=60, lesion_free=20, slices=(30.0, 5.0, 20, 40), icc=0.5, runs=1,
                    folds=1)
    estimates, clustered = _simulated_aucs(design, replicates=150, seed=5)
    empirical = np.var(estimates, ddof=1)
    assert np.mean(clustered) == pytest.approx(empirical, rel=0.35)


def test_a_simulation_reports_every_rate_with_its_monte_carlo_se():
    design = Design(patients=40, lesion_free=8, slices=(30.0, 5.0, 20, 40), runs=3)
    result = simulate(design, Settings(family=4), 0.02, replicates=30, seed=0)
    out = result.as_dict()
    for key in ("coverage_cell", "coverage_difference", "type1", "false_equivalence"):
        assert 0 <= out[key] <= 1 and out[f"{key}_se"] >= 0
    assert set(out["power"]) == {"0.05", "0.1"} and out["mdd"] > 0
    assert result.power[0.10].value >= result.type1.value
    row = result.as_row()
    assert row["power_0.05"] == out["power"]["0.05"]


@pytest.mark.slow
def test_calibrate_prints_json_a_script_can_read(tmp_path):
    """The issue's contract: per composition at least patients, lesion_free, coverage_cell,
    coverage_difference, type1, false_equivalence and power (a map from ΔAUC to power)."""
    spec = tmp_path / "liver.toml"
    text = (ROOT / "studies" / "msd-liver.toml").read_text().replace(
        "patients = 131", "patients = 40").replace("slices = [145, 40, 60, 250]",
                                                   "slices = [30, 5, 20, 40]")
    spec.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "spikebench", "calibrate", str(spec),
                           "--replicates", "10", "--json"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["lesion_free"] for r in rows] == [4, 8]
    for r in rows:
        assert r["patients"] == 40 and r["runs"] == 5 and r["folds"] == 5
        for key in ("coverage_cell", "coverage_difference", "type1", "false_equivalence"):
            assert 0 <= r[key] <= 1
        assert set(r["power"]) == {"0.05", "0.1"}


def test_a_target_the_model_cannot_reach_gives_the_nearest_design_not_a_crash():
    """A report of a tiny or odd study measures a run-to-run spread no noise scale produces,
    or a cell at chance: the solver returns the nearest design the model can simulate."""
    from spikebench.reports.calibration.model import Design, solve_cell

    design = Design(patients=12, lesion_free=4, folds=2, runs=2)
    mu, s = solve_cell(design, 0.8, 5.0)  # no scale gives an SD of 5 in AUC
    assert math.isfinite(mu) and 0 < s <= 20.0
    mu, s = solve_cell(design, 0.999999, 0.01)
    assert math.isfinite(mu) and math.isfinite(s)
