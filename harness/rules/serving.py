"""Which backend serves which learning rule: the one place it is decided.

A backend serves a rule exactly when it provides every capability the rule needs
(``Backend.capabilities <spikebench.backends.base.Backend.capabilities>`` ⊇
``Rule.needs <spikebench.harness.rules.base.Rule.needs>``); a rule that needs nothing runs
without a backend. The cell planner, the rules' conformance kit and the ``spikebench rules`` /
``spikebench backends`` listings all ask here, so a new rule that needs a dense LIF network
runs on every backend that builds one, with no edit to any backend.

Examples
--------
>>> from spikebench.harness.rules import get_rule
>>> from spikebench.harness.rules.serving import serving_backends
>>> "custom" in serving_backends(get_rule("conv_surrogate"))
True
>>> serving_backends(get_rule("logistic_regression"))  # a reference needs no backend
[]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spikebench.errors import SpikebenchError

if TYPE_CHECKING:
    from spikebench.backends.base import Backend
    from spikebench.harness.rules.base import Rule


def why_not(backend: Backend, rule: Rule) -> str:
    """Why ``backend`` cannot serve ``rule`` ("" when it can): the capabilities it lacks."""
    return backend.lacks_message(rule.needs)


def serves(backend: Backend, rule: Rule) -> bool:
    """Whether ``backend`` provides everything ``rule`` needs."""
    return not backend.lacking(rule.needs)


@dataclass(frozen=True)
class InstalledBackends:
    """Every registered backend: the usable ones by name, and why the others are not."""

    usable: Mapping[str, Backend]
    broken: Mapping[str, str]


def installed_backends() -> InstalledBackends:
    """Load every registered backend once; a broken or uninstallable one is kept with its
    reason instead of stopping the others."""
    from spikebench.backends import available_backends, get_backend

    usable: dict[str, Backend] = {}
    broken: dict[str, str] = {}
    for name in available_backends():
        try:
            usable[name] = get_backend(name)
        except SpikebenchError as exc:
            broken[name] = str(exc)
    return InstalledBackends(usable, broken)


def serving_backends(rule: Rule, backends: Mapping[str, Backend] | None = None) -> list[str]:
    """Names of the (usable, installed) backends that serve ``rule``; ``[]`` for a rule that
    needs no backend."""
    if not rule.needs:
        return []
    pool = installed_backends().usable if backends is None else backends
    return [name for name, backend in pool.items() if serves(backend, rule)]


def rules_served(backend: Backend, rules: Mapping[str, Rule]) -> list[str]:
    """Names of the spiking rules among ``rules`` that ``backend`` serves."""
    return [name for name, rule in rules.items() if rule.needs and serves(backend, rule)]
