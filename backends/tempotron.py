"""The Tempotron's post-synaptic potential kernel and a direct (framework-free) layer.

    K(s) = V0 (exp(-s/τ) - exp(-s/τs))  for s >= 0, else 0

``V0`` scales the kernel's peak to 1; the peak is at ``s* = τ τs ln(τ/τs) / (τ - τs)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from spikebench.backends.base import TempotronNetwork
from spikebench.errors import BackendError


def kernel_peak_time(tau: float, tau_s: float) -> float:
    """Time of the kernel's maximum, ``τ τs ln(τ/τs) / (τ - τs)``."""
    if tau <= 0 or tau_s <= 0 or tau == tau_s:
        raise BackendError(f"Tempotron needs tau > 0, tau_s > 0, tau != tau_s (got {tau}, {tau_s})")
    return tau * tau_s * math.log(tau / tau_s) / (tau - tau_s)


def kernel_v0(tau: float, tau_s: float) -> float:
    """Normalisation ``V0`` so that ``max K = 1``."""
    s = kernel_peak_time(tau, tau_s)
    return 1.0 / (math.exp(-s / tau) - math.exp(-s / tau_s))


def psp_kernel(s: torch.Tensor, tau: float, tau_s: float) -> torch.Tensor:
    """``K(s)``; zero for ``s < 0`` and for non-finite ``s`` (an afferent that never spiked)."""
    v0 = kernel_v0(tau, tau_s)
    valid = torch.isfinite(s) & (s >= 0)
    s0 = torch.where(valid, s, torch.zeros_like(s))
    k = v0 * (torch.exp(-s0 / tau) - torch.exp(-s0 / tau_s))
    return torch.where(valid, k, torch.zeros_like(k))


class DirectTempotron(nn.Module, TempotronNetwork):
    """Tempotron potential computed straight from the kernel: ``V = K(t - t_i) @ Wᵀ``."""

    weight: nn.Parameter

    def __init__(self, n_inputs: int, n_outputs: int, *, steps: int, tau: float = 15.0,
                 tau_s: float | None = None) -> None:
        super().__init__()
        self.steps, self.tau = int(steps), float(tau)
        self.tau_s = float(tau_s) if tau_s is not None else self.tau / 4
        kernel_v0(self.tau, self.tau_s)  # validates
        self.weight = nn.Parameter(torch.randn(n_outputs, n_inputs) * 0.01)

    def forward(self, spike_times: torch.Tensor) -> torch.Tensor:
        t = torch.arange(self.steps, device=spike_times.device, dtype=self.weight.dtype)
        k = psp_kernel(t[:, None, None] - spike_times[None].to(self.weight.dtype),
                       self.tau, self.tau_s)  # [T, B, N_in]
        return k @ self.weight.T

    def prepare(self, spike_times: torch.Tensor, kernel: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``V = K Wᵀ`` per call from the kernel matrix ``K(t − t_i)`` evaluated once (the
        rule's ``kernel`` when given: this layer's forward is exactly that kernel), instead of
        two exponentials per afferent, pattern and step on every call."""
        if kernel is None:
            t = torch.arange(self.steps, device=spike_times.device, dtype=self.weight.dtype)
            kernel = psp_kernel(t[:, None, None] - spike_times[None].to(self.weight.dtype),
                                self.tau, self.tau_s)
        fixed = kernel.to(self.weight.dtype)
        return lambda idx: fixed[:, idx] @ self.weight.T
