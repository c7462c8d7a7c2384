"""The custom engine: a hand-written BPTT that equals autograd through the pinned equation."""

from __future__ import annotations

import math

import pytest
import torch

from spikebench.backends import NetworkSpec, _lif_kernels, get_backend
from spikebench.backends.conformance import random_weights, spiking_input
from spikebench.backends.custom import WORKSPACE, lif_layer


@pytest.fixture(autouse=True, params=["fused", "torchscript"])
def engine_path(request, monkeypatch):
    """Every test here runs on both CPU paths: the fused C++ kernels (the default) and the
    TorchScript step loops (the fallback, forced with SPIKEBENCH_NO_CPP_KERNELS=1)."""
    if request.param == "torchscript":
        monkeypatch.setenv(_lif_kernels.ENV_DISABLE, "1")
    else:
        monkeypatch.delenv(_lif_kernels.ENV_DISABLE, raising=False)
        request.getfixturevalue("fused_kernels")
    return request.param


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, kind, k):
        ctx.save_for_backward(z)
        ctx.kind, ctx.k = kind, k
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        k = ctx.k
        if ctx.kind == "fast_sigmoid":
            d = 1 / (1 + k * z.abs()) ** 2
        elif ctx.kind == "arctan":
            d = (k / 2) / (1 + (math.pi / 2 * k * z) ** 2)
        else:
            s = torch.sigmoid(k * z)
            d = k * s * (1 - s)
        return g * d, None, None


def naive_network(spec, weights, x):
    """The pinned equation, step by step, differentiated by autograd (reset not detached)."""
    s_seq = x
    for w, b in weights:
        cur = s_seq @ w.T + (0 if b is None else b)
        u = torch.zeros_like(cur[0])
        spikes, charges = [], []
        for t in range(cur.shape[0]):
            h = spec.beta * u + cur[t]
            s = _Spike.apply(h - spec.threshold, spec.surrogate, spec.slope)
            u = {"subtract": h - spec.threshold * s, "zero": h * (1 - s), "none": h}[spec.reset]
            spikes.append(s)
            charges.append(h)
        s_seq = torch.stack(spikes)
    return s_seq, torch.stack(charges)


def _loss(spikes, membrane, gen):
    cs = torch.randn(spikes.shape, generator=gen, dtype=spikes.dtype)
    cm = torch.randn(membrane.shape, generator=gen, dtype=membrane.dtype)
    return (spikes * cs).sum() + (membrane * cm).sum() + spikes.sum(0).square().sum()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "arctan", "sigmoid"])
def test_forward_and_gradients_equal_autograd_reference(reset, surrogate):
    """For no leak (β = 0), a typical one and none (β = 1)."""
    for beta in (0.0, 0.85, 1.0):
        spec = NetworkSpec(sizes=(7, 11, 5, 3), beta=beta, threshold=0.7, reset=reset,
                           surrogate=surrogate, slope=4.0)
        weights = random_weights(spec, seed=1, scale=2.0)
        x = spiking_input(9, 5, 7, seed=2)
        net = get_backend("custom").build(spec, dtype=torch.float64)
        net.set_weights(weights)
        out = net(x)
        ref_w = [(w.clone().requires_grad_(), b.clone().requires_grad_()) for w, b in weights]
        ref_s, ref_h = naive_network(spec, ref_w, x)
        case = f"beta {beta}"
        assert 0 < float(ref_s.detach().mean()) < 1, (
            f"{case}: the test input must make the output layer spike")
        assert torch.equal(out.spikes, ref_s), case
        torch.testing.assert_close(out.membrane, ref_h, atol=1e-12, rtol=0,
                                   msg=lambda m, c=case: f"{c}: {m}")
        g = torch.autograd.grad(_loss(out.spikes, out.membrane,
                                      torch.Generator().manual_seed(0)), list(net.parameters()))
        g_ref = torch.autograd.grad(_loss(ref_s, ref_h, torch.Generator().manual_seed(0)),
                                    [t for wb in ref_w for t in wb])
        for a, b in zip(g, g_ref):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10,
                                       msg=lambda m, c=case: f"{c}: {m}")


def test_membrane_only_and_input_gradients():
    spec = NetworkSpec(sizes=(4, 6, 2), beta=0.9, threshold=0.5, reset="zero", slope=3.0)
    weights = random_weights(spec, seed=4)
    x = spiking_input(6, 3, 4, seed=5).requires_grad_()
    w, b = weights[0]
    _, h = lif_layer(x, w.clone().requires_grad_(), b, beta=0.9, threshold=0.5, reset="zero",
                     surrogate="arctan", slope=3.0)
    (gx,) = torch.autograd.grad(h.mean(), x)
    x2 = x.detach().clone().requires_grad_()
    _, h_ref = naive_network(NetworkSpec(sizes=(4, 6), beta=0.9, threshold=0.5, reset="zero",
                                         surrogate="arctan", slope=3.0), [(w, b)], x2)
    (gx_ref,) = torch.autograd.grad(h_ref.mean(), x2)
    torch.testing.assert_close(gx, gx_ref, atol=1e-12, rtol=0)


def test_inference_builds_no_graph_and_matches_training_path():
    net = get_backend("custom").build(NetworkSpec(sizes=(5, 8, 2)), seed=0)
    x = spiking_input(7, 3, 5, dtype=torch.float32)
    train = net(x)
    with torch.no_grad():
        infer = net(x)
    assert train.spikes.requires_grad and not infer.spikes.requires_grad
    assert torch.equal(train.spikes, infer.spikes) and torch.equal(train.membrane, infer.membrane)


def test_two_forwards_one_backward_share_no_buffers():
    """Gradient accumulation over two batches: the reused backward buffers must not leak."""
    spec = NetworkSpec(sizes=(5, 8, 2), beta=0.8, threshold=0.6)
    net = get_backend("custom").build(spec, dtype=torch.float64)
    net.set_weights(random_weights(spec, seed=0))
    xa, xb = spiking_input(6, 3, 5, seed=1), spiking_input(6, 3, 5, seed=2)
    loss = net(xa).membrane.square().sum() + net(xb).spikes.sum(0).square().sum()
    both = torch.autograd.grad(loss, list(net.parameters()))
    sep = [torch.autograd.grad(f, list(net.parameters())) for f in (
        net(xa).membrane.square().sum(), net(xb).spikes.sum(0).square().sum())]
    for g, a, b in zip(both, *sep):
        torch.testing.assert_close(g, a + b)
    WORKSPACE.clear()


def test_single_step_and_batch_of_one():
    net = get_backend("custom").build(NetworkSpec(sizes=(3, 4, 2)), seed=0)
    out = net(spiking_input(1, 1, 3, dtype=torch.float32))
    assert out.spikes.shape == (1, 1, 2)
    out.membrane.sum().backward()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda_and_matches_cpu():
    spec = NetworkSpec(sizes=(6, 9, 3), beta=0.9, threshold=0.7)
    weights = random_weights(spec, seed=0)
    x = spiking_input(8, 4, 6)
    outs = []
    for dev in ("cpu", "cuda"):
        net = get_backend("custom").build(spec, device=dev, dtype=torch.float64)
        net.set_weights(weights)
        out = net(x.to(dev))
        grads = torch.autograd.grad(out.membrane.sum() + out.spikes.sum(), list(net.parameters()))
        outs.append((out.spikes.cpu(), out.membrane.detach().cpu(), [g.cpu() for g in grads]))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
    for a, b in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, b)
