"""The rules' fast paths (STDP traces and updates as matrix products, the Tempotron potential from
the kernel matrix, the two-unit delta rule) equal their reference forms within float rounding."""

from __future__ import annotations

import math

import pytest
import torch

from spikebench.harness.rules.active import Readout
from spikebench.harness.rules.base import class_weights
from spikebench.harness.rules.stdp import decay_matrix, spike_traces, stdp_update

DTYPES = (torch.float32, torch.float64)


def spike_traces_loop(spikes: torch.Tensor, tau: float) -> torch.Tensor:
    """The oracle of ``spike_traces``: ``x[t] = e^{−1/τ} x[t−1] + s[t]``, step by step."""
    decay = math.exp(-1.0 / tau)
    traces = torch.empty_like(spikes)
    acc = torch.zeros_like(spikes[0])
    for t in range(spikes.shape[0]):
        acc = acc * decay + spikes[t]
        traces[t] = acc
    return traces


def stdp_update_loop(pre: torch.Tensor, post: torch.Tensor, *, a_plus: float, a_minus: float,
                     tau_plus: float, tau_minus: float) -> torch.Tensor:
    """The oracle of ``stdp_update``: ``A+ Σ_t s_post[t] x_pre[t] − A− Σ_t s_pre[t]
    e^{−1/τ−} x_post[t−1]`` with step-by-step traces (the module docstring's first form)."""
    x_pre = spike_traces_loop(pre, tau_plus)
    x_post = spike_traces_loop(post, tau_minus)
    x_post_before = math.exp(-1.0 / tau_minus) * torch.cat([torch.zeros_like(x_post[:1]),
                                                            x_post[:-1]])
    potentiation = torch.einsum("tbj,tbi->ji", post, x_pre)
    depression = torch.einsum("tbj,tbi->ji", x_post_before, pre)
    return a_plus * potentiation - a_minus * depression


def delta_rule_softmax(readout: Readout, r: torch.Tensor, y: torch.Tensor, *, lr: float,
                       epochs: int) -> None:
    """The oracle of ``Readout.train``: the softmax form of the active rule's module docstring,
    ``ΔV_cj = η Σ_b w_{y_b} (1[y_b = c] − P_c(b)) r_j(b) / n``, ``Δc_c = η mean(error_c)``."""
    w = torch.as_tensor(class_weights(y.numpy()), dtype=r.dtype)[y]
    onehot = torch.nn.functional.one_hot(y, 2).to(r.dtype)
    for _ in range(epochs):
        err = (onehot - torch.softmax(readout.logits(r), 1)) * w[:, None]  # [n, 2]
        readout.weight += lr * err.T @ r / len(y)
        readout.bias += lr * err.mean(0)


def _trains(shape, p, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < p).to(dtype)


def test_traces_equal_the_loop():
    for dtype in DTYPES:
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        for steps in (1, 2, 17, 30):
            s = _trains((steps, 5, 7), 0.3, steps, dtype)
            torch.testing.assert_close(spike_traces(s, 3.5), spike_traces_loop(s, 3.5),
                                       rtol=tol, atol=tol, msg=lambda m, d=dtype, t=steps:
                                       f"{d}, T = {t}: {m}")


def test_update_equals_the_loop():
    kw = dict(a_plus=0.05, a_minus=0.04, tau_plus=3.0, tau_minus=6.0)
    for dtype in DTYPES:
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        for steps in (1, 3, 25):
            pre = _trains((steps, 32, 74), 0.3, 1, dtype)
            post = _trains((steps, 32, 50), 0.1, 2, dtype)
            torch.testing.assert_close(stdp_update(pre, post, **kw),
                                       stdp_update_loop(pre, post, **kw), rtol=tol, atol=tol,
                                       msg=lambda m, d=dtype, t=steps: f"{d}, T = {t}: {m}")


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
    softmax form of the delta rule (:func:`delta_rule_softmax`) within float64 rounding."""
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
        delta_rule_softmax(ref, r, y, lr=0.3, epochs=40)
    torch.testing.assert_close(fast.weight, ref.weight, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.bias, ref.bias, rtol=1e-10, atol=1e-12)
