"""The whole-network C++ pass (every layer of the forward and backward pass in one call) gives
the layer-by-layer Python loop's results bit for bit: the loop around the same kernels is the
oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikebench.backends import NetworkSpec, _lif_kernels, custom, get_backend


@pytest.fixture(scope="module")
def kernels(fused_kernels) -> None:
    """The fused kernels, built (skips or fails as ``fused_kernels`` says when they cannot be)."""


def _train_pass(spec: NetworkSpec, x: torch.Tensor, *, whole: bool, loss: str, bias_grad: bool,
                input_grad: bool, dtype: torch.dtype) -> list[torch.Tensor | None]:
    """Outputs, spike counts and every gradient of one forward and backward pass."""
    old = custom.WHOLE_NETWORK_PASS
    custom.WHOLE_NETWORK_PASS = whole
    try:
        net = get_backend("custom").build(spec, seed=0, dtype=dtype)
        with torch.no_grad():
            for lin in net.layers:
                lin.weight.mul_(3.0)  # enough spikes in every layer
        for lin in net.layers:
            if lin.bias is not None:
                lin.bias.requires_grad_(bias_grad)
        xx = x.to(dtype).requires_grad_(input_grad)
        out = net(xx)
        if loss == "counts":  # autograd passes an expanded (stride 0 over time) gradient
            value = out.spikes.sum(0).square().sum()
        elif loss == "membrane":
            value = out.membrane.square().mean()
        else:
            value = (out.spikes * out.membrane.detach()).sum() + out.membrane.mean()
        value.backward()
        return [out.spikes, out.membrane, torch.stack(out.layer_spike_counts), xx.grad,
                *(p.grad for p in net.layers.parameters())]
    finally:
        custom.WHOLE_NETWORK_PASS = old


@settings(max_examples=40, deadline=None)
@given(sizes=st.sampled_from([(3, 2), (5, 7, 2), (9, 6, 4, 3), (64, 300, 2), (32, 520, 260, 2)]),
       reset=st.sampled_from(["subtract", "zero", "none"]),
       surrogate=st.sampled_from(["fast_sigmoid", "arctan", "sigmoid"]),
       density=st.sampled_from([0.0, 0.03, 0.3, 1.0]),
       analogue=st.booleans(), bias=st.booleans(), bias_grad=st.booleans(),
       input_grad=st.booleans(), transposed=st.booleans(),
       loss=st.sampled_from(["counts", "membrane", "both"]),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_whole_network_pass_equals_the_layer_loop(kernels, sizes, reset, surrogate, density,
                                                  analogue, bias, bias_grad, input_grad,
                                                  transposed, loss, dtype, seed):
    """Bit for bit, for every reset, surrogate, loss, bias and gradient combination, event-driven
    layers (widths >= 256 with sparse spikes) and dense ones, binary and analogue inputs, and a
    non-contiguous input."""
    spec = NetworkSpec(sizes=sizes, beta=0.85, threshold=0.7, reset=reset, surrogate=surrogate,
                       slope=4.0, bias=bias)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(6, 5, sizes[0], generator=gen) < density).float()
    if analogue:
        x = x * torch.rand(x.shape, generator=gen) * 2
    if transposed:
        x = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    args = dict(loss=loss, bias_grad=bias_grad, input_grad=input_grad, dtype=dtype)
    whole = _train_pass(spec, x, whole=True, **args)
    loop = _train_pass(spec, x, whole=False, **args)
    for a, b in zip(whole, loop, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_the_whole_network_pass_is_what_runs(kernels, monkeypatch):
    """Guards the test above against comparing the loop with itself."""
    calls = []
    monkeypatch.setattr(custom, "_forward_per_layer",
                        lambda *a: calls.append("loop") or pytest.fail("layer loop ran"))
    real = _lif_kernels.network_backward
    monkeypatch.setattr(_lif_kernels, "network_backward",
                        lambda *a: calls.append("backward") or real(*a))
    net = get_backend("custom").build(NetworkSpec(sizes=(4, 8, 2)), seed=0)
    net(torch.rand(3, 2, 4)).membrane.sum().backward()
    assert calls == ["backward"]
    with torch.no_grad():
        net(torch.rand(3, 2, 4))


def test_pooled_outputs_kept_by_the_caller_are_never_overwritten(kernels):
    net = get_backend("custom").build(NetworkSpec(sizes=(5, 7, 3)), seed=0)
    kept = net((torch.rand(4, 2, 5) < 0.5).float())
    snapshot = kept.spikes.clone(), kept.membrane.clone()
    with torch.no_grad():
        view = net(torch.rand(4, 2, 5) * 3).membrane[1:]
        view_copy = view.clone()
    for _ in range(3):
        out = net(torch.rand(4, 2, 5) * 3)
        out.spikes.sum().backward()
        with torch.no_grad():
            net(torch.rand(4, 2, 5) * 3)
    assert torch.equal(kept.spikes, snapshot[0]) and torch.equal(kept.membrane, snapshot[1])
    assert torch.equal(view, view_copy)
    _lif_kernels.network_clear()  # frees the pool; what callers hold stays valid
    assert torch.equal(kept.membrane, snapshot[1])


@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (1, 1, 4)])
def test_whole_network_pass_equals_the_layer_loop_on_edge_shapes(kernels, shape):
    spec = NetworkSpec(sizes=(4, 5, 2))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2
    args = dict(loss="both", bias_grad=True, input_grad=True, dtype=torch.float32)
    whole = _train_pass(spec, x, whole=True, **args)
    loop = _train_pass(spec, x, whole=False, **args)
    for a, b in zip(whole, loop, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
