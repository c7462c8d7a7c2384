"""snnTorch backend: the pinned Leaky, the documented differences to snnTorch's defaults."""

from __future__ import annotations

import pytest
import torch

snntorch = pytest.importorskip("snntorch")

from spikebench.backends import NetworkSpec, get_backend  # noqa: E402
from spikebench.backends.snntorch_backend import PinnedLeaky, spike_function  # noqa: E402


def _run(neuron, currents):
    mem = neuron.reset_mem()
    spikes = []
    for cur in currents:
        spk, mem = neuron(cur, mem)
        spikes.append(spk)
    return torch.stack(spikes)


def test_pinned_leaky_fires_on_the_pinned_equation_when_charge_exceeds_twice_threshold():
    """H = 2.5θ: the pinned equation keeps U = 1.5θ and fires again next step on H = βU + I;
    stock snnTorch (reset_delay=False) subtracts θ once more before its spike test."""
    currents = torch.tensor([[2.5], [0.0], [0.0]])
    grad = spike_function("fast_sigmoid", 25.0)
    pinned = _run(PinnedLeaky(1.0, 1.0, grad, "subtract"), currents)
    stock = _run(snntorch.Leaky(beta=1.0, threshold=1.0, spike_grad=grad, reset_delay=False),
                 currents)
    assert pinned[:, 0].tolist() == [1.0, 1.0, 0.0]  # H: 2.5, 1.5, 0.5
    assert stock[:, 0].tolist() == [1.0, 0.0, 0.0]  # tests 1.5 - 1 = 0.5 at step 1


def test_default_reset_delay_differs_and_is_not_used():
    """snnTorch's default reset_delay=True returns the un-reset membrane of the spiking step."""
    grad = spike_function("fast_sigmoid", 25.0)
    cur = torch.tensor([[1.5]])
    delayed = snntorch.Leaky(beta=1.0, threshold=1.0, spike_grad=grad)
    pinned = PinnedLeaky(1.0, 1.0, grad, "subtract")
    _, mem_delayed = delayed(cur, delayed.reset_mem())
    _, mem_pinned = pinned(cur, pinned.reset_mem())
    assert float(mem_delayed) == 1.5 and float(mem_pinned) == 0.5


def test_threshold_comparison_is_strict():
    grad = spike_function("arctan", 2.0)
    assert _run(PinnedLeaky(0.5, 1.0, grad, "subtract"), torch.tensor([[1.0]]))[0, 0] == 0.0


def test_sigmoid_surrogate_has_no_nan_far_below_threshold():
    """snnTorch's sigmoid surrogate computes exp(-kz) unguarded (inf/inf in float32)."""
    z = torch.tensor([-10.0, -0.01, 0.2], requires_grad=True)
    spike_function("sigmoid", 25.0)(z).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad[0] < 1e-30


def test_float64_buffers_keep_exact_beta_and_threshold():
    net = get_backend("snntorch").build(NetworkSpec(sizes=(2, 3), beta=0.8, threshold=0.7),
                                        dtype=torch.float64)
    lif = net.neurons[0]
    assert float(lif.beta) == 0.8 and float(lif.threshold) == 0.7


def test_tempotron_rejects_negative_spike_times():
    from spikebench.errors import BackendError

    layer = get_backend("snntorch").build_tempotron(2, 1, steps=5)
    with pytest.raises(BackendError, match=">= 0"):
        layer(torch.tensor([[-1.0, 2.0]]))
