"""``bench --protocol``'s arithmetic: the schedule model against hand-computed cases, the
bootstrap interval around its point estimate, and the fields the JSON output carries. No
timing is asserted: these check what the estimate computes from given durations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikebench.harness.bench.estimate import (
    CellCost,
    estimate,
    format_estimate,
    overhead_seconds,
    schedule,
    slowdown,
    summary,
)


def _cell(early=(1.0,), late=(1.0,), p=0, studies=1, trials=1, refit=(), refits=0, label="c"):
    return CellCost(label, tuple(early), tuple(late), p, studies=studies, trials=trials,
                    refit=tuple(refit), refits=refits)


def _once(cells, workers, factor=1.0):
    runs = schedule(cells, workers, factor, replicates=5)
    assert np.all(runs == runs[0])  # constant durations: every replicate is the same
    return float(runs[0])


@pytest.mark.parametrize(("workers", "cores", "expected"), [
    (1, 2, 1.0), (1, 1, 1.0), (2, 2, 1.5), (2, 4, 1.5), (4, 2, 3.0), (3, 1, 4.5)])
def test_slowdown_is_contention_up_to_the_cores_then_time_sharing(workers, cores, expected):
    assert slowdown(workers, cores, 1.5) == pytest.approx(expected)


def test_slowdown_refuses_no_workers():
    with pytest.raises(ValueError, match="must be >= 1"):
        slowdown(0, 2)


def test_one_worker_runs_everything_in_turn():
    # 2 studies × 3 trials × 1 s + 2 refits × 2 s
    cell = _cell(studies=2, trials=3, refit=(2.0,), refits=2)
    assert _once([cell], 1) == pytest.approx(10.0)
    assert cell.expected_seconds() == pytest.approx(10.0)


def test_workers_wait_for_the_last_trials_of_a_study():
    # 3 trials on 2 workers: 2 s per study (the third trial runs alone), not 1.5
    assert _once([_cell(studies=2, trials=3)], 2) == pytest.approx(4.0)
    # one trial per study: the second worker has nothing to do
    assert _once([_cell(studies=2, trials=1)], 2) == pytest.approx(2.0)
    # more workers than trials gain nothing
    assert _once([_cell(studies=1, trials=2)], 5) == pytest.approx(1.0)


def test_refits_are_list_scheduled_in_plan_order_without_a_barrier():
    a = _cell(trials=0, studies=0, refit=(3.0,), refits=1, label="a")
    b = _cell(trials=0, studies=0, refit=(1.0,), refits=3, label="b")
    # worker 0 takes a's 3 s refit, worker 1 b's three 1 s refits: both end at 3 s
    assert _once([a, b], 2) == pytest.approx(3.0)
    # b first: 1 + 1 on both workers, a's refit then starts at 1 s on one of them: 4 s
    assert _once([b, a], 2) == pytest.approx(4.0)


def test_trials_before_the_pruners_start_up_take_their_own_time():
    # 4 trials, the first 2 never pruned (4 s), the later ones pruned early (1 s)
    cell = _cell(early=(4.0,), late=(1.0,), p=2, trials=4)
    assert _once([cell], 1) == pytest.approx(10.0)
    assert _once([cell], 2) == pytest.approx(5.0)  # 4 | 4, then 1 | 1
    assert cell.expected_seconds() == pytest.approx(10.0)


def test_a_missing_phase_borrows_the_other():
    only_late = _cell(early=(), late=(2.0,), p=3, trials=5)
    assert only_late.expected_seconds() == pytest.approx(10.0)


def test_slowdown_multiplies_trials_and_refits():
    cell = _cell(studies=1, trials=2, refit=(1.0,), refits=2)
    assert _once([cell], 2, factor=1.5) == pytest.approx(1.5 + 1.5)


def test_interval_holds_the_point_estimate():
    rng = np.random.default_rng(1)
    cell = _cell(early=rng.gamma(2.0, 3.0, 6), late=rng.gamma(2.0, 1.0, 5), p=4, studies=5,
                 trials=50, refit=(7.0, 9.0), refits=25)
    for workers in (1, 2, 8):
        s = summary(schedule([cell], workers, replicates=300))
        assert s["low_s"] < s["point_s"] < s["high_s"]
    # the point estimate is close to the mean arithmetic for one worker
    one = summary(schedule([cell], 1, replicates=300))
    assert one["point_s"] == pytest.approx(cell.expected_seconds(), rel=0.1)


def test_from_measured_splits_trials_by_number():
    cell = CellCost.from_measured("x/y", {
        "trial_seconds": [5.0, 6.0, 1.0, 2.0], "trial_index": [0, 1, 2, 5],
        "pruner_startup": 2, "studies": 5, "trials_per_study": 50, "refits": 25,
        "refit_seconds": []})
    assert cell.early == (5.0, 6.0) and cell.late == (1.0, 2.0)
    assert cell.refit == (3.5,)  # no refit measured: the mean trial stands in
    assert cell.expected_seconds() == pytest.approx(5 * (2 * 5.5 + 48 * 1.5) + 25 * 3.5)


def _measured():
    return {"trials": 3, "threads": 1, "search_trials": 4, "prepare_s": 10.0,
            "reopen_s": 1.0, "process_start_s": 3.0, "warmup_s": {"custom": 2.0},
            "cells": {
                "custom/surrogate": {
                    "trial_seconds": [2.0, 3.0, 1.0], "trial_index": [0, 1, 2],
                    "trial_pruned": [False, False, True], "pruner_startup": 2,
                    "studies": 2, "trials_per_study": 4, "refits": 2,
                    "refit_seconds": [4.0], "refit_s": 4.0, "mean_s": 2.0, "sd_s": 1.0,
                    "pruned_share": 1 / 3, "epochs_complete": 10.0, "epochs_pruned": 3.0},
                "snntorch/surrogate": {"skipped": "not installed"}}}


def test_estimate_fields_and_json():
    res = _measured()
    est = estimate(res, workers=(1, 2, 2), cores=2, contention=1.5, replicates=200)
    assert list(est["total"]) == ["1", "2"]  # duplicates dropped, keys as JSON gives them
    json.loads(json.dumps(est))
    cell = est["cells"]["custom/surrogate"]
    # 2 studies × (2 × 2.5 + 2 × 1) + 2 refits × 4
    assert cell["expected_s"] == pytest.approx(22.0) and cell["share"] == 1.0
    assert "snntorch/surrogate" not in est["cells"]
    for w in ("1", "2"):
        total = est["total"][w]
        assert set(total) == {"point_s", "low_s", "high_s", "overhead_s", "slowdown"}
        assert total["low_s"] <= total["point_s"] <= total["high_s"]
        assert set(cell[w]) == {"point_s", "low_s", "high_s"}
    assert est["total"]["1"]["overhead_s"] == pytest.approx(10 + 1 + 2)
    assert est["total"]["2"]["overhead_s"] == pytest.approx(10 + 1 + 3 + 2)
    assert est["total"]["2"]["slowdown"] == pytest.approx(1.5)
    text = format_estimate(res, est)
    assert "custom/surrogate" in text and "not installed" in text and "total" in text


def test_overhead_of_one_worker_has_no_process_start():
    assert overhead_seconds({"prepare_s": 1.0, "process_start_s": 5.0}, 1) == 1.0
    assert overhead_seconds({"prepare_s": 1.0, "process_start_s": 5.0}, 3) == 6.0
