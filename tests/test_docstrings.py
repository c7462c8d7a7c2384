"""A user reads ``help()`` and the API reference: the public API and the plug-in contracts have
numpy-style sections (Parameters, Returns, Raises, Examples), no Sphinx role that ``help()``
would show raw, and every example runs (doctests, fast: none trains a network)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import re

import pytest

import spikebench

#: The modules whose docstrings hold examples; each is run as a doctest.
DOCTEST_MODULES = (
    "spikebench", "spikebench.errors", "spikebench.studies", "spikebench.backends.registry",
    "spikebench.backends.base", "spikebench.backends.specs", "spikebench.backends.capabilities",
    "spikebench.backends.networks", "spikebench.backends.conformance",
    "spikebench.harness.rules", "spikebench.harness.rules.model",
    "spikebench.harness.rules.base", "spikebench.harness.rules.conformance",
    "spikebench.harness.network_metrics", "spikebench.datasets.sources.base",
    "spikebench.datasets.sources.conformance", "spikebench.datasets.phantom",
    "spikebench.datasets.features", "spikebench.reports.load", "spikebench.reports.build",
)

ROLE = re.compile(r":(class|func|meth|mod|data|attr|exc|obj):`")


def _public_api() -> dict[str, object]:
    """Every name of the public API and the plug-in contracts, by dotted name."""
    import spikebench.backends as backends
    import spikebench.harness.rules as rules
    from spikebench.backends.base import TempotronNetwork
    from spikebench.backends.capabilities import Capability
    from spikebench.backends.conformance import check_backend
    from spikebench.backends.specs import ConvNetworkSpec
    from spikebench.datasets.sources.base import DataSource, SourceData, SourceOptions
    from spikebench.datasets.sources.conformance import check_source
    from spikebench.harness.rules.conformance import check_rule

    out: dict[str, object] = {f"spikebench.{n}": getattr(spikebench, n)
                              for n in spikebench.__all__ if n != "__version__"}
    out |= {f"spikebench.backends.{n}": getattr(backends, n) for n in backends.__all__
            if n not in ("RESETS", "SURROGATES")}
    out |= {f"spikebench.harness.rules.{n}": getattr(rules, n) for n in rules.__all__}
    out |= {"Capability": Capability, "ConvNetworkSpec": ConvNetworkSpec,
            "TempotronNetwork": TempotronNetwork, "DataSource": DataSource,
            "SourceData": SourceData, "SourceOptions": SourceOptions,
            "check_backend": check_backend, "check_rule": check_rule,
            "check_source": check_source}
    return out


def _members(obj: object) -> list[tuple[str, object]]:
    """``obj`` and, for a class, the public methods and properties it defines itself."""
    found = [("", obj)]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if not name.startswith("_") and (inspect.isfunction(member)
                                             or isinstance(member, (property, classmethod))):
                found.append((name, getattr(member, "__func__", member)))
    return found


@pytest.mark.parametrize(("name", "obj"), list(_public_api().items()))
def test_help_shows_no_raw_sphinx_role(name, obj):
    for member, target in _members(obj):
        doc = inspect.getdoc(target) or ""
        assert not ROLE.search(doc), f"{name}.{member}: {ROLE.search(doc).group()}..."


@pytest.mark.parametrize(("name", "obj"), list(_public_api().items()))
def test_public_names_have_numpy_sections_and_an_example(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    assert "Examples\n--------" in doc, f"{name}: no Examples section"
    if inspect.isfunction(obj) and inspect.signature(obj).parameters:
        assert "Parameters\n----------" in doc, f"{name}: no Parameters section"
        if inspect.signature(obj).return_annotation not in (None, "None"):
            assert "Returns\n-------" in doc, f"{name}: no Returns section"


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             report=True)
    assert result.attempted > 0, f"{module} has no example"
    assert result.failed == 0, f"{result.failed} example(s) of {module} failed (see above)"
