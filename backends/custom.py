"""The from-scratch LIF engine: plain PyTorch, written for speed; the reference every backend is
checked against.

It implements exactly the pinned equation of :mod:`spikebench.backends.base` (per layer, with
``I[t] = W x[t] + b``)::

    H[t] = beta U[t-1] + I[t]            U[-1] = 0
    S[t] = Θ(H[t] - θ)                   Θ(z) = [z > 0]
    U[t] = H[t] - θ S[t]  |  H[t] (1 - S[t])  |  H[t]        (subtract | zero | none)

How it is fast (one autograd node per network, a hand-written backward through time, fused
C++ kernels on CPU with TorchScript loops as the bit-identical fallback) is explained in
``docs/performance.md``.

The device is taken from the input and parameters, so the same code runs on CUDA.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from spikebench.backends import _lif_kernels, event_driven
from spikebench.backends._pool import POOL
from spikebench.backends.base import (
    LinearLayersWeights,
    NetworkOutput,
    NetworkSpec,
    SpikingNetwork,
)

_RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


def surrogate_derivative(z: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
    """dS/dz of the named surrogate at ``z = H - θ`` (a new tensor; ``z`` is not modified).

    fast_sigmoid ``1/(1+k|z|)²``, arctan ``(k/2)/(1+(π/2·k·z)²)``, sigmoid ``kσ(kz)(1-σ(kz))``.
    """
    if kind == "fast_sigmoid":
        return z.abs().mul_(slope).add_(1.0).square_().reciprocal_()
    if kind == "arctan":
        return z.mul(math.pi / 2 * slope).square_().add_(1.0).reciprocal_().mul_(slope / 2)
    if kind == "sigmoid":
        s = z.mul(slope).sigmoid_()
        return s.mul_(torch.rsub(s, 1.0)).mul_(slope)
    raise ValueError(f"unknown surrogate {kind!r}")


def _surrogate_derivative_(z: torch.Tensor, kind: str, slope: float) -> torch.Tensor:
    """In-place variant of :func:`surrogate_derivative` (overwrites and returns ``z``)."""
    if kind == "fast_sigmoid":
        return z.abs_().mul_(slope).add_(1.0).square_().reciprocal_()
    if kind == "arctan":
        return z.mul_(math.pi / 2 * slope).square_().add_(1.0).reciprocal_().mul_(slope / 2)
    if kind == "sigmoid":
        s = z.mul_(slope).sigmoid_()
        return s.mul_(torch.rsub(s, 1.0)).mul_(slope)
    raise ValueError(f"unknown surrogate {kind!r}")


def _recurrence_py(charge: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float,
                   reset: int) -> None:
    """The step loop of :func:`lif_recurrence_` (``reset``: 0 subtract, 1 zero, 2 none)."""
    hs = charge.unbind(0)
    steps = len(hs)
    if reset == 0:
        c = -beta * threshold
        s = torch.empty_like(hs[0])  # one cache-resident step buffer; spikes written at the end
        for t in range(steps - 1):
            h = hs[t]
            torch.gt(h, threshold, out=s)
            # U[t] = H[t] - θ S[t];  H[t+1] = I[t+1] + beta U[t]
            hs[t + 1].add_(h, alpha=beta).add_(s, alpha=c)
        torch.gt(charge, threshold, out=spikes)
    elif reset == 1:
        keep = torch.empty_like(hs[0])
        for t in range(steps - 1):
            h = hs[t]
            torch.le(h, threshold, out=keep)
            # U[t] = H[t] (1 - S[t]);  H[t+1] = I[t+1] + beta U[t]
            hs[t + 1].addcmul_(h, keep, value=beta)
        torch.gt(charge, threshold, out=spikes)
    else:
        for t in range(steps - 1):
            hs[t + 1].add_(hs[t], alpha=beta)
        torch.gt(charge, threshold, out=spikes)


def _backward_loop_py(grad: torch.Tensor, coef: torch.Tensor, beta: float) -> None:
    """``grad[t] += coef[t] * grad[t+1]`` backwards in time (``coef`` empty: ``beta``)."""
    gs = grad.unbind(0)
    if coef.numel() == 0:
        for t in range(len(gs) - 2, -1, -1):
            gs[t].add_(gs[t + 1], alpha=beta)
    else:
        cs = coef.unbind(0)
        for t in range(len(gs) - 2, -1, -1):
            gs[t].addcmul_(cs[t], gs[t + 1])


def _script(fn):
    """TorchScript ``fn`` (less per-op interpreter overhead in the step loops); the plain
    function where TorchScript is unavailable (it is deprecated in recent PyTorch)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(fn)
    except Exception:  # pragma: no cover - depends on the torch build
        return fn


