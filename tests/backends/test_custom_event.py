"""The event-driven (accumulate-only) products of the custom engine equal the dense products up
to summation order: the dense path is the oracle, with a float32 tolerance."""

from __future__ import annotations

import pytest
import torch

from spikebench.backends import NetworkSpec, _lif_kernels, custom, event_driven, get_backend


@pytest.fixture(scope="module")
def kernels(fused_kernels) -> None:
    """The fused kernels, built (skips or fails as ``fused_kernels`` says when they cannot be)."""


def _spikes(shape, density, seed):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < density).float()


def test_event_products_equal_dense_products(kernels):
    """Every density from none to all, every width from one output to more than a block."""
    for density in (0.0, 0.02, 0.1, 0.3, 1.0):
        for n_out in (1, 2, 7, 130, 512):
            x = _spikes((37, 65), density, n_out)
            gen = torch.Generator().manual_seed(1)
            w, b = torch.randn(n_out, 65, generator=gen), torch.randn(n_out, generator=gen)
            g = torch.randn(37, n_out, generator=gen)
            case = f"density {density}, {n_out} outputs"
            for got, want in ((event_driven.currents(x, w, b), torch.addmm(b, x, w.t())),
                              (event_driven.currents(x, w, None), x @ w.t()),
                              (event_driven.weight_grad(g, x), g.t() @ x)):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5,
                                           msg=lambda m, c=case: f"{c}: {m}")


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
    """Analogue input into a layer wide enough for event-driven products (600 outputs) is not
    spikes: on the default path (the whole-network C++ pass, which measures the input density
    itself) and on the layer loop, the products stay dense and the results equal those of an
    all-dense run bit for bit (the event-driven product would add a whole weight row per
    non-zero input); sparse spikes into the same network do go event-driven."""
    spec = NetworkSpec(sizes=(8, 600, 2))
    analogue = torch.rand(3, 4, 8, generator=torch.Generator().manual_seed(0)) + 0.01
    sparse = _spikes((3, 4, 8), 0.05, 1)
    assert custom.WHOLE_NETWORK_PASS and _lif_kernels.network_usable(analogue)
    # per C++ pass: whether each layer's weight gradient goes event-driven, decided like its
    # forward product from the input density the pass measured (-1: not binary)
    events: list[list[bool]] = []
    network_forward = _lif_kernels.network_forward

    def recording(*args, **kwargs):
        out = network_forward(*args, **kwargs)
        events.append([bool(e) for e in out[3]])
        return out

    monkeypatch.setattr(_lif_kernels, "network_forward", recording)

    def run(x, *, whole=True, dense=False):
        with monkeypatch.context() as m:
            m.setattr(custom, "WHOLE_NETWORK_PASS", whole)
            if dense:
                m.setenv(event_driven.ENV_DISABLE, "1")
            net = get_backend("custom").build(spec, seed=0)
            with torch.no_grad():
                net.layers[0].weight.mul_(3.0)  # hidden spikes reach the output
            out = net(x)
            return out.membrane, torch.stack(out.layer_spike_counts)

    reference = run(analogue, dense=True)
    assert float(reference[1][0]) > 0
    events.clear()
    for whole in (True, False):
        got = run(analogue, whole=whole)
        assert torch.equal(got[0], reference[0]) and torch.equal(got[1], reference[1]), whole
    assert events == [[False, False]]  # the C++ pass ran once (whole=True) and stayed dense
    events.clear()
    run(sparse)
    assert events == [[True, False]]  # the same pass takes sparse spikes event-driven
    w = torch.randn(600, 8, generator=torch.Generator().manual_seed(2))
    flat = analogue.reshape(-1, 8)
    assert not torch.allclose(event_driven.currents(flat, w, None), flat @ w.t(), atol=1e-3)
