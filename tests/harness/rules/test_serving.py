"""Which backend serves which rule follows from capabilities alone, and the listings say so."""

from __future__ import annotations

import re

import pytest

from spikebench import cli
from spikebench.backends.capabilities import Capability
from spikebench.backends.custom_backend import CustomBackend
from spikebench.harness.rules import installed_rules
from spikebench.harness.rules.serving import installed_backends, serving_backends, why_not


def _listing(capsys: pytest.CaptureFixture[str], command: str) -> dict[str, dict[str, str]]:
    """``spikebench rules`` / ``backends`` parsed into ``{name: {field: text}}``."""
    assert cli.main([command]) == 0
    blocks: dict[str, dict[str, str]] = {}
    name = ""
    for line in capsys.readouterr().out.splitlines():
        if line and not line[0].isspace():
            name = line.split()[0]
            blocks[name] = {"summary": line[len(name):].strip()}
        elif ":" in line:
            field, _, text = line.strip().partition(":")
            blocks[name][field] = text.strip()
    return blocks


def test_the_rules_listing_is_derived_from_capabilities(capsys):
    """Every spiking rule, image rules included, is listed on exactly the backends whose
    capabilities include everything it needs."""
    listed = _listing(capsys, "rules")
    backends = installed_backends().usable
    for name, rule in installed_rules().usable.items():
        if not rule.needs:
            assert "none needed" in listed[name]["backends"]
            continue
        expected = [b for b, backend in backends.items() if rule.needs <= backend.capabilities]
        shown = listed[name]["backends"].split(";")[0].split(", ")
        assert shown == expected, name
        assert listed[name]["needs"] == ", ".join(sorted(rule.needs))
    for image_rule in ("conv_surrogate", "conv_snn_mil", "image_tempotron", "conv_active"):
        assert {"custom", "snntorch", "spikingjelly"} <= set(
            listed[image_rule]["backends"].split(";")[0].split(", "))


def test_the_backends_listing_names_what_each_builds_and_the_rules_that_follow(capsys):
    listed = _listing(capsys, "backends")
    rules = installed_rules().usable
    for name, backend in installed_backends().usable.items():
        assert listed[name]["builds"] == ", ".join(sorted(backend.capabilities))
        expected = [r for r, rule in rules.items() if rule.needs
                    and rule.needs <= backend.capabilities]
        assert listed[name]["rules"].split(", ") == expected


def test_a_new_rule_runs_on_every_backend_that_builds_what_it_needs():
    """No backend names it: a rule needing a dense LIF network is served by every backend
    providing one; one needing a capability nobody declares by none, with the reason."""
    from spikebench.harness.rules.logistic_regression import LogisticRegressionRule

    class MyRule(LogisticRegressionRule):
        name = "myrule"
        needs = frozenset({Capability.DENSE_LIF})

    assert {"custom", "snntorch", "spikingjelly"} <= set(serving_backends(MyRule()))

    class DenseOnly(CustomBackend):
        name = "dense-only"
        capabilities = frozenset({Capability.DENSE_LIF})

    tempotron = installed_rules().usable["tempotron"]
    assert serving_backends(tempotron, {"dense-only": DenseOnly()}) == []
    assert re.search(r"cannot build Tempotron potentials \(capabilities tempotron\)",
                     why_not(DenseOnly(), tempotron))


def test_a_backend_declaring_rule_names_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="capabilities = frozenset"):
        class Old(CustomBackend):
            rules = frozenset({"surrogate"})
