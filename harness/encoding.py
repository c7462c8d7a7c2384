"""Encoders: standardised features ``[B, F]`` -> input ``[T, B, F]`` for a spiking network.

- ``direct``:  x[t] = g·f                       (the same current every step)
- ``rate``:    x[t] ~ Bernoulli(σ(g·f))          (independent draws each step)
- ``latency``: one spike at t_f = round((1 − σ(g·f)) (T − 1))   (strong features fire early)

``σ`` is the logistic function, ``g`` the ``gain``. Random draws take a ``torch.Generator`` so
evaluation is reproducible.
"""

from __future__ import annotations

import torch

ENCODINGS = ("direct", "rate", "latency")


def latency_times(x: torch.Tensor, steps: int, gain: float = 1.0) -> torch.Tensor:
    """Time-to-first-spike of each feature, ``[B, F]`` floats in ``[0, steps-1]``."""
    return torch.round((1.0 - torch.sigmoid(gain * x)) * (steps - 1))


def encode(
    x: torch.Tensor,
    kind: str,
    steps: int,
    *,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Encode ``x`` ``[B, F]`` as ``[steps, B, F]`` (see the module docstring)."""
    if kind == "direct":
        return (gain * x).unsqueeze(0).expand(steps, *x.shape)
    if kind == "rate":
        p = torch.sigmoid(gain * x).unsqueeze(0).expand(steps, *x.shape)
        u = torch.rand(p.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (u < p).to(x.dtype)
    if kind == "latency":
        t = latency_times(x, steps, gain).long()
        out = torch.zeros(steps, *x.shape, device=x.device, dtype=x.dtype)
        out.scatter_(0, t.unsqueeze(0), 1.0)
        return out
    raise ValueError(f"unknown encoding {kind!r}; choose one of {ENCODINGS}")
