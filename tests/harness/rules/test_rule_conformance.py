"""The built-in rules and the references pass the rule conformance kit, and the kit catches a
rule that breaks the contract."""

from __future__ import annotations

import numpy as np
import pytest

from spikebench.harness.rules import Rule, TrainedModel
from spikebench.harness.rules.conformance import check_rule, held_out_problem
from spikebench.harness.space import Fixed

FAST = {
    "surrogate": {"epochs": 3, "hidden": 16, "steps": 6, "encoding": "direct"},
    "tempotron": {"epochs": 3, "steps": 16},
    "active": {"hidden": 32, "steps": 16, "readout_epochs": 10},
    "logistic_regression": {},
    "mlp": {"epochs": 5},
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_builtin_rules_conform(name):
    out = check_rule(name, params=FAST[name])
    assert out  # at least one backend (or none needed)


def test_held_out_problem_keeps_patients_apart():
    train, val, test = held_out_problem(0)
    assert not set(train.groups) & set(val.groups) and not set(val.groups) & set(test.groups)


class _PeekingModel(TrainedModel):
    def __init__(self) -> None:
        self.info = {"epochs": 1, "labels_used": 1}

    def predict_proba(self, X, *, steps=None):
        return np.full(len(X), 0.5)


class PeekingRule(Rule):
    """Reads validation labels directly: the kit must catch it."""

    name = "peeking"
    needs = frozenset()
    kind = "reference"

    def search_space(self):
        return {"c": Fixed(1)}

    def fit(self, train, val, params, ctx):
        if (val.y < 0).any():
            raise ValueError("validation labels are hidden")
        return _PeekingModel()


def test_a_rule_that_reads_validation_labels_fails_the_kit():
    with pytest.raises(ValueError, match="hidden"):
        check_rule(PeekingRule)


@pytest.mark.parametrize(("name", "param"), [("surrogate", "gain"), ("surrogate", "beta"),
                                             ("tempotron", "tau"), ("active", "gain")])
def test_a_non_finite_setting_stops_a_feature_rule_before_training(name, param):
    """A NaN setting (``[space.<rule>]`` accepts TOML's ``nan``, an API user can pass one)
    makes every charge NaN, which never crosses a threshold: the fit must fail as diverged,
    not train silent neurons into a chance-level model."""
    from spikebench.harness.rules import DivergedError, FitContext, get_rule
    from spikebench.harness.rules.base import hide_labels
    from spikebench.harness.space import default_values

    rule = get_rule(name)
    train, val, _ = held_out_problem(0)
    params = {**default_values(rule.search_space()), param: float("nan")}
    ctx = FitContext.for_validation(val, "pr_auc", seed=0, backend="custom")
    with pytest.raises(DivergedError, match=f"non-finite hyper-parameter: {param} = nan"):
        rule.fit(train, hide_labels(val), rule.parse_params(params), ctx)


class FilterRule(PeekingRule):
    """A plug-in rule with a parameter spikebench does not know by name."""

    name = "filters"

    def search_space(self):
        return {"c": Fixed(1), "n_filters": Fixed(16)}

    def domains(self):
        from spikebench.harness.space import Domain

        return {**super().domains(), "n_filters": Domain.counting(64)}


def test_a_rule_declares_the_domain_of_its_own_parameters(monkeypatch):
    """``Rule.domains`` bounds a plug-in's own parameter in every spec override (checked
    before any work), and the conformance kit refuses a default outside the domain."""
    from spikebench.errors import SpecError
    from spikebench.harness import spec as spec_module
    from spikebench.harness.rules import base as rules_base
    from spikebench.harness.rules.conformance import _check_domains
    from spikebench.harness.space import Domain, merge_space

    rule = FilterRule()
    assert rule.domains()["n_filters"] == Domain.counting(64)
    with pytest.raises(SpecError, match=r"\[space.filters\]\.n_filters: 1000 is out of range; "
                                        r"n_filters counts something and must be between 1 "
                                        r"and 64"):
        merge_space(rule.search_space(), {"n_filters": 1000}, "[space.filters]",
                    rule.domains())
    assert merge_space(rule.search_space(), {"n_filters": {"low": 8, "high": 64}},
                       "[space.filters]", rule.domains())["n_filters"].high == 64
    # the spec check and the cell plans use the rule's domains
    monkeypatch.setattr("spikebench.harness.rules.get_rule", lambda name: rule)
    spec = type("S", (), {"space": {"filters": {"n_filters": 0}}})()
    with pytest.raises(SpecError, match="n_filters counts something"):
        spec_module.rule_space(spec, "filters")

    class Inconsistent(FilterRule):
        def search_space(self):
            return {"c": Fixed(1), "n_filters": Fixed(128)}

    with pytest.raises(AssertionError, match=r"outside its domain.*n_filters"):
        _check_domains(Inconsistent(), Inconsistent().search_space())
    assert rules_base.builtin_domains(["hidden", "lr", "x"]).keys() == {"hidden", "lr"}
