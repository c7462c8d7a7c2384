"""Time to result: which trials ``bench --protocol`` samples (past the sampler's and the
pruner's start-up), what it records of each, and the measurement end to end (slow)."""

from __future__ import annotations

import datetime as dt

import pytest
from spec_text import tiny_spec

from spikebench.harness.bench.protocol import (
    format_trial_times,
    pruner_startup,
    sample_size,
    trial_stats,
    trial_times,
)
from spikebench.harness.spec import parse_spec


def _spec(**search):
    return parse_spec({"data": {"source": "phantom"}, "search": search})


@pytest.mark.parametrize(("search", "expected"), [
    ({"trials": 50}, 4),
    ({"trials": 50, "pruner_options": {"n_startup_trials": 7}}, 7),
    ({"trials": 50, "pruner": "hyperband"}, 0),
    ({"trials": 50, "pruner": "none"}, 50),
    ({"trials": 50, "minimize": "synops"}, 50),  # multi-objective studies never prune
])
def test_pruner_startup(search, expected):
    assert pruner_startup(_spec(**search).search) == expected


@pytest.mark.parametrize(("search", "expected"), [
    ({"trials": 50}, 13),                        # TPE's 10 random trials, then 3
    ({"trials": 50, "startup_trials": 2}, 7),    # the median pruner's 4, then 3
    ({"trials": 6}, 6),                          # never more than the budget
    ({"trials": 50, "pruner": "none"}, 13),
])
def test_sample_size_reaches_past_both_start_ups(search, expected):
    assert sample_size(_spec(**search)) == expected


def _trial(number, state, seconds, epochs=0):
    from optuna.trial import FrozenTrial

    start = dt.datetime(2026, 1, 1)
    return FrozenTrial(
        number=number, state=state, value=0.5 if state.name == "COMPLETE" else None,
        datetime_start=start, datetime_complete=start + dt.timedelta(seconds=seconds)
        if state.name != "RUNNING" else None, params={}, distributions={}, user_attrs={},
        system_attrs={}, intermediate_values={e: 0.5 for e in range(epochs)}, trial_id=number)


def test_trial_stats_records_time_state_and_epochs_of_each_trial():
    from optuna.trial import TrialState as S

    trials = [_trial(0, S.COMPLETE, 4.0, 10), _trial(1, S.COMPLETE, 6.0, 12),
              _trial(2, S.FAIL, 1.0), _trial(3, S.PRUNED, 1.0, 4),
              _trial(4, S.COMPLETE, 2.0, 8), _trial(5, S.RUNNING, 0.0)]
    s = trial_stats(trials, startup=2)
    assert s["trial_seconds"] == [4.0, 6.0, 1.0, 2.0]
    assert s["trial_index"] == [0, 1, 3, 4]
    assert s["trial_pruned"] == [False, False, True, False]
    assert s["trial_epochs"] == [10, 12, 4, 8]
    assert s["mean_s"] == pytest.approx(3.25)
    assert s["pruned"] == 1 and s["pruned_share"] == pytest.approx(0.25)
    assert s["pruned_share_late"] == pytest.approx(0.5)  # of trials 3 and 4
    assert s["epochs_complete"] == pytest.approx(10.0) and s["epochs_pruned"] == 4.0
    assert s["failed"] == 1


def test_trial_stats_of_a_study_without_trials():
    s = trial_stats([], startup=4)
    assert s["mean_s"] is None and s["pruned_share"] is None and s["epochs_pruned"] is None


def test_trial_times_table_marks_the_fastest_backend():
    res = {"trials": 3, "threads": 1, "cells": {
        "custom/surrogate": {"mean_s": 2.0}, "snntorch/surrogate": {"mean_s": 4.0},
        "custom/tempotron": {"mean_s": 3.0}, "reference/mlp": {"mean_s": 1.0},
        "spikingjelly/surrogate": {"skipped": "not installed"}}}
    text = format_trial_times(res)
    assert "2.00*" in text and "tempotron 1.50×" in text and "mlp" in text


def test_a_device_this_machine_lacks_is_refused_before_any_work(tmp_path, feature_table,
                                                                monkeypatch):
    import torch

    from spikebench.errors import SpecError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "s.toml"
    path.write_text(tiny_spec(feature_table, study={"device": "cuda"}))
    with pytest.raises(SpecError, match=r"\[study\].device = 'cuda': no CUDA device"):
        trial_times(path, trials=1, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_protocol_measurement_on_a_small_spec(tmp_path, feature_table, one_torch_thread):
    from spikebench.harness.bench.estimate import estimate

    path = tmp_path / "s.toml"
    path.write_text(tiny_spec(feature_table, search={"trials": 6, "startup_trials": 1},
                              split={"scheme": "nested-cv", "outer_folds": 2, "repeats": 1,
                                     "refit_seeds": 2}))
    res = trial_times(path, trials=None, extra=1, references=True, refits=1)
    assert res["trials"] == 5  # the median pruner's 4 start-up trials, then 1
    cell = res["cells"]["custom/surrogate"]
    assert len(cell["trial_seconds"]) == 5 and cell["trial_index"] == [0, 1, 2, 3, 4]
    assert cell["studies"] == 2 and cell["refits"] == 4 and cell["trials_per_study"] == 6
    assert len(cell["refit_seconds"]) == 1 and cell["pruner_startup"] == 4
    assert "reference/logistic_regression" in res["cells"]
    assert set(res["warmup_s"]) == {"custom"} and res["process_start_s"] > 0
    est = estimate(res, workers=(1, 2), cores=2)
    assert est["total"]["1"]["point_s"] > 0
