"""The plugin is discovered through its entry point and passes spikebench's conformance kit."""

from __future__ import annotations

import pytest

from spikebench.backends import available_backends, get_backend
from spikebench.backends.conformance import backend_checks, check_backend


def test_registered_through_the_entry_point():
    assert "torchscript" in available_backends()
    assert get_backend("torchscript").describe()["rules"] == ["surrogate"]


def test_passes_the_whole_kit():
    check_backend("torchscript")


@pytest.mark.parametrize("name,check", list(backend_checks("torchscript")))
def test_each_check(name, check):
    check()