_recurrence = _script(_recurrence_py)
_backward_loop = _script(_backward_loop_py)


def lif_recurrence_(charge: torch.Tensor, beta: float, threshold: float, reset: str
                    ) -> torch.Tensor:
    """Run the LIF recurrence over ``charge`` (``[T, ...]``, holding the input currents ``I``).

    Overwrites ``charge`` with ``H`` in place and returns the spikes ``S`` (same shape/dtype).
    """
    return _lif_step(charge, beta, threshold, reset)[0]


def _lif_step(charge: torch.Tensor, beta: float, threshold: float, reset: str,
              bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lif_recurrence_` plus the number of spikes (0-d): counted exactly by the fused C++
    kernel on the way (saves a pass over ``S``; equal to ``spikes.sum()``, which is exact below
    2**24 spikes in float32), else ``spikes.sum()``. ``bias``: ``charge`` holds ``x Wᵀ`` and
    the bias is added first (by the fused kernel on the way, saving a pass)."""
    spikes = POOL.empty(charge.shape, charge.dtype, charge.device)
    if _lif_kernels.usable(charge):
        count = _lif_kernels.forward_(charge, spikes, float(beta), float(threshold),
                                      _RESET_CODES[reset], bias)
        return spikes, count
    if bias is not None:
        charge.add_(bias)
    _recurrence(charge, spikes, float(beta), float(threshold), _RESET_CODES[reset])
    return spikes, spikes.sum()


class Workspace(threading.local):
    """Per-thread scratch buffers for the backward pass, reused across calls.

    Fresh multi-megabyte tensors cost page faults on every step (measured: a new ``[25, 128,
    128]`` float32 product took ~0.3-0.4 ms against ~0.05 ms into a reused buffer); the
    backward temporaries never leave :func:`lif_backward_` (the caller turns ``dL/dI`` into
    weight/input gradients before returning), so they can live here. Keeps the buffers of the
    last few shapes only.
    """

    max_entries = 16

    def __init__(self) -> None:
        self.buffers: dict[tuple, list[torch.Tensor]] = {}

    def get(self, like: torch.Tensor, count: int, tag: object = None) -> list[torch.Tensor]:
        """``count`` buffers shaped like ``like``; the same ``tag`` returns the same buffers."""
        key = (tag, tuple(like.shape), like.dtype, like.device)
        bufs = self.buffers.pop(key, None)
        if bufs is None or len(bufs) < count:
            bufs = [torch.empty(like.shape, dtype=like.dtype, device=like.device)
                    for _ in range(count)]
        self.buffers[key] = bufs  # most recently used last
        while len(self.buffers) > self.max_entries:
            self.buffers.pop(next(iter(self.buffers)))
        return bufs

    def clear(self) -> None:
        self.buffers.clear()


WORKSPACE = Workspace()


def lif_backward_(charge: torch.Tensor, grad_spikes: torch.Tensor | None,
                  grad_charge: torch.Tensor | None, beta: float, threshold: float, reset: str,
                  surrogate: str, slope: float, out: Sequence[torch.Tensor] | None = None
                  ) -> torch.Tensor:
    """``dL/dI`` from the gradients at the outputs ``S`` and ``H`` (see the module docstring).

    ``out``: two scratch tensors shaped like ``charge`` (the result is written into the first;
    the fused C++ kernel needs only that one); new ones are allocated when omitted.
    """
    grad = out[0] if out is not None else torch.empty_like(charge)
    if _lif_kernels.backward_usable(charge, grad_spikes, grad_charge, grad, surrogate):
        _lif_kernels.backward_(charge, grad_spikes, grad_charge, grad, float(beta),
                               float(threshold), _RESET_CODES[reset], surrogate, float(slope))
        return grad
    coef = out[1] if out is not None else torch.empty_like(charge)
    if grad_spikes is not None or reset != "none":  # else no path through the surrogate
        sg = _surrogate_derivative_(torch.sub(charge, threshold, out=grad), surrogate, slope)
        if reset == "subtract":
            torch.mul(sg, -beta * threshold, out=coef).add_(beta)
        elif reset == "zero":
            torch.le(charge, threshold, out=coef).addcmul_(charge, sg, value=-1.0).mul_(beta)
    if grad_spikes is None:
        assert grad_charge is not None, "lif_backward_ needs the gradient at S or at H"
        grad.copy_(grad_charge)
    else:
        grad.mul_(grad_spikes)  # grad holds σ', no longer needed
        if grad_charge is not None:
            grad.add_(grad_charge)
    _backward_loop(grad, coef if reset != "none" else grad.new_empty(0), float(beta))
    return grad


def _currents(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``I = x Wᵀ + b`` for all steps at once: one ``[T·B, F] × [F, N]`` product (into a pooled
    storage, :mod:`spikebench.backends._pool`). On the CPU the bias is returned for the LIF
    step to add (``(x Wᵀ, b)``: the fused kernel adds it on the way, instead of ``addmm``
    copying it over the whole output first); elsewhere ``(I, None)``."""
    flat = x.reshape(-1, x.shape[-1])
    out = POOL.empty((flat.shape[0], weight.shape[0]), x.dtype, x.device)
    if bias is not None and x.device.type != "cpu":
        torch.addmm(bias, flat, weight.t(), out=out)
        bias = None
    else:
        torch.mm(flat, weight.t(), out=out)
    return out.view(*x.shape[:-1], weight.shape[0]), bias


def _layer(inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           in_count: torch.Tensor | None, beta: float, threshold: float, reset: str
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """One layer: ``(H, S, spike count, event-driven weight gradient?)``.

    The input projection is event-driven (:mod:`spikebench.backends.event_driven`) when the
    input is binary and sparse enough for this layer's width (``in_count``: the spike count of
    ``inp`` when it is the previous layer's spikes), else one dense ``addmm``.
    """
    n_out = weight.shape[0]
    density = -1.0
    if n_out >= event_driven.MIN_OUTPUTS and event_driven.enabled():
        density = event_driven.input_density(inp, in_count)
    if event_driven.use_forward(density, n_out):
        charge, pending = event_driven.currents(inp, weight, bias), None
    else:
        charge, pending = _currents(inp, weight, bias)
    spikes, count = _lif_step(charge, beta, threshold, reset, pending)
    return charge, spikes, count, event_driven.use_grad(density, n_out)


#: Run every layer of a pass in one C++ call where the fused kernels take the input
#: (``network_kernels.cpp``); ``False`` keeps the layer-by-layer Python loop, which gives the
#: same results bit for bit (for A/B timing and as the tests' oracle).
WHOLE_NETWORK_PASS = True


def _forward_layers(x: torch.Tensor, weights: Sequence[torch.Tensor],
                    biases: Sequence[torch.Tensor | None], beta: float, threshold: float,
                    reset: str) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor,
                                         list[bool], bool]:
    """Every layer's charge and spikes, the spike counts ``[L]``, whether each layer's weight
    gradient goes event-driven, and whether the whole-network C++ pass ran (one call for all
    layers where the fused kernels take ``x``, bit-identical to :func:`_forward_per_layer`)."""
    if WHOLE_NETWORK_PASS and _lif_kernels.network_usable(x):
        limits = [event_driven.limits(w.shape[0]) for w in weights]
        charges, spikes, counts, events = _lif_kernels.network_forward(
            x, list(weights), list(biases), [f for f, _ in limits], [g for _, g in limits],
            beta, threshold, _RESET_CODES[reset])
        return charges, spikes, counts, [bool(e) for e in events], True
    return (*_forward_per_layer(x, weights, biases, beta, threshold, reset), False)


def _forward_per_layer(x: torch.Tensor, weights: Sequence[torch.Tensor],
                       biases: Sequence[torch.Tensor | None], beta: float, threshold: float,
                       reset: str) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor,
                                            list[bool]]:
    """:func:`_forward_layers` one :func:`_layer` call at a time (the TorchScript fallback and
    CUDA path, and the oracle of the whole-network pass)."""
    spikes, charges, all_spikes, counts, events = x, [], [], [], []
    count = None
    for weight, bias in zip(weights, biases):
        charge, spikes, count, event = _layer(spikes, weight, bias, count, beta, threshold,
                                              reset)
        charges.append(charge)
        all_spikes.append(spikes)
        counts.append(count)
        events.append(event)
    return charges, all_spikes, torch.stack(counts), events


class LIFNetworkFunction(torch.autograd.Function):
    """A whole feed-forward LIF network over all steps as one autograd node.

    ``apply(params, x, W_1, b_1, ..., W_L, b_L)`` (``b_l`` may be ``None``) returns the last
    layer's ``(S, H)`` and the per-layer spike counts (not differentiable). ``params`` is
    ``(beta, threshold, reset, surrogate, slope)``. The backward pass is written by hand (module
    docstring); gradients between layers never leave it, so every ``[T, B, N]`` temporary of the
    backward pass lives in a per-thread workspace. On the CPU with the fused kernels, each pass
    over all layers is one C++ call (``network_kernels.cpp``: the same products and kernels in
    the same order, its own storage pool and workspace); elsewhere the layer loop below runs
    (:data:`WORKSPACE`, :data:`~spikebench.backends._pool.POOL`).
    """

    @staticmethod
    def forward(ctx, params, x, *weights):
        beta, threshold, reset, surrogate, _slope = params
        charges, spikes, counts, events, whole = _forward_layers(
            x, weights[0::2], weights[1::2], beta, threshold, reset)
        saved = [x]
        for charge, spike in zip(charges, spikes):
            saved += [charge, spike]
        ctx.save_for_backward(*saved[:-1], *weights[0::2])  # x, H_1, S_1, ..., H_L, W_1..W_L
        ctx.params = params
        ctx.events = events
        ctx.has_bias = [b is not None for b in weights[1::2]]
        ctx.whole = whole and surrogate in _lif_kernels.SURROGATE_CODES
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(counts)
        return spikes[-1], charges[-1], counts

    @staticmethod
    def backward(ctx, grad_spikes, grad_charge, _grad_counts):
        beta, threshold, reset, surrogate, slope = ctx.params
        saved = ctx.saved_tensors
        n_layers = len(ctx.has_bias)
        acts, ws = saved[: 2 * n_layers], saved[2 * n_layers:]
        if ctx.whole and _grads_fit(acts[-1], grad_spikes, grad_charge):
            gx, fused = _lif_kernels.network_backward(
                grad_spikes, grad_charge, list(acts[0::2]), list(acts[1::2]), list(ws),
                [int(b) for b in ctx.has_bias], [int(e) for e in ctx.events],
                [int(n) for n in ctx.needs_input_grad[2:]], bool(ctx.needs_input_grad[1]),
                beta, threshold, _RESET_CODES[reset], surrogate, slope)
            return (None, gx, *fused)
        x = acts[0]
        grads: list[torch.Tensor | None] = [None] * (2 * n_layers)
        gx = None
        g_s, g_h = grad_spikes, grad_charge
        for layer in range(n_layers - 1, -1, -1):
            if g_s is None and g_h is None:
                break
            charge = acts[2 * layer + 1]
            inp = acts[2 * layer]  # x for the first layer, else the spikes of the layer below
            grad = lif_backward_(charge, g_s, g_h, beta, threshold, reset, surrogate, slope,
                                 out=WORKSPACE.get(charge, 2, tag=layer))
            flat = grad.view(-1, grad.shape[-1])
            weight = ws[layer]
            if ctx.needs_input_grad[2 + 2 * layer] and ctx.events[layer]:
                grads[2 * layer] = event_driven.weight_grad(flat, inp)
            elif ctx.needs_input_grad[2 + 2 * layer]:
                grads[2 * layer] = flat.t().mm(inp.reshape(-1, inp.shape[-1]))
            if ctx.has_bias[layer] and ctx.needs_input_grad[3 + 2 * layer]:
                grads[2 * layer + 1] = flat.sum(0)
            if layer > 0:
                (buf,) = WORKSPACE.get(inp, 1, tag=("input", layer))
                g_s = torch.mm(flat, weight, out=buf.view(-1, inp.shape[-1])).view(inp.shape)
                g_h = None
            elif ctx.needs_input_grad[1]:
                gx = flat.mm(weight).view(x.shape)
        return (None, gx, *grads)


def _grads_fit(charge: torch.Tensor, *grads: torch.Tensor | None) -> bool:
    """Whether the gradients at the outputs have ``charge``'s dtype, device and shape (what
    autograd passes; the fused backward kernel reads any strides)."""
    return all(g is None or (g.dtype == charge.dtype and g.device == charge.device
                             and g.shape == charge.shape) for g in grads)


def lif_network(x: torch.Tensor, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]], *,
                beta: float, threshold: float, reset: str, surrogate: str, slope: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Last layer's ``(S, H)`` (each ``[T, B, N_L]``) and per-layer spike counts ``[L]`` of the
    LIF network with layer weights ``[(W, b), ...]`` driven by ``x``."""
    flat = [t for wb in weights for t in wb]
    params = (float(beta), float(threshold), reset, surrogate, float(slope))
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(t is not None and t.requires_grad for t in flat))
    if needs_grad:
        return LIFNetworkFunction.apply(params, x, *flat)
    charges, spikes, counts, _, _ = _forward_layers(
        x, [w for w, _ in weights], [b for _, b in weights], params[0], params[1], reset)
    return spikes[-1], charges[-1], counts


def lif_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, beta: float,
              threshold: float, reset: str, surrogate: str, slope: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and charges ``(S, H)``, each ``[T, B, N]``, of one LIF layer driven by ``x``."""
    spikes, charge, _ = lif_network(x, [(weight, bias)], beta=beta, threshold=threshold,
                                    reset=reset, surrogate=surrogate, slope=slope)
    return spikes, charge


class CustomNetwork(LinearLayersWeights, nn.Module, SpikingNetwork[NetworkSpec]):
    """Feed-forward LIF network; ``forward`` takes ``[T, B, F]`` and returns :class:`NetworkOutput`.

    Layers are ``nn.Linear`` modules (their parameters are the weights); the LIF dynamics run in
    :func:`lif_layer`.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=spec.bias) for a, b in zip(spec.sizes[:-1], spec.sizes[1:])
        )

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        spec = self.spec
        weight = self.layers[0].weight
        if x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        spikes, charge, counts = lif_network(
            x, [(lin.weight, lin.bias) for lin in self.layers], beta=spec.beta,
            threshold=spec.threshold, reset=spec.reset, surrogate=spec.surrogate,
            slope=spec.slope)
        return NetworkOutput(spikes=spikes, membrane=charge, layer_spike_counts=list(counts))
