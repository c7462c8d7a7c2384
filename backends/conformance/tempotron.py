"""Backend conformance, Tempotron part: a backend that lists the ``tempotron`` rule must give
the unshunted potential ``V(t) = Σ_i w_i K(t − t_i)`` of :mod:`spikebench.backends.tempotron`
(checked against a direct evaluation of the kernel). Part of
:func:`spikebench.backends.conformance.check_backend`."""

from __future__ import annotations

from typing import Any

import torch

from spikebench.backends.base import Backend
from spikebench.backends.capabilities import Capability
from spikebench.backends.conformance.common import _fail, _resolve


def tempotron_times(batch: int, n_inputs: int, steps: int, *, seed: int = 0) -> torch.Tensor:
    """Spike times ``[B, N_in]`` in ``[0, steps)``: reals, some integers, some inf and NaN."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(batch, n_inputs, generator=gen, dtype=torch.float64) * (steps - 1)
    t[:, ::3] = torch.floor(t[:, ::3])
    t[0, -1] = float("inf")
    if batch > 1:
        t[1, 0] = float("nan")
    return t


def check_tempotron(backend: Backend | str, *, atol: float = 1e-9) -> None:
    """``build_tempotron`` potentials equal the direct kernel evaluation with the same weight."""
    from spikebench.backends.tempotron import DirectTempotron

    b = _resolve(backend)
    if Capability.TEMPOTRON not in b.capabilities:
        return
    for steps, tau, tau_s in ((30, 15.0, None), (17, 8.0, 5.0), (12, 3.0, 6.0)):
        layer = b.build_tempotron(10, 3, steps=steps, tau=tau, tau_s=tau_s, dtype=torch.float64,
                                  seed=0)
        if not isinstance(layer.weight, torch.nn.Parameter):
            _fail(f"{b.name}: Tempotron weight must be an nn.Parameter")
        if tuple(layer.weight.shape) != (3, 10):
            _fail(f"{b.name}: Tempotron weight shape {tuple(layer.weight.shape)} != (3, 10)")
        ref = DirectTempotron(10, 3, steps=steps, tau=tau, tau_s=tau_s).double()
        gen = torch.Generator().manual_seed(steps)
        with torch.no_grad():
            ref.weight.copy_(torch.randn(3, 10, generator=gen, dtype=torch.float64))
            layer.weight.copy_(ref.weight)
        times = tempotron_times(5, 10, steps, seed=steps)
        v, v_ref = layer(times), ref(times)
        if tuple(v.shape) != (steps, 5, 3):
            _fail(f"{b.name}: Tempotron output shape {tuple(v.shape)} != {(steps, 5, 3)}")
        err = float((v - v_ref).detach().abs().max())
        if err > atol * max(1.0, float(v_ref.detach().abs().max())):
            _fail(f"{b.name}: Tempotron potential differs from the kernel by {err:.3g} "
                  f"(tau={tau}, tau_s={tau_s}, steps={steps})")
        g = torch.autograd.grad(v[-1].sum(), layer.weight)[0]
        g_ref = torch.autograd.grad(v_ref[-1].sum(), ref.weight)[0]
        if float((g - g_ref).abs().max()) > atol * max(1.0, float(g_ref.abs().max())):
            _fail(f"{b.name}: Tempotron weight gradient differs from the kernel's")
        _check_prepare(b.name, layer, ref, times, atol)


def _check_prepare(name: str, layer: Any, ref: Any, times: torch.Tensor, atol: float) -> None:
    """``prepare(times)(idx)`` (with and without the rule's kernel matrix) equals
    ``forward(times[idx])``, also after the weights change (it must read them per call)."""
    from spikebench.backends.tempotron import psp_kernel

    grid = torch.arange(ref.steps, dtype=torch.float64)
    kernel = psp_kernel(grid[:, None, None] - times[None].double(), ref.tau, ref.tau_s)
    idx = torch.tensor([3, 0, 4, 3])
    with torch.no_grad():
        for prepared in (layer.prepare(times), layer.prepare(times, kernel)):
            for _ in range(2):
                v, v_ref = prepared(idx), layer(times[idx])
                if tuple(v.shape) != tuple(v_ref.shape):
                    _fail(f"{name}: Tempotron prepare(times)(idx) has shape {tuple(v.shape)}, "
                          f"forward(times[idx]) {tuple(v_ref.shape)}")
                err = float((v - v_ref).abs().max())
                if err > atol * max(1.0, float(v_ref.abs().max())):
                    _fail(f"{name}: Tempotron prepare(times)(idx) differs from "
                          f"forward(times[idx]) by {err:.3g}")
                layer.weight.mul_(-0.5)  # a prepared input must follow the weights
