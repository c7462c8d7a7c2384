"""Convolutional spiking networks: one framework-neutral spec, built by every backend.

A ``ConvNetworkSpec`` describes ``len(channels)`` convolutional LIF stages followed by
dense LIF layers, on ``[T, B, C, S, S]`` input. Stage ``l`` (kernel ``k``, "same" padding
``k // 2``, max-pooling ``p``) and dense layer ``d`` compute the input current ::

    I_l[t] = MaxPool_p(Conv_k(x_l[t]; W_l) + b_l)          x_0 = input, x_{l+1} = S_l[t]
    I_d[t] = W_d flatten(x_d[t]) + b_d

and every layer's neurons follow the pinned LIF equation of ``spikebench.backends.base``
(``H[t] = β U[t-1] + I[t]``, ``S[t] = Θ(H[t] - θ)``, reset in the same step, surrogate
``dS/dH``). Pooling acts on the currents, before the neurons, so spikes stay binary and every
synaptic event of a deeper layer is an accumulate. The output is the last layer's ``S`` and
``H`` (``[T, B, outputs]``) as for the dense networks
(``NetworkOutput``).

Each backend that declares capability ``conv_lif`` builds it from its own primitives
(``build_conv``): ``custom`` runs ``torch``
convolutions over ``T·B`` at once and the custom engine's LIF recurrence
(``lif_recurrence_`` /
``lif_backward_``, the fused C++ kernels on CPU), and its
dense tail with ``lif_network``; ``snntorch``
uses ``nn.Conv2d`` + ``snntorch.Leaky`` stepped in time (``SnnTorchConvNetwork``);
``spikingjelly`` uses ``layer.Conv2d`` + ``LIFNode`` in multi-step mode
(``SpikingJellyConvNetwork``).
``spikebench.backends.conformance.conv`` proves them equivalent (same weights, same
spikes). Weights are exchanged as ``[(W, b), ...]`` in layer order (conv ``W``
``[out, in, k, k]``, dense ``W`` ``[out, in]``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spikebench.backends.specs import ConvNetworkSpec
from spikebench.errors import BackendError

if TYPE_CHECKING:
    import torch


def conv_layers(spec: ConvNetworkSpec, conv_cls: Any = None, linear_cls: Any = None,
                **kwargs: Any) -> list[Any]:
    """The spec's synaptic layers in the one creation order every backend uses (so the same
    seed gives the same initial weights): convolutions, then dense layers."""
    from torch import nn

    conv_cls, linear_cls = conv_cls or nn.Conv2d, linear_cls or nn.Linear
    layers: list[Any] = []
    c_in = spec.in_channels
    for c in spec.channels:
        layers.append(conv_cls(c_in, c, spec.kernel, padding=spec.kernel // 2, bias=spec.bias,
                               **kwargs))
        c_in = c
    dense = spec.dense_sizes
    layers += [linear_cls(a, b, bias=spec.bias, **kwargs) for a, b in itertools.pairwise(dense)]
    return layers


# ---------------------------------------------------------------------------- custom engine


def _lif_autograd() -> Any:
    import torch

    from spikebench.backends.custom import lif_backward_, lif_recurrence_

    class LIFFunction(torch.autograd.Function):
        """The custom engine's LIF over precomputed currents ``[T, ...]``: ``(S, H)``."""

        @staticmethod
        def forward(ctx, current, params):
            beta, threshold, reset, _surrogate, _slope = params
            charge = current.contiguous().clone()
            spikes = lif_recurrence_(charge, beta, threshold, reset)
            ctx.save_for_backward(charge)
            ctx.params = params
            ctx.set_materialize_grads(False)
            return spikes, charge

        @staticmethod
        def backward(ctx, grad_spikes, grad_charge):
            if grad_spikes is None and grad_charge is None:
                return None, None
            (charge,) = ctx.saved_tensors
            beta, threshold, reset, surrogate, slope = ctx.params
            grad = lif_backward_(charge, grad_spikes, grad_charge, beta, threshold, reset,
                                 surrogate, slope)
            return grad, None

    return LIFFunction


_LIF_FUNCTION: Any = None


