"""Time to result: per-rule mean trial times and the full protocol extrapolated from them."""

from __future__ import annotations

import pytest

from spikebench.harness.bench.protocol import (
    WORKER_EFFICIENCY,
    extrapolate,
    format_protocol,
    format_trial_times,
    trial_times,
)


def _cell(mean, studies=5, refits=5, n_tune=80, n_outer=100):
    return {"mean_s": mean, "studies": studies, "refits": refits, "n_tune_train": n_tune,
            "n_outer_train": n_outer, "pruned": 0, "failed": 0, "trial_seconds": [mean]}


def test_extrapolation_is_studies_times_trials_plus_refits():
    res = {"trials": 3, "threads": 1, "search_trials": 50,
           "cells": {"custom/surrogate": _cell(2.0), "snntorch/surrogate": _cell(4.0),
                     "custom/tempotron": _cell(3.0)}}
    est = extrapolate(res, workers=(1, 2))
    # 5 studies × 50 trials × 2 s + 5 refits × 2 s × 100/80
    assert est["per_cell_s"]["custom/surrogate"] == pytest.approx(500 + 12.5)
    assert est["total_s"] == pytest.approx(sum(est["per_cell_s"].values()))
    assert est["by_workers_s"][2] == pytest.approx(est["total_s"] / (2 * WORKER_EFFICIENCY[2]))
    text = format_trial_times(res)
    assert "surrogate" in text and "2.00*" in text and "tempotron 1.50×" in text
    assert "total (1 worker)" in format_protocol(res, est)


@pytest.mark.slow
def test_trial_times_on_the_demo_spec(tmp_path):
    from spikebench.studies import resolve_spec

    res = trial_times(resolve_spec("demo"), trials=1, backends=["custom"], rules=["surrogate"],
                      cache=tmp_path / "cache")
    cell = res["cells"]["custom/surrogate"]
    assert cell["mean_s"] > 0 and len(cell["trial_seconds"]) == 1
    assert extrapolate(res)["total_s"] > 0
