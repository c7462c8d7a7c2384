"""Reference rules: logistic regression and a small MLP are rules without a backend, fitted on
the same splits as the spiking cells and tuned like them, and beat chance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikebench.harness.metrics import score
from spikebench.harness.rules import FitContext, Split, get_rule
from spikebench.harness.rules.base import hide_labels
from spikebench.harness.rules.mlp import mlp_macs
from spikebench.harness.space import default_values


def easy_problem(seed: int = 0) -> tuple[Split, Split]:
    rng = np.random.default_rng(seed)

    def make(m: int) -> Split:
        y = (rng.random(m) < 0.3).astype(np.int64)
        X = rng.normal(0, 1, (m, 10)).astype(np.float32)
        X[:, :3] += 1.2 * y[:, None]
        return Split(X, y, rng.integers(0, 20, m))

    return make(300), make(150)


def fit(name: str, train: Split, val: Split, seed: int = 0):
    rule = get_rule(name)
    ctx = FitContext.for_validation(val, "pr_auc", seed=seed)  # no backend
    return rule.fit(train, hide_labels(val),
                    rule.parse_params(default_values(rule.search_space())), ctx)


@pytest.mark.parametrize("name", ["logistic_regression", "mlp"])
def test_reference_beats_chance_and_reports_its_cost(name):
    train, val = easy_problem()
    assert get_rule(name).kind == "reference" and not get_rule(name).needs
    model = fit(name, train, val)
    prob = model.predict_proba(val.X)
    assert prob.shape == (len(val),) and np.all((prob >= 0) & (prob <= 1))
    assert score("balanced_accuracy", val.y, prob) > 0.75
    assert score("roc_auc", val.y, prob) > 0.85
    # not spiking: steps are ignored, no spikes, cost is MACs
    np.testing.assert_array_equal(model.predict_proba(val.X, steps=3), prob)
    activity = model.activity(val.X)
    assert math.isnan(activity["spikes_per_sample"]) and activity["acs_per_sample"] == 0
    assert activity["macs_per_sample"] >= train.X.shape[1]
    # logistic regression is a solver fit: no epochs, so no time per epoch
    assert (model.info["epochs"] is None if name == "logistic_regression"
            else model.info["epochs"] >= 1) and "params" in model.info
    np.testing.assert_allclose(fit(name, train, val).predict_proba(val.X), prob)


def test_mlp_cost_is_both_dense_layers():
    train, val = easy_problem()
    model = fit("mlp", train, val)
    hidden = model.info["params"]["hidden"]
    assert model.activity(val.X)["macs_per_sample"] == mlp_macs(10, hidden) == 12 * hidden


def test_space_overrides_reach_a_reference_fit(tmp_path, feature_table):
    """``[space.mlp] hidden = 8`` runs the MLP reference with 8 hidden units (its recorded
    params and its MAC count say so); the rest of its space is tuned like any cell's (a trial
    was run: a learning rate inside the default range)."""
    import json

    import pandas as pd
    from spec_text import tiny_spec

    from spikebench.harness.study import run_study

    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec(feature_table, study={"references": ["mlp"]},
                              split={"repeats": 1}, space_mlp={"hidden": 8, "epochs": 5}))
    out = run_study(spec, tmp_path / "run", trials=1, progress=False)
    results = pd.read_parquet(out / "results.parquet")
    row = results[results["rule"] == "mlp"].iloc[0]
    params = json.loads(row["params"])
    assert params["hidden"] == 8 and params["epochs"] == 5 and 3e-4 <= params["lr"] <= 3e-2
    assert row["n_trials"] == 1 and row["best_trial"] == 0
    used = (row["macs_per_sample"] - 8 * 2) / 8  # macs = F·8 + 8·2 with 8 hidden units
    assert used == int(used) and 1 <= used < pd.read_parquet(feature_table).shape[1]
