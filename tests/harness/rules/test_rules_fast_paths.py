"""The rules' fast paths (STDP traces and updates as matrix products, the Tempotron potential from
the kernel matrix, the two-unit delta rule) equal their reference forms within float rounding."""

from __future__ import annotations

import pytest
import torch

from spikebench.harness.rules.stdp import (
    decay_matrix,
    spike_traces,
    spike_traces_reference,
    stdp_update,
    stdp_update_reference,
)


def _trains(shape, p, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < p).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 2, 17, 30])
def test_traces_equal_the_loop(dtype, steps):
    s = _trains((steps, 5, 7), 0.3, steps, dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(spike_traces(s, 3.5), spike_traces_reference(s, 3.5),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 3, 25])
def test_update_equals_the_loop(dtype, steps):
    pre, post = _trains((steps, 32, 74), 0.3, 1, dtype), _trains((steps, 32, 50), 0.1, 2, dtype)
    kw = dict(a_plus=0.05, a_minus=0.04, tau_plus=3.0, tau_minus=6.0)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(stdp_update(pre, post, **kw), stdp_update_reference(pre, post, **kw),
                               rtol=tol, atol=tol)


def test_decay_matrix_is_the_pair_window():
    d = decay_matrix(4, 2.0, dtype=torch.float64)
    assert d[3, 1] == pytest.approx(torch.exp(torch.tensor(-1.0)).item())
    assert d[1, 3] == 0 and d[2, 2] == 1
    assert decay_matrix(4, 2.0, strict=True)[2, 2] == 0


@pytest.mark.parametrize("backend", ["custom", "snntorch", "spikingjelly"])
def test_tempotron_prepared_potential_equals_the_layer_forward_bit_for_bit(backend):
    """The rule prepares the fixed patterns once per fit (the custom engine reads V from the
    rule's kernel matrix, SpikingJelly evaluates its own kernel once, snnTorch places its
    impulses once); per mini-batch that gives exactly what the layer's forward gives, with the
    weights of the moment."""
    from spikebench.backends import get_backend
    from spikebench.harness.rules.tempotron import kernel_matrix, spike_times

    layer = get_backend(backend).build_tempotron(12, 6, steps=20, tau=8.0, tau_s=2.0, seed=0)
    x = torch.randn(1100, 4, generator=torch.Generator().manual_seed(0))
    times = spike_times(x, 20, gain=1.2, population=3)
    kernel = kernel_matrix(times, 20, layer.tau, layer.tau_s)
    idx = torch.tensor([1050, 10, 3, 10, 777])
    with torch.no_grad():
        prepared = layer.prepare(times, kernel)
        for _ in range(2):
            assert torch.equal(prepared(idx), layer(times[idx]))
            layer.weight.mul_(-1.5)
@pytest.mark.parametrize("start", ["zero", "random"])
def test_readout_two_unit_delta_rule_equals_the_softmax_form(start):
    """Readout.train (σ of the logit difference, two matrix-vector products per step) equals the
    softmax form of the delta rule (Readout.train_reference) within float64 rounding."""
    from spikebench.harness.rules.active import Readout

    gen = torch.Generator().manual_seed(3)
    r = torch.randn(500, 16, generator=gen, dtype=torch.float64)
    y = (torch.rand(500, generator=gen) < 0.25).long()
    fast, ref = Readout(16), Readout(16)
    if start == "random":
        fast.weight.normal_(generator=gen)
        fast.bias.normal_(generator=gen)
        ref.weight.copy_(fast.weight)
        ref.bias.copy_(fast.bias)
    for _ in range(3):  # rounds continue from the previous readout
        fast.train(r, y, lr=0.3, epochs=40)
        ref.train_reference(r, y, lr=0.3, epochs=40)
    torch.testing.assert_close(fast.weight, ref.weight, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.bias, ref.bias, rtol=1e-10, atol=1e-12)
