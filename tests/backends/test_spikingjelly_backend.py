"""SpikingJelly backend: strict threshold, LIFNode mapping, the timing-based Tempotron."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("spikingjelly.activation_based")

from spikingjelly.activation_based import functional, neuron, surrogate

from spikebench.backends import NetworkSpec, get_backend
from spikebench.backends.spikingjelly_backend import (
    PinnedLIFNode,
    StrictSurrogate,
    make_node,
)


def test_spikingjelly_fires_at_equality_the_pinned_backend_does_not():
    x = torch.full((1, 1, 1), 1.0)
    stock = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=None,
                           surrogate_function=surrogate.ATan(), step_mode="m")
    pinned = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=None,
                            surrogate_function=StrictSurrogate("arctan", 2.0), step_mode="m")
    assert float(stock(x)) == 1.0 and float(pinned(x)) == 0.0
    functional.reset_net(stock)


@pytest.mark.parametrize("kind", ["arctan", "sigmoid", "fast_sigmoid"])
def test_strict_surrogate_derivatives_are_the_pinned_formulas(kind):
    from spikebench.backends.custom import surrogate_derivative

    z = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    StrictSurrogate(kind, 3.0)(z).sum().backward()
    torch.testing.assert_close(z.grad, surrogate_derivative(z.detach(), kind, 3.0))


def test_node_choice():
    lif = make_node(NetworkSpec(sizes=(2, 2), beta=0.9), store_v_seq=True)
    assert isinstance(lif, neuron.LIFNode) and lif.decay_input is False
    assert abs(1 - 1 / lif.tau - 0.9) < 1e-15 and lif.detach_reset is False
    for spec in (NetworkSpec(sizes=(2, 2), beta=0.0), NetworkSpec(sizes=(2, 2), reset="none")):
        assert isinstance(make_node(spec, store_v_seq=True), PinnedLIFNode)


def test_grid_potential_stays_below_continuous_peak():
    layer = get_backend("spikingjelly").build_tempotron(6, 2, steps=20, dtype=torch.float64,
                                                        seed=0)
    with torch.no_grad():
        layer.weight.abs_().mul_(50)
    times = torch.rand(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 15
    with torch.no_grad():
        v = layer(times)
        v_max, _, t_spike = layer.peak(times, threshold=1e9)  # no shunting
    assert torch.isinf(t_spike).all()
    assert bool((v.max(0).values <= v_max + 1e-9).all())
    assert bool((v_max - v.max(0).values < 0.05 * v_max).all())