def custom_lif(current: torch.Tensor, spec: ConvNetworkSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, H)`` of the custom engine's LIF neurons driven by ``current`` ``[T, ...]``."""
    global _LIF_FUNCTION
    import torch

    params = (float(spec.beta), float(spec.threshold), spec.reset, spec.surrogate,
              float(spec.slope))
    if torch.is_grad_enabled() and current.requires_grad:
        if _LIF_FUNCTION is None:
            _LIF_FUNCTION = _lif_autograd()
        return _LIF_FUNCTION.apply(current, params)
    from spikebench.backends.custom import lif_recurrence_

    charge = current.contiguous().clone()
    return lif_recurrence_(charge, params[0], params[1], spec.reset), charge


def custom_network_class() -> Any:
    import torch.nn.functional as F
    from torch import nn

    from spikebench.backends.base import LinearLayersWeights, NetworkOutput, SpikingNetwork
    from spikebench.backends.custom import lif_network

    class CustomConvNetwork(LinearLayersWeights, nn.Module, SpikingNetwork[ConvNetworkSpec]):
        """Convolutions over ``T·B`` at once, the custom engine's LIF recurrence per stage,
        ``lif_network`` for the dense tail."""

        def __init__(self, spec: ConvNetworkSpec) -> None:
            super().__init__()
            self.spec = spec
            self.layers = nn.ModuleList(conv_layers(spec))

        def forward(self, x: torch.Tensor) -> NetworkOutput:
            spec = self.spec
            s = x.to(self.layers[0].weight.dtype)
            steps, batch = s.shape[:2]
            counts = []
            n_conv = len(spec.channels)
            for conv in self.layers[:n_conv]:
                cur = conv(s.reshape(steps * batch, *s.shape[2:]))
                if spec.pool > 1:
                    cur = F.max_pool2d(cur, spec.pool)
                s, _ = custom_lif(cur.view(steps, batch, *cur.shape[1:]), spec)
                counts.append(s.detach().sum())
            dense = [(lin.weight, lin.bias) for lin in self.layers[n_conv:]]
            flat = s.reshape(steps, batch, -1)
            spikes, charge, dense_counts = lif_network(
                flat, dense, beta=spec.beta, threshold=spec.threshold, reset=spec.reset,
                surrogate=spec.surrogate, slope=spec.slope)
            counts += list(dense_counts.detach())
            return NetworkOutput(spikes=spikes, membrane=charge, layer_spike_counts=counts)

    return CustomConvNetwork


# ---------------------------------------------------------------------------- backends


def conv_backends() -> list[str]:
    """Installed backends that provide capability ``conv_lif`` (broken plug-ins are left out)."""
    from spikebench.backends.capabilities import Capability
    from spikebench.backends.registry import available_backends, get_backend

    names = []
    for name in available_backends():
        try:
            if Capability.CONV_LIF in get_backend(name).capabilities:
                names.append(name)
        except BackendError:
            continue
    return names


def build_conv(backend: str, spec: ConvNetworkSpec, *, device: Any = "cpu", dtype: Any = None,
               seed: int | None = None) -> Any:
    """``get_backend(backend).build_conv(spec, ...)``: ``spec`` built with ``backend``'s
    primitives on ``device`` (float32 by default); ``seed`` fixes the initial weights, the same
    on every backend."""
    from spikebench.backends.registry import get_backend

    return get_backend(backend).build_conv(spec, device=device, dtype=dtype, seed=seed)


def conv_train_step(backend: str, spec: ConvNetworkSpec | None = None, *, batch: int = 16,
                    steps: int = 8, device: Any = "cpu", seed: int = 0
                    ) -> Callable[[], float]:
    """One timed unit of the convolutional workload: builds ``spec`` (default: 1×64×64 input,
    channels 8, 16) on ``backend`` with a fixed Bernoulli(0.3) input batch and labels, and
    returns ``step()``, which runs one forward, count-loss backward and Adam step and returns
    the loss. Build once, then time repeated ``step()`` calls (the first includes one-time
    costs: kernel builds, allocations)."""
    import torch
    import torch.nn.functional as F

    spec = spec or ConvNetworkSpec()
    net = build_conv(backend, spec, device=device, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    shape = (steps, batch, spec.in_channels, spec.image_size, spec.image_size)
    x = (torch.rand(shape, generator=gen) < 0.3).float().to(device)
    y = torch.randint(0, spec.outputs, (batch,), generator=gen).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> float:
        out = net(x)
        loss = F.cross_entropy(out.spikes.sum(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


__all__ = ["ConvNetworkSpec", "build_conv", "conv_backends", "conv_layers", "conv_train_step",
           "custom_lif", "custom_network_class"]
