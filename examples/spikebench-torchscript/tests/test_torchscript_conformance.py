"""The plugin is discovered through its entry point and passes spikebench's conformance kit."""

from __future__ import annotations

import pytest

from spikebench.backends import available_backends, get_backend
from spikebench.backends.conformance import backend_checks, check_backend


def test_registered_through_the_entry_point():
    assert "torchscript" in available_backends()
    assert get_backend("torchscript").describe()["capabilities"] == ["dense_lif",
                                                                     "surrogate_gradients"]


def test_the_rules_it_serves_follow_from_its_capabilities():
    """No rule is named anywhere in the plug-in: the dense-network rules run on it, the
    convolutional and Tempotron ones do not, and the listing says why."""
    from spikebench.harness.rules import get_rule
    from spikebench.harness.rules.serving import serving_backends, why_not

    backend = get_backend("torchscript")
    assert "torchscript" in serving_backends(get_rule("surrogate"))
    assert "torchscript" in serving_backends(get_rule("active"))
    assert "torchscript" not in serving_backends(get_rule("conv_surrogate"))
    assert "conv_lif" in why_not(backend, get_rule("conv_surrogate"))


def test_passes_the_whole_kit():
    check_backend("torchscript")


@pytest.mark.parametrize("name,check", list(backend_checks("torchscript")))
def test_each_check(name, check):
    check()


def test_the_surrogate_rule_conforms_on_this_backend():
    """The rule kit, run on the plug-in: spikebench's surrogate rule trains this backend's
    network with hidden validation labels, deterministically, with its cost counters."""
    from spikebench.harness.rules.conformance import check_rule

    out = check_rule("surrogate", backends=["torchscript"],
                     params={"epochs": 2, "hidden": 16, "steps": 6, "encoding": "rate"})
    assert set(out) == {"torchscript"}
