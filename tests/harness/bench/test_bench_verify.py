"""``bench --protocol SPEC --verify``: the reduced protocol it runs, how it sets the prediction
beside the run, and (slow) the whole check on a one-cell spec. The ratio itself is a
measurement and is never asserted."""

from __future__ import annotations

import pandas as pd
import pytest
from spec_text import tiny_spec

from spikebench.cli import main
from spikebench.harness.bench.verify import compare_cells, format_verify, reduced_spec, verify
from spikebench.harness.spec import load_spec


def test_the_reduced_protocol_keeps_the_grid_and_shrinks_the_rest(tmp_path, feature_table):
    path = tmp_path / "s.toml"
    path.write_text(tiny_spec(feature_table, search={"trials": 50, "pruner": "median"},
                              split={"scheme": "holdout", "repeats": 4, "refit_seeds": 3}))
    spec = load_spec(path)
    small = reduced_spec(spec)
    assert small.grid == spec.grid and small.study.references == spec.study.references
    assert small.space == spec.space and small.search.pruner == "median"
    assert (small.split.scheme, small.split.outer_folds, small.split.repeats,
            small.split.n_refits) == ("nested-cv", 2, 1, 1)
    assert small.search.trials == 8 and small.search.storage == ""
    assert small.data.source == "phantom" and small.data.options["cases"] == 16
    assert small.study.name != spec.study.name


def test_compare_cells_sets_the_run_beside_the_prediction(tmp_path):
    measured = {"cells": {
        "custom/surrogate": {"trial_seconds": [2.0, 2.0], "trial_index": [0, 1],
                             "pruner_startup": 0, "studies": 2, "trials_per_study": 3,
                             "refits": 2, "refit_seconds": [5.0]},
        "snntorch/surrogate": {"skipped": "not installed"}}}
    pd.DataFrame({"backend": ["custom"] * 4 + ["reference"], "rule": ["surrogate"] * 4 + ["mlp"],
                  "state": ["COMPLETE", "PRUNED", "FAIL", "COMPLETE", "COMPLETE"],
                  "duration_seconds": [1.0, 0.5, 9.0, 2.0, 1.0]}
                 ).to_parquet(tmp_path / "trials.parquet")
    cells = compare_cells(measured, tmp_path)
    assert cells == {"custom/surrogate": {"predicted_trials_s": 12.0, "run_trials": 3,
                                          "run_trials_s": 3.5,
                                          "run_pruned_share": pytest.approx(1 / 3)}}
    text = format_verify({"reduced": {"outer_folds": 2, "trials": 3, "cases": 16},
                          "workers": 1, "cells": cells, "predicted_s": 30.0, "low_s": 25.0,
                          "high_s": 36.0, "measured_s": 40.0, "ratio": 0.75,
                          "load": {"before_run": [1.0, 1.0, 1.0]}})
    assert "predicted / measured = 0.75" in text and "custom/surrogate" in text
    assert "machine load" in text


def test_verify_needs_a_protocol(capsys):
    assert main(["bench", "--verify"]) == 2
    assert "give --protocol SPEC" in capsys.readouterr().err


@pytest.mark.slow
def test_verify_runs_the_reduced_protocol(tmp_path, feature_table, one_torch_thread):
    path = tmp_path / "s.toml"
    path.write_text(tiny_spec(feature_table, study={"references": []}))
    res = verify(path, trials=4, sample=3)
    assert res["measured_s"] > 0 and res["ratio"] == pytest.approx(
        res["predicted_s"] / res["measured_s"])
    assert res["low_s"] <= res["predicted_s"] <= res["high_s"]
    cell = res["cells"]["custom/surrogate"]
    assert cell["run_trials"] == 2 * 4  # 2 outer folds × 4 trials
    assert res["measurement"]["trials"] == 3


def test_implied_slowdown_solves_the_model_for_the_contention():
    from spikebench.harness.bench.verify import implied_slowdown

    cells = {"a": {"predicted_trials_s": 10.0, "run_trials_s": 17.0},
             "b": {"predicted_trials_s": 10.0, "run_trials_s": 17.0},
             "c": {"predicted_trials_s": 99.0}}  # no run data: left out
    one = implied_slowdown(cells, 1, 2, 1.0)
    assert one == {"run_trial_factor": pytest.approx(1.7), "assumed_slowdown": 1.0}
    assert implied_slowdown(cells, 2, 2, 1.47)["implied_contention"] == pytest.approx(1.7)
    assert implied_slowdown(cells, 4, 2, 2.94)["implied_contention"] == pytest.approx(0.85)
    assert implied_slowdown({}, 2, 2, 1.47) == {}
