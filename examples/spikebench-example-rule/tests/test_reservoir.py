"""The example rule plug-in is discovered through its entry point, runs on every backend that
builds a dense LIF network (none of them names it), implements the ridge readout of its
docstring and passes spikebench's rule conformance kit on each of those backends."""

from __future__ import annotations

import numpy as np
import pytest
from spikebench_example_rule import ReservoirParams, ReservoirReadout, ridge_readout

from spikebench.errors import RuleError, SpecError
from spikebench.harness.metrics import score
from spikebench.harness.rules import FitContext, available_rules, get_rule
from spikebench.harness.rules.base import class_weights, hide_labels
from spikebench.harness.rules.conformance import check_rule, held_out_problem
from spikebench.harness.rules.serving import serving_backends
from spikebench.harness.space import default_values, merge_space

#: The built-in backends and the example TorchScript backend plug-in: all build dense LIF
#: networks, so all serve the rule.
DENSE_BACKENDS = ("custom", "snntorch", "spikingjelly", "torchscript")
SMALL = {"hidden": 48, "steps": 8}


def test_registered_through_the_entry_point_and_served_by_capability():
    assert "reservoir" in available_rules()
    rule = get_rule("reservoir")
    assert isinstance(rule, ReservoirReadout) and rule.params_type is ReservoirParams
    assert set(DENSE_BACKENDS) <= set(serving_backends(rule))


def test_conforms_on_every_backend_that_serves_it_with_the_same_numbers():
    """The kit on each backend (its failures name the backend), for spike and real-valued
    input; the rule draws the reservoir's weights, so every backend predicts the same."""
    for encoding in ("rate", "direct"):
        out = check_rule("reservoir", params=SMALL | {"encoding": encoding},
                         backends=list(DENSE_BACKENDS))
        assert set(out) == set(DENSE_BACKENDS)
        for backend, prob in out.items():
            np.testing.assert_allclose(prob, out["custom"], rtol=0, atol=1e-6,
                                       err_msg=f"{backend}, {encoding} input")


def test_the_readout_is_the_weighted_ridge_solution():
    """The gradient of Σ w_y (vᵀz + c − t)² + λ‖v‖² vanishes at the returned (v, c), and a
    larger λ shrinks v."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 5))
    y = (rng.random(60) < 0.3).astype(np.int64)
    lam = 0.7
    v, c = ridge_readout(z, y, lam)
    w = class_weights(y).astype(np.float64)[y]  # inverse frequency: n / (2 n_class)
    np.testing.assert_allclose(w, np.where(y == 1, 30 / y.sum(), 30 / (60 - y.sum())), rtol=1e-6)
    residual = w * (z @ v + c - (2 * y - 1))
    np.testing.assert_allclose(2 * z.T @ residual + 2 * lam * v, 0, atol=1e-9)
    np.testing.assert_allclose(residual.sum(), 0, atol=1e-9)  # the bias is not penalised
    assert np.linalg.norm(ridge_readout(z, y, 100.0)[0]) < np.linalg.norm(v)


def test_learns_the_held_out_problem_and_chooses_ridge_on_validation():
    train, val, test = held_out_problem(0)
    rule = get_rule("reservoir")
    params = rule.parse_params(default_values(rule.search_space()) | SMALL)
    from spikebench.backends import get_backend

    seen = []
    ctx = FitContext.for_validation(val, "roc_auc", get_backend("custom"), seed=0,
                                    report=lambda epoch, value: seen.append(value))
    model = rule.fit(train, hide_labels(val), params, ctx)
    assert len(seen) == len(params.ridge) == model.info["epochs"]
    assert model.info["ridge"] == params.ridge[int(np.nanargmax(seen))]
    assert score("roc_auc", test.y, model.predict_proba(test.X)) > 0.75
    assert model.activity(test.X)["macs_per_sample"] == params.hidden  # rate input: readout


def test_bad_settings_are_refused_by_name():
    rule = get_rule("reservoir")
    with pytest.raises(SpecError, match=r"input_scale: must be > 0"):
        merge_space(rule.search_space(), {"input_scale": 0.0}, "[space.reservoir]",
                    rule.domains())
    train, val, _ = held_out_problem(0)
    from spikebench.backends import get_backend

    params = rule.parse_params(default_values(rule.search_space()) | SMALL | {"ridge": [0.0]})
    ctx = FitContext.for_validation(val, "pr_auc", get_backend("custom"))
    with pytest.raises(RuleError, match=r"ridge must be a non-empty grid of values > 0"):
        rule.fit(train, hide_labels(val), params, ctx)
