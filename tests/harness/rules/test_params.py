"""Typed rule parameters: a rule's ``fit`` receives its own frozen dataclass, built from the
Optuna / spec dict by ``Rule.parse_params``, which coerces each value to its field's type and
names the rule and the key of anything it refuses; the conformance kit holds the dataclass to
the search space."""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pytest

from spikebench.errors import RuleError
from spikebench.harness.rules import Rule, available_rules, get_rule
from spikebench.harness.rules.conformance import _check_params_type, check_rule
from spikebench.harness.space import Categorical, Fixed, Float, Int, default_values


@dataclasses.dataclass(frozen=True)
class ToyParams:
    hidden: int = 8
    lr: float = 0.1
    mixed: bool = False
    encoding: str = "rate"
    grid: tuple[float, ...] = (0.1, 1.0)
    reset: Literal["subtract", "zero"] = "zero"


class ToyRule(Rule[ToyParams]):
    name = "toy"
    needs = frozenset()
    kind = "reference"
    params_type = ToyParams

    def search_space(self):
        return {"hidden": Int(4, 16), "lr": Float(0.01, 1.0, log=True), "mixed": Fixed(False),
                "encoding": Categorical(("rate", "latency")), "grid": Fixed([0.1, 1.0]),
                "reset": Fixed("zero")}

    def fit(self, train, val, params, ctx):  # pragma: no cover - never fitted here
        raise NotImplementedError


VALUES = {"hidden": 8, "lr": 0.1, "mixed": False, "encoding": "rate", "grid": [0.1, 1.0],
          "reset": "zero"}


def test_values_are_coerced_to_the_field_types():
    params = ToyRule.parse_params({**VALUES, "hidden": np.int64(12), "lr": 1, "grid": 3})
    assert params == ToyParams(hidden=12, lr=1.0, mixed=False, encoding="rate", grid=(3.0,),
                               reset="zero")
    assert type(params.hidden) is int and type(params.lr) is float
    assert ToyRule.parse_params({**VALUES, "hidden": 16.0}).hidden == 16  # integral float
    assert ToyRule.parse_params({**VALUES, "mixed": np.bool_(True)}).mixed is True
    assert np.isnan(ToyRule.parse_params({**VALUES, "lr": float("nan")}).lr)  # fit prunes it
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.hidden = 3  # type: ignore[misc]
    assert ToyRule.parse_params(params) is params  # already typed: as it is


BAD = [
    ({**VALUES, "hiden": 8}, r"rule 'toy': unknown parameter 'hiden'; its parameters are "
                             r"hidden, lr, mixed, encoding, grid, reset"),
    ({k: v for k, v in VALUES.items() if k != "lr"}, r"rule 'toy': missing parameter 'lr'"),
    ({**VALUES, "hidden": 8.5}, r"rule 'toy': parameter 'hidden' must be an integer, got 8.5"),
    ({**VALUES, "hidden": True}, r"parameter 'hidden' must be an integer, got True"),
    ({**VALUES, "lr": "0.1"}, r"parameter 'lr' must be a number, got '0.1' \(str\)"),
    ({**VALUES, "mixed": 1}, r"parameter 'mixed' must be true or false, got 1"),
    ({**VALUES, "encoding": 3}, r"parameter 'encoding' must be a string, got 3"),
    ({**VALUES, "grid": [0.1, "x"]}, r"parameter 'grid' must be a number, got 'x'"),
    ({**VALUES, "reset": "none"}, r"parameter 'reset' must be one of 'subtract', 'zero', "
                                  r"got 'none'"),
]


def test_bad_values_are_refused_naming_the_rule_and_the_key():
    for values, message in BAD:
        with pytest.raises(RuleError, match=message):
            ToyRule.parse_params(values)


def test_free_form_parameters_stay_a_plain_dict():
    """A rule that keeps the default ``params_type = dict`` gets the values as given."""

    class FreeForm(ToyRule):
        name = "free"
        params_type = dict  # type: ignore[assignment]

    assert FreeForm.parse_params({"anything": [1, 2], "x": "y"}) == {"anything": [1, 2],
                                                                     "x": "y"}
    _check_params_type(FreeForm(), FreeForm().search_space())  # nothing to hold it to


def test_every_installed_rule_declares_its_search_space_as_a_dataclass():
    for name in available_rules():
        rule = get_rule(name)
        _check_params_type(rule, rule.search_space())
        params = rule.parse_params(default_values(rule.search_space()))
        assert isinstance(params, rule.params_type), name


def test_the_kit_holds_the_dataclass_to_the_search_space():
    @dataclasses.dataclass(frozen=True)
    class Missing:
        hidden: int = 8

    @dataclasses.dataclass
    class Mutable:
        hidden: int = 8
        lr: float = 0.1
        mixed: bool = False
        encoding: str = "rate"
        grid: tuple[float, ...] = (0.1, 1.0)
        reset: str = "zero"

    @dataclasses.dataclass(frozen=True)
    class Outside(ToyParams):
        hidden: int = 64  # the space is 4..16

    @dataclasses.dataclass(frozen=True)
    class OtherFixed(ToyParams):
        grid: tuple[float, ...] = (1.0,)  # the space fixes (0.1, 1.0)

    cases = [(Missing, r"fields must equal the search_space\(\) names; fields only: \[\], "
                       r"search_space\(\) only: \['encoding', 'grid', 'lr', 'mixed', 'reset'\]"),
             (Mutable, "must be a frozen dataclass"),
             (Outside, r"Outside\.hidden = 64 is not a point of its search space Int"),
             (OtherFixed, r"OtherFixed\.grid = \(1\.0,\) is not a point of its search space Fixed")]
    for params_type, message in cases:
        rule = type("Bad", (ToyRule,), {"params_type": params_type})()
        with pytest.raises(AssertionError, match=message):
            check_rule(rule)
