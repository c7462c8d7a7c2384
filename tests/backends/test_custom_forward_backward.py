"""The custom engine's fused training pass (``forward_backward`` without an autograd node for the
network) gives exactly what ``loss.backward()`` gives; the surrogate rule and the benchmark use
it; the conformance kit catches a fused pass that is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikebench.backends import NetworkSpec, custom, get_backend
from spikebench.backends.base import autograd_forward_backward, forward_backward
from spikebench.backends.conformance import check_forward_backward
from spikebench.backends.custom import CustomBackend, CustomNetwork
from spikebench.harness.rules.surrogate import spike_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(spec: NetworkSpec) -> tuple[CustomNetwork, CustomNetwork]:
    backend = get_backend("custom")
    return (backend.build(spec, device=torch.device("cpu"), seed=0),
            backend.build(spec, device=torch.device("cpu"), seed=0))


def _batch(steps: int, batch: int, features: int, density: float, binary: bool):
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, batch, features, generator=gen) < density).float()
    if not binary:
        x = x * torch.rand(x.shape, generator=gen) * 3
    return x, torch.randint(0, 2, (batch,), generator=gen)


@pytest.mark.parametrize("loss", ["count", "membrane", "tet"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("sizes,density,binary", [
    ((12, 16, 2), 0.5, False),
    ((64, 32, 24, 2), 0.3, True),
    ((64, 512, 2), 0.05, True),  # sparse binary input: event-driven products on the way
], ids=["analog", "three-layers", "event-driven"])
def test_fused_pass_equals_loss_backward_bit_for_bit(loss, reset, sizes, density, binary):
    fused, plain = _pair(NetworkSpec(sizes=sizes, reset=reset))
    x, y = _batch(9, 16, sizes[0], density, binary)
    weight = torch.tensor([0.3, 0.7])

    def loss_fn(spikes, membrane):
        return spike_loss(spikes, membrane, y, loss, weight=weight, lam=1e-3, phi=1.0)

    for _ in range(2):  # the second pass accumulates into .grad, as loss.backward() does
        out0, loss0 = forward_backward(fused, x, loss_fn)
        out1, loss1 = autograd_forward_backward(plain, x, loss_fn)
        assert torch.equal(loss0, loss1)
        assert torch.equal(out0.spikes, out1.spikes)
        assert torch.equal(out0.membrane, out1.membrane)
        for p0, p1 in zip(fused.parameters(), plain.parameters()):
            assert p0.grad is not None and torch.equal(p0.grad, p1.grad)
            assert p0.grad.stride() == p0.stride()


def test_no_autograd_node_for_the_network_on_the_fused_path(monkeypatch):
    calls = []
    monkeypatch.setattr(custom.LIFNetworkFunction, "apply",
                        lambda *a: calls.append(a) or pytest.fail("autograd node used"))
    net, _ = _pair(NetworkSpec(sizes=(8, 6, 2)))
    x, y = _batch(5, 4, 8, 0.5, True)
    forward_backward(net, x, lambda s, h: torch.nn.functional.cross_entropy(s.sum(0), y))
    assert not calls and all(p.grad is not None for p in net.parameters())


def test_an_input_that_needs_a_gradient_takes_autograd():
    net, _ = _pair(NetworkSpec(sizes=(8, 6, 2)))
    x = _batch(5, 4, 8, 0.5, False)[0].requires_grad_()
    forward_backward(net, x, lambda s, h: h.square().sum())
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_surrogate_rule_trains_identically_on_the_fused_path(monkeypatch):
    from spikebench.harness.rules import FitContext, Split, get_rule
    from spikebench.harness.space import default_values

    rng = np.random.default_rng(0)
    y = (rng.random(120) < 0.4).astype(np.int64)
    X = rng.normal(0, 1, (120, 6)).astype(np.float32)
    X[:, :3] += 1.5 * y[:, None]
    train, val = Split(X[:80], y[:80], np.arange(80)), Split(X[80:], y[80:], np.arange(40))
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": "rate", "steps": 6, "hidden": 16, "epochs": 3, "lr": 1e-2}
    used = []

    def fit() -> np.ndarray:
        ctx = FitContext.for_validation(val, "roc_auc", backend=get_backend("custom"), seed=0)
        return rule.fit(train, val, params, ctx).predict_proba(val.X)

    original = custom.lif_network_forward_backward
    monkeypatch.setattr(custom, "lif_network_forward_backward",
                        lambda *a, **k: used.append(1) or original(*a, **k))
    fused = fit()
    assert used, "the surrogate rule did not take the engine's fused path"
    monkeypatch.setattr(CustomNetwork, "forward_backward", autograd_forward_backward)
    np.testing.assert_array_equal(fused, fit())


def test_bench_times_the_fused_path(monkeypatch):
    from spikebench.harness.bench import run_bench

    used = []
    original = custom.lif_network_forward_backward
    monkeypatch.setattr(custom, "lif_network_forward_backward",
                        lambda *a, **k: used.append(1) or original(*a, **k))
    run_bench(["custom"], batch=4, hidden=8, steps=3, repeats=1, warmup=0, threads=1)
    assert used


class _ForgetsTheBias(CustomNetwork):
    """A fused pass that leaves the first layer's bias gradient out."""

    def forward_backward(self, x, loss_fn):
        out, loss = super().forward_backward(x, loss_fn)
        self.layers[0].bias.grad = None
        return out, loss


class _Overwrites(CustomNetwork):
    """A fused pass that overwrites gradients instead of accumulating them."""

    def forward_backward(self, x, loss_fn):
        for p in self.parameters():
            p.grad = None
        return super().forward_backward(x, loss_fn)


@pytest.mark.parametrize("network,message", [
    (_ForgetsTheBias, "gradient of layers.0.bias differs"),
    (_Overwrites, "after accumulating a second pass"),
])
def test_the_kit_catches_a_wrong_fused_pass(network, message):
    class Broken(CustomBackend):
        name = "broken-fused"
        network_cls = network

    with pytest.raises(AssertionError, match=message):
        check_forward_backward(Broken())
    check_forward_backward(CustomBackend())  # the real engine passes
