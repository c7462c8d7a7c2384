"""The event-driven (accumulate-only) products of the custom engine equal the dense products up
to summation order: the dense path is the oracle, with a float32 tolerance."""

from __future__ import annotations

import pytest
import torch

from spikebench.backends import NetworkSpec, _lif_kernels, event_driven, get_backend


@pytest.fixture(scope="module")
def kernels(fused_kernels) -> None:
    """The fused kernels, built (skips or fails as ``fused_kernels`` says when they cannot be)."""


def _spikes(shape, density, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < density).float()


@pytest.mark.parametrize("density", [0.0, 0.02, 0.1, 0.3, 1.0])
@pytest.mark.parametrize("n_out", [1, 2, 7, 130, 512])
def test_event_products_equal_dense_products(kernels, density, n_out):
    x = _spikes((37, 65), density, n_out)
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(n_out, 65, generator=gen), torch.randn(n_out, generator=gen)
    g = torch.randn(37, n_out, generator=gen)
    torch.testing.assert_close(event_driven.currents(x, w, b), torch.addmm(b, x, w.t()),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(event_driven.currents(x, w, None), x @ w.t(), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(event_driven.weight_grad(g, x), g.t() @ x, rtol=1e-5, atol=1e-5)


def test_density_is_measured_and_non_binary_input_refused(kernels):
    x = _spikes((10, 100), 0.25, 0)
    assert event_driven.input_density(x) == pytest.approx(float(x.mean()))
    assert event_driven.input_density(x * 0.5) == -1.0
    assert event_driven.input_density(x, torch.tensor(7.0)) == pytest.approx(7 / 1000)
    assert _lif_kernels.binary_density(torch.zeros(0)) == 0.0


@pytest.mark.parametrize("density", [0.05, 0.3])
def test_network_train_step_matches_the_dense_oracle(kernels, monkeypatch, density):
    """Forward spikes, charges and every gradient of a 64 -> 512 -> 256 -> 2 network, with the
    event-driven path (sparse input and hidden spikes) against SPIKEBENCH_NO_EVENT_DRIVEN=1."""
    spec = NetworkSpec(sizes=(64, 512, 256, 2))
    x = _spikes((6, 9, 64), density, 3)

    def run():
        net = get_backend("custom").build(spec, seed=0)
        with torch.no_grad():
            for lin in net.layers:
                lin.weight.mul_(3.0)  # enough hidden spikes to exercise every layer
        out = net(x)
        (out.spikes.sum() + out.membrane.square().sum()).backward()
        return out, [p.grad for p in net.parameters()]

    out, grads = run()
    monkeypatch.setenv(event_driven.ENV_DISABLE, "1")
    ref, ref_grads = run()
    # a charge within rounding of θ may flip one spike; none does for these seeds
    torch.testing.assert_close(out.spikes, ref.spikes, rtol=0, atol=0)
    torch.testing.assert_close(out.membrane, ref.membrane, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_non_binary_input_takes_the_dense_path(kernels, monkeypatch):
    called = []
    monkeypatch.setattr(event_driven, "currents", lambda *a: called.append(a))
    net = get_backend("custom").build(NetworkSpec(sizes=(8, 600, 2)), seed=0)
    net(torch.rand(3, 4, 8))  # analogue input
    assert not called
