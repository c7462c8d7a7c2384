"""What every conformance check shares: resolving the backend under test, failing with a
message, the spiking inputs and random weights of the checks, and the comparisons with the
reference engine (float64 exact spikes and close charges, float32 nearly all spikes, gradients
within a relative tolerance).
"""

from __future__ import annotations

from typing import Any, NoReturn

import torch

from spikebench.backends.base import Backend, NetworkSpec

#: Float64 tolerance on charges (``H``) against the reference.
ATOL64 = 1e-6
#: Relative tolerance on surrogate gradients (of the largest gradient entry) against the reference.
GRAD_RTOL = 1e-4
#: Float32: tolerated fraction of differing spikes, and charge tolerance where histories agree.
SPIKE_MISMATCH32 = 1e-3
ATOL32 = 1e-4
#: Float32: tolerated fraction of charges off by more than ``ATOL32`` (after a rare flipped spike).
CHARGE_MISMATCH32 = 0.01


def _resolve(backend: Backend | str) -> Backend:
    """A backend instance from an instance or a registered name (shared by the conformance
    modules)."""
    if isinstance(backend, Backend):
        return backend
    from spikebench.backends.registry import get_backend

    return get_backend(backend)


def _fail(msg: str) -> NoReturn:
    """A failed conformance check."""
    raise AssertionError(msg)


def spiking_input(steps: int, batch: int, features: int, *, seed: int = 0, p: float = 0.5,
                  dtype: torch.dtype = torch.float64, device: Any = "cpu") -> torch.Tensor:
    """Bernoulli(``p``) spike input ``[T, B, F]`` from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, features, generator=gen) < p).to(dtype=dtype, device=device)


def random_weights(spec: NetworkSpec, *, seed: int = 0, scale: float = 1.0,
                   dtype: torch.dtype = torch.float64
                   ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Real-valued weights ``N(0, scale²)`` (biases ``N(0, (scale/4)²)``) strong enough that a
    Bernoulli(0.5) input makes the layers spike at a moderate rate."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for a, b in zip(spec.sizes[:-1], spec.sizes[1:]):
        w = torch.randn(b, a, generator=gen, dtype=torch.float64) * scale * spec.threshold
        bias = (torch.randn(b, generator=gen, dtype=torch.float64) * scale * spec.threshold / 4
                if spec.bias else None)
        out.append((w.to(dtype), None if bias is None else bias.to(dtype)))
    return out


def run_with_gradients(net: Any, x: torch.Tensor, *, seed: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
    """Forward ``x``; backward a random linear loss of spikes and charges (both gradient paths);
    returns ``(spikes, membrane, weight/bias grads in get_weights order)``."""
    out = net(x)
    gen = torch.Generator().manual_seed(seed + 1)
    cs = torch.randn(out.spikes.shape, generator=gen, dtype=torch.float64).to(out.spikes)
    cm = torch.randn(out.membrane.shape, generator=gen, dtype=torch.float64).to(out.membrane)
    loss = (out.spikes * cs).sum() + 0.1 * (out.membrane * cm).sum() + out.spikes.sum(0).square(
    ).sum() * 0.05
    params = _ordered_params(net)
    grads = torch.autograd.grad(loss, [p for p in params if p is not None], allow_unused=True)
    it = iter(grads)
    full = [None if p is None else next(it) for p in params]
    return out.spikes.detach(), out.membrane.detach(), full


def _ordered_params(net: Any) -> list[torch.Tensor | None]:
    """Parameters matching ``get_weights`` order, found by identity of values (``W``, ``b``)."""
    weights = net.get_weights()
    params = [p for p in net.parameters()]
    found: list[torch.Tensor | None] = []
    used: set[int] = set()
    for w, b in weights:
        for t in (w, b):
            if t is None:
                found.append(None)
                continue
            match = None
            for i, p in enumerate(params):
                if i not in used and p.shape == t.shape and torch.equal(p.detach(), t):
                    match = i
                    break
            if match is None:
                _fail("could not match get_weights() tensors to the network's parameters")
            used.add(match)
            found.append(params[match])
    return found


# -- individual checks -----------------------------------------------------------------------


def _check_float64(label: str, s0: torch.Tensor, m0: torch.Tensor, s1: torch.Tensor,
                   m1: torch.Tensor, tol: float) -> None:
    """float64: spikes must match exactly and charges to within ``tol`` (relative to max)."""
    if not torch.equal(s0, s1):
        n = int((s0 != s1).sum())
        _fail(f"{label}: {n} of {s0.numel()} output spikes differ")
    err = float((m0 - m1).abs().max()) if m0.numel() else 0.0
    if err > tol * max(1.0, float(m0.abs().max())):
        _fail(f"{label}: charge differs by {err:.3g} (atol {tol:g})")


def _check_float32(label: str, s0: torch.Tensor, m0: torch.Tensor, s1: torch.Tensor,
                   m1: torch.Tensor, tol: float) -> None:
    """float32: only small fractions of spikes and charges may differ."""
    differ = float((s0 != s1).double().mean()) if s0.numel() else 0.0
    if differ > SPIKE_MISMATCH32:
        _fail(f"{label}: {differ:.2%} of output spikes differ (> {SPIKE_MISMATCH32:.1%})")
    scale = max(1.0, float(m0.abs().max())) if m0.numel() else 1.0
    off = float(((m0 - m1).abs() > tol * scale).double().mean()) if m0.numel() else 0.0
    if off > CHARGE_MISMATCH32:
        _fail(f"{label}: {off:.2%} of charges differ by more than {tol:g} "
              f"(> {CHARGE_MISMATCH32:.0%}; a flipped spike changes later charges)")


def _check_gradients(label: str, g0, g1, grad_rtol: float) -> None:
    """Surrogate gradients agree to ``grad_rtol`` relative to the reference's largest one."""
    scale = max((float(g.abs().max()) for g in g0 if g is not None), default=0.0)
    for i, (a, c) in enumerate(zip(g0, g1)):
        if (a is None) != (c is None):
            _fail(f"{label}: gradient {i} is missing on one side")
        if a is None:
            continue
        err = float((a - c).abs().max())
        if err > grad_rtol * max(scale, 1e-12):
            what = f"layer {i // 2} {'weight' if i % 2 == 0 else 'bias'}"
            _fail(f"{label}: {what} gradient differs by {err:.3g} "
                  f"(max |grad| {scale:.3g}, rtol {grad_rtol:g})")
