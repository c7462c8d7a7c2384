"""Reference rows: logistic regression and a small MLP fitted on the same splits beat chance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikebench.harness.metrics import score
from spikebench.harness.references import REFERENCES, fit_reference
from spikebench.harness.rules import Split


def easy_problem(seed: int = 0) -> tuple[Split, Split]:
    rng = np.random.default_rng(seed)

    def make(m: int) -> Split:
        y = (rng.random(m) < 0.3).astype(np.int64)
        X = rng.normal(0, 1, (m, 10)).astype(np.float32)
        X[:, :3] += 1.2 * y[:, None]
        return Split(X, y, rng.integers(0, 20, m))

    return make(300), make(150)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_beats_chance_and_reports_its_cost(name):
    train, val = easy_problem()
    model = fit_reference(name, train, val, seed=0)
    prob = model.predict_proba(val.X)
    assert prob.shape == (len(val),) and np.all((prob >= 0) & (prob <= 1))
    assert score("balanced_accuracy", val.y, prob) > 0.75
    assert score("roc_auc", val.y, prob) > 0.85
    # not spiking: steps are ignored, activity is NaN, cost is MACs
    np.testing.assert_array_equal(model.predict_proba(val.X, steps=3), prob)
    assert all(math.isnan(v) for v in model.activity(val.X).values())
    assert model.info["macs_per_sample"] >= train.X.shape[1]
    assert model.info["epochs"] >= 1 and "params" in model.info
    # the same seed gives the same model
    np.testing.assert_allclose(fit_reference(name, train, val, seed=0).predict_proba(val.X), prob)


def test_unknown_reference_names_the_known_ones():
    train, val = easy_problem()
    with pytest.raises(ValueError, match="logistic_regression"):
        fit_reference("svm", train, val, seed=0)
