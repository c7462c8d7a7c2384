"""A user builds the same convolutional SNN on every backend: same weights, same spikes."""

from __future__ import annotations

import pytest
import torch

from spikebench.backends.capabilities import Capability
from spikebench.backends.conformance.conv import check_conv_backend, compare_conv_to_reference
from spikebench.backends.conv import (
    ConvNetworkSpec,
    build_conv,
    conv_backends,
    conv_train_step,
    custom_network_class,
)
from spikebench.backends.custom_backend import CustomBackend
from spikebench.errors import BackendError


@pytest.mark.parametrize("backend", ["custom", "snntorch", "spikingjelly"])
def test_every_builtin_backend_passes_the_conv_conformance_kit(backend):
    check_conv_backend(backend)


def test_a_different_network_is_caught_by_the_kit():
    """The kit is not vacuous: a backend whose pooling differs fails the equivalence check."""
    base = custom_network_class()

    class AvgPool(base):  # average pooling instead of max pooling
        def forward(self, x):
            import torch.nn.functional as F

            old = F.max_pool2d
            F.max_pool2d = F.avg_pool2d
            try:
                return super().forward(x)
            finally:
                F.max_pool2d = old

    class AvgPoolBackend(CustomBackend):
        name = "avgpool-test"
        conv_network_cls = AvgPool

    spec = ConvNetworkSpec(image_size=12, channels=(3, 4), hidden=(6,), threshold=0.8)
    with pytest.raises(AssertionError, match="differ"):
        compare_conv_to_reference(AvgPoolBackend(), spec)


def test_spec_validation_and_costs():
    spec = ConvNetworkSpec(image_size=16, channels=(4, 8), hidden=(10,))
    assert spec.feature_size == 4 and spec.dense_sizes == (128, 10, 2) and spec.n_layers == 4
    assert spec.fan_outs() == [36, 72, 10, 2]
    assert spec.conv_macs() == 1 * 4 * 9 * 256 + 4 * 8 * 9 * 64 + 128 * 10 + 10 * 2
    for bad in ({"kernel": 2}, {"channels": ()}, {"image_size": 2}, {"beta": 2.0}):
        with pytest.raises(BackendError):
            ConvNetworkSpec(**bad)


def test_conv_backends_are_those_declaring_the_capability():
    assert {"custom", "snntorch", "spikingjelly"} <= set(conv_backends())
    assert "torchscript" not in conv_backends()  # the example plug-in builds dense nets only
    with pytest.raises(BackendError, match="unknown backend"):
        build_conv("nosuch", ConvNetworkSpec())


def test_a_backend_without_the_capability_refuses_naming_it():
    class DenseOnly(CustomBackend):
        name = "dense-only"
        capabilities = frozenset({Capability.DENSE_LIF, Capability.SURROGATE_GRADIENTS})
        conv_network_cls = None

    with pytest.raises(BackendError, match=r"convolutional LIF network .*conv_lif"):
        DenseOnly().build_conv(ConvNetworkSpec())


def test_conv_train_step_is_a_timeable_closure():
    spec = ConvNetworkSpec(image_size=16, channels=(2, 4))
    step = conv_train_step("custom", spec, batch=2, steps=3)
    losses = [step() for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses)
