"""Event-driven (accumulate-only) products of the custom engine for binary spike inputs.

A layer's input ``x`` ``[T·B, F]`` is binary wherever it is spikes (every hidden layer; the first
layer under rate/latency encoding) and mostly zero. Then the two products of the layer that
touch ``x`` need no multiplications and only work in proportion to the spike count::

    I[r]   = b + Σ_{i: x[r,i] = 1} Wᵀ[i]        (forward: add the weight rows of active inputs)
    dWᵀ[i] = Σ_{r: x[r,i] = 1} gI[r]            (weight gradient gIᵀ x)

instead of ``R·F·N`` multiply-adds (:func:`spikebench.backends._lif_kernels.event_forward_` and
``event_weight_grad_``, fused C++). The input gradient ``gI W`` has no binary operand and stays
dense. Which product a layer uses is chosen per call from the measured spike density (the
previous layer's spike count, or one pass over the network input that also proves it binary),
with the crossovers measured on 2-core AVX2 CPUs against MKL's dense products (single thread,
``R = 3200``, ``F = 64``; a loaded shared machine, so the limits keep a margin): the forward
product alone wins from ``N ≥ 256`` outputs up to about 30 % density (hidden 512: 0.72 vs
1.89 ms at 5 %, 1.77 vs 1.93 ms at 30 %; hidden 256: 0.89 vs 0.98 ms at 30 %) and at
``N = 128`` below about 20 % (0.38 vs 0.57 ms at 10 %, 0.58 vs 0.45 ms at 30 %), the weight
gradient below about 15 % (0.72 vs 1.63 ms at 5 %, 2.70 vs 1.67 ms at 30 %); narrow layers
(``N`` = 2) always lose to the dense product. In the whole train step (64 → 512 → 2, T = 25,
batch 128, A/B in one process, dense path as ``SPIKEBENCH_NO_EVENT_DRIVEN=1``) the event-driven
path saved 12-14 % at 10 % input density and 14-23 % at 5 % (1-2 threads), and cost nothing at
30 % (the density pass is ~20 µs); the weight gradient only pays below ~8 % with two threads.

Rounding: the same terms as the dense product, summed in another order (ascending input index,
four weight rows at a time), so results differ from the dense path by a few ulps of the sums;
``tests/backends/test_custom_event.py`` holds them to the dense path as the oracle with a
tolerance. ``SPIKEBENCH_NO_EVENT_DRIVEN=1`` keeps every layer dense.
"""

from __future__ import annotations

import os

import torch

from spikebench.backends import _lif_kernels
from spikebench.backends._pool import POOL

ENV_DISABLE = "SPIKEBENCH_NO_EVENT_DRIVEN"
#: Forward products go event-driven below this input spike density (layers of >= 512 outputs)
FORWARD_MAX_DENSITY = 0.25
#: ... below this one for layers of 256-511 outputs ...
FORWARD_MAX_DENSITY_NARROW = 0.20
#: ... weight gradients below this one (at 10 % the event-driven weight gradient won with one
#: thread but lost with two: MKL's product halves, the accumulation scales less) ...
GRAD_MAX_DENSITY = 0.08
#: ... and only for layers with at least this many outputs (narrower layers never pay for the
#: density pass over their input: measured in the train step at hidden 128, 30 % input, the
#: pass cost more than the event-driven product could save).
MIN_OUTPUTS = 256


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "").strip() in ("", "0")


def input_density(x: torch.Tensor, count: torch.Tensor | None = None) -> float:
    """Spike density of a layer input ``x``: ``count / numel`` when the spike count is known
    (the input is another layer's spikes), else one pass over ``x`` that also checks it is
    binary (``-1``: not binary, or not a tensor the fused kernels take)."""
    if count is not None:
        return float(count) / max(x.numel(), 1)
    if not x.is_contiguous() or not _lif_kernels.usable(x):
        return -1.0
    return _lif_kernels.binary_density(x)


def limits(n_out: int) -> tuple[float, float]:
    """``(forward, weight gradient)`` input-density limits of a layer with ``n_out`` outputs:
    its products go event-driven below them (``0``: never). The one statement of the
    crossovers, read by :func:`use_forward`, :func:`use_grad` and the whole-network C++ pass
    (which measures the density itself)."""
    if n_out < MIN_OUTPUTS or not enabled():
        return 0.0, 0.0
    return (FORWARD_MAX_DENSITY if n_out >= 512 else FORWARD_MAX_DENSITY_NARROW,
            GRAD_MAX_DENSITY)


def use_forward(density: float, n_out: int) -> bool:
    """Whether the forward product of a layer with ``n_out`` outputs goes event-driven."""
    return 0.0 <= density < limits(n_out)[0]


def use_grad(density: float, n_out: int) -> bool:
    """Whether the weight gradient of a layer with ``n_out`` outputs goes event-driven."""
    return 0.0 <= density < limits(n_out)[1]


def currents(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``I = x Wᵀ + b`` (``[..., F]`` → ``[..., N]``) for binary ``x`` by accumulation."""
    flat = x.reshape(-1, x.shape[-1])
    out = POOL.empty((flat.shape[0], weight.shape[0]), x.dtype, x.device)
    w_t = weight.detach().t().contiguous()
    b = bias.detach() if bias is not None else None
    _lif_kernels.event_forward_(flat, w_t, b, out)
    return out.view(*x.shape[:-1], weight.shape[0])


def weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dW = gIᵀ x`` (``[N, F]``) for binary ``x`` ``[R, F]``, ``grad`` ``[R, N]`` contiguous."""
    out = torch.empty(x.shape[-1], grad.shape[-1], dtype=grad.dtype, device=grad.device)
    _lif_kernels.event_weight_grad_(x.reshape(-1, x.shape[-1]), grad, out)
    return out.t()
