"""The from-scratch LIF engine: plain PyTorch, the reference every other backend is checked against.

Implements exactly the equations of :mod:`spikebench.backends.base`. The input currents of all
time steps are one matrix product per layer; only the recurrence runs step by step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from spikebench.backends.base import Backend, NetworkOutput, NetworkSpec, SpikingNetwork


class _Spike(torch.autograd.Function):
    """Heaviside forward Θ(z) = [z > 0]; surrogate derivative backward (see ``SURROGATES``)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, kind: str, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.kind, ctx.slope = kind, slope
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        return grad * surrogate_derivative(z, ctx.kind, ctx.slope), None, None


def surrogate_derivative(z: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
    """dS/dz of the named surrogate at ``z = H - θ``."""
    if kind == "fast_sigmoid":
        return 1.0 / (slope * z.abs() + 1.0) ** 2
    if kind == "arctan":
        return (slope / 2) / (1 + (math.pi / 2 * slope * z) ** 2)
    if kind == "sigmoid":
        s = torch.sigmoid(slope * z)
        return slope * s * (1 - s)
    raise ValueError(f"unknown surrogate {kind!r}")


def spike(z: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
    return _Spike.apply(z, kind, slope)


class CustomNetwork(nn.Module, SpikingNetwork):
    """Feed-forward LIF network; ``forward`` takes ``[T, B, F]`` and returns :class:`NetworkOutput`."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=spec.bias) for a, b in zip(spec.sizes[:-1], spec.sizes[1:])
        )

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        spec = self.spec
        counts = []
        h_seq = x
        for layer in self.layers:
            current = layer(h_seq)  # [T, B, out]: all time steps in one matrix product
            u = torch.zeros_like(current[0])
            spikes, charges = [], []
            for t in range(current.shape[0]):
                h = spec.beta * u + current[t]
                s = spike(h - spec.threshold, spec.surrogate, spec.slope)
                if spec.reset == "subtract":
                    u = h - spec.threshold * s
                elif spec.reset == "zero":
                    u = h * (1 - s)
                else:
                    u = h
                spikes.append(s)
                charges.append(h)
            h_seq = torch.stack(spikes)
            counts.append(h_seq.sum())
        return NetworkOutput(spikes=h_seq, membrane=torch.stack(charges), layer_spike_counts=counts)

    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [
            (lin.weight.detach().clone(), None if lin.bias is None else lin.bias.detach().clone())
            for lin in self.layers
        ]

    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        with torch.no_grad():
            for lin, (w, b) in zip(self.layers, weights, strict=True):
                lin.weight.copy_(w)
                if lin.bias is not None and b is not None:
                    lin.bias.copy_(b)


class CustomBackend(Backend):
    """spikebench's own engine (no framework dependency beyond PyTorch)."""

    name = "custom"
    framework = "torch"
    rules = frozenset({"surrogate"})

    def build(self, spec, *, device="cpu", dtype=None, seed=None) -> CustomNetwork:
        self.check_supported(spec)
        if seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = CustomNetwork(spec)
        else:
            net = CustomNetwork(spec)
        return net.to(device=device, dtype=dtype or torch.float32)
