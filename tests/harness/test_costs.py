"""Honest costs: a direct-encoded first layer is charged multiply-accumulates, spike inputs
accumulates, and the counts equal a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikebench.harness.encoding import encode
from spikebench.harness.rules import FitContext, get_rule
from spikebench.harness.rules.conformance import held_out_problem
from spikebench.harness.space import default_values


def fitted(encoding: str):
    train, val, test = held_out_problem(0)
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": encoding, "epochs": 2, "hidden": 16, "steps": 5}
    from spikebench.backends import get_backend

    ctx = FitContext.for_validation(val, "pr_auc", get_backend("custom"), seed=0)
    return rule.fit(train, val, rule.parse_params(params), ctx), test


def test_direct_encoding_charges_the_first_layer_as_macs():
    model, test = fitted("direct")
    counters = model.activity(test.X)
    n, steps, hidden = len(test), 5, 16
    # x[t] = gain * f for every t: each non-zero feature value fans out to 16 neurons, T times
    expected_macs = np.count_nonzero(test.X) * steps * hidden / n
    assert counters["macs_per_sample"] == pytest.approx(expected_macs, rel=1e-12)
    assert counters["macs_per_sample"] > 0
    assert counters["synops_per_sample"] == pytest.approx(
        counters["acs_per_sample"] + counters["macs_per_sample"])


def test_rate_encoding_is_accumulate_only():
    model, test = fitted("rate")
    counters = model.activity(test.X)
    gen = torch.Generator().manual_seed(0)  # the model's own evaluation generator
    x = torch.as_tensor(test.X)
    spikes = encode(x, "rate", 5, gain=1.0, generator=gen)
    input_acs = float(spikes.sum()) * 16 / len(test)
    assert counters["macs_per_sample"] == 0
    assert counters["acs_per_sample"] >= input_acs
    hidden_spikes = counters["acs_per_sample"] - input_acs  # hidden spikes x 2 outputs
    assert hidden_spikes >= 0 and (hidden_spikes * len(test) / 2) == pytest.approx(
        round(hidden_spikes * len(test) / 2))
