"""Learning rules, discovered through the ``spikebench.rules`` entry points (pluggable like
backends). Users see ``get_rule("surrogate")``; a third-party package registers its own
``Rule`` subclass under the same group. The non-spiking references (logistic regression,
MLP; on the image track the CNN and its attention-MIL variant) are rules too, with
``needs_backend = False``; rules with ``inputs = "images"`` read the lazy crop rows;
``check_rule`` is the contract's conformance kit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from spikebench.errors import RuleError, SpikebenchError
from spikebench.harness.rules.base import (
    DivergedError,
    FitContext,
    Rule,
    Split,
    TrainedModel,
)
from spikebench.plugins import load_plugin, plugin_entry_points

GROUP = "spikebench.rules"
_BUILTIN = {
    "surrogate": "spikebench.harness.rules.surrogate:SurrogateGradient",
    "tempotron": "spikebench.harness.rules.tempotron:Tempotron",
    "active": "spikebench.harness.rules.active:ActiveLearning",
    "conv_active": "spikebench.harness.rules.conv_active:ConvActiveLearning",
    "logistic_regression": "spikebench.harness.rules.logistic_regression:LogisticRegressionRule",
    "mlp": "spikebench.harness.rules.mlp:MLP",
    "geometry": "spikebench.harness.rules.geometry:GeometryRule",
    "conv_surrogate": "spikebench.harness.rules.conv_surrogate:ConvSurrogate",
    "cnn": "spikebench.harness.rules.cnn:CNN",
    "cnn_mil": "spikebench.harness.rules.mil:AttentionMIL",
    "image_tempotron": "spikebench.harness.rules.image_tempotron:ImageTempotron",
    "conv_snn_mil": "spikebench.harness.rules.conv_mil:ConvSNNMIL",
}


def available_rules() -> list[str]:
    """Names of every registered learning rule (the references included).

    Returns
    -------
    list of str
        Sorted names of the ``spikebench.rules`` entry points (the built-ins included).

    Examples
    --------
    >>> from spikebench.harness.rules import available_rules
    >>> {"surrogate", "tempotron", "active", "logistic_regression"} <= set(available_rules())
    True
    """
    return sorted(plugin_entry_points(GROUP, _BUILTIN))


@dataclass(frozen=True)
class InstalledRules:
    """Every registered rule: the usable ones by name, and why the others are not.

    Attributes
    ----------
    usable : Mapping[str, Rule]
        Rule name → an instance.
    broken : Mapping[str, str]
        Rule name → why it could not be loaded (a broken plug-in).

    Examples
    --------
    >>> from spikebench.harness.rules import installed_rules
    >>> rules = installed_rules()
    >>> "tempotron" in rules.usable, isinstance(rules.broken, dict)
    (True, True)
    """

    usable: Mapping[str, Rule]
    broken: Mapping[str, str]


def installed_rules() -> InstalledRules:
    """Load every registered rule once (what ``spikebench rules`` lists).

    A broken plug-in is kept with its reason instead of stopping the others.

    Returns
    -------
    InstalledRules
        The usable rules and the broken ones with their reasons.

    Examples
    --------
    >>> from spikebench.harness.rules import installed_rules
    >>> rules = installed_rules()
    >>> rules.usable["surrogate"].needs == frozenset({"dense_lif", "surrogate_gradients"})
    True
    """
    usable: dict[str, Rule] = {}
    broken: dict[str, str] = {}
    for name in available_rules():
        try:
            usable[name] = get_rule(name)
        except SpikebenchError as exc:
            broken[name] = str(exc)
    return InstalledRules(usable, broken)


def get_rule(name: str) -> Rule:
    """Instantiate the rule registered as ``name``.

    Parameters
    ----------
    name : str
        A name of ``available_rules()``.

    Returns
    -------
    Rule
        A new instance of the registered class.

    Raises
    ------
    RuleError
        ``name`` is unknown (the message lists the installed rules) or its plug-in cannot be
        loaded.

    Examples
    --------
    >>> from spikebench.harness.rules import get_rule
    >>> rule = get_rule("surrogate")
    >>> rule.name, rule.kind, sorted(rule.search_space())[:3]
    ('surrogate', 'snn', ['batch_size', 'beta', 'encoding'])
    """
    return cast(Rule, load_plugin(GROUP, _BUILTIN, name, Rule, RuleError, "rule"))


__all__ = [
    "DivergedError", "FitContext", "InstalledRules", "Rule", "Split", "TrainedModel",
    "available_rules", "get_rule", "installed_rules",
]
