"""Convolutional spiking networks: one framework-neutral spec, built by every backend.

A :class:`ConvNetworkSpec` describes ``len(channels)`` convolutional LIF stages followed by
dense LIF layers, on ``[T, B, C, S, S]`` input. Stage ``l`` (kernel ``k``, "same" padding
``k // 2``, max-pooling ``p``) and dense layer ``d`` compute the input current ::

    I_l[t] = MaxPool_p(Conv_k(x_l[t]; W_l) + b_l)          x_0 = input, x_{l+1} = S_l[t]
    I_d[t] = W_d flatten(x_d[t]) + b_d

and every layer's neurons follow the pinned LIF equation of :mod:`spikebench.backends.base`
(``H[t] = β U[t-1] + I[t]``, ``S[t] = Θ(H[t] - θ)``, reset in the same step, surrogate
``dS/dH``). Pooling acts on the currents, before the neurons, so spikes stay binary and every
synaptic event of a deeper layer is an accumulate. The output is the last layer's ``S`` and
``H`` (``[T, B, outputs]``) as for the dense networks (:class:`~spikebench.backends.base.
NetworkOutput`).

Each backend builds it from its own primitives (a builder registry keyed by backend name, so
the backend classes need no change): ``custom`` runs ``torch`` convolutions over ``T·B`` at
once and the custom engine's LIF recurrence (:func:`~spikebench.backends.custom.
lif_recurrence_` / :func:`~spikebench.backends.custom.lif_backward_`, the fused C++ kernels on
CPU), and its dense tail with :func:`~spikebench.backends.custom.lif_network`; ``snntorch``
uses ``nn.Conv2d`` + ``snntorch.Leaky`` stepped in time (:mod:`spikebench.backends.
conv_snntorch`); ``spikingjelly`` uses ``layer.Conv2d`` + ``LIFNode`` in multi-step mode
(:mod:`spikebench.backends.conv_spikingjelly`). :mod:`spikebench.backends.conv_conformance`
proves them equivalent (same weights, same spikes). Weights are exchanged as ``[(W, b), ...]``
in layer order (conv ``W`` ``[out, in, k, k]``, dense ``W`` ``[out, in]``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spikebench.backends.base import NetworkSpec, Reset, Surrogate, build_seeded
from spikebench.errors import BackendError

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class ConvNetworkSpec:
    """Framework-neutral convolutional LIF network (module docstring)."""

    image_size: int = 64
    in_channels: int = 1
    channels: tuple[int, ...] = (8, 16)
    kernel: int = 3
    pool: int = 2
    hidden: tuple[int, ...] = ()
    outputs: int = 2
    beta: float = 0.9
    threshold: float = 1.0
    reset: Reset = "subtract"
    surrogate: Surrogate = "fast_sigmoid"
    slope: float = 25.0
    bias: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.channels or min(self.channels) < 1:
            raise BackendError(f"ConvNetworkSpec.channels must list >= 1 positive widths, "
                               f"got {self.channels}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise BackendError(f"ConvNetworkSpec.kernel must be odd and >= 1, got {self.kernel}")
        if self.pool < 1:
            raise BackendError(f"ConvNetworkSpec.pool must be >= 1, got {self.pool}")
        if self.feature_size < 1:
            raise BackendError(f"ConvNetworkSpec: image_size {self.image_size} is too small for "
                               f"{len(self.channels)} pooling stages of {self.pool}")
        self.neuron_spec()  # validates the LIF parameters

    def neuron_spec(self) -> NetworkSpec:
        """The neuron parameters as a dense :class:`NetworkSpec` (for the framework nodes)."""
        return NetworkSpec(sizes=(1, 1), beta=self.beta, threshold=self.threshold,
                           reset=self.reset, surrogate=self.surrogate, slope=self.slope,
                           bias=self.bias)

    @property
    def feature_size(self) -> int:
        """Side of the feature maps after the last stage."""
        size = int(self.image_size)
        for _ in self.channels:
            size //= self.pool
        return size

    @property
    def dense_sizes(self) -> tuple[int, ...]:
        """Widths of the dense tail, from the flattened maps to the outputs."""
        flat = self.channels[-1] * self.feature_size ** 2
        return (flat, *self.hidden, int(self.outputs))

    @property
    def n_layers(self) -> int:
        """LIF layers: one per convolutional stage and per dense layer."""
        return len(self.channels) + len(self.dense_sizes) - 1

    def map_sizes(self) -> list[int]:
        """Side of each stage's input maps (before its convolution)."""
        sizes, size = [], int(self.image_size)
        for _ in self.channels:
            sizes.append(size)
            size //= self.pool
        return sizes

    def fan_outs(self) -> list[int]:
        """Synapses each input event of layer ``l`` reaches: ``C_out k²`` for a convolution
        (away from the border, where fewer are reached), the next width for a dense layer."""
        conv = [c * self.kernel ** 2 for c in self.channels]
        return [*conv, *self.dense_sizes[1:]]

    def conv_macs(self) -> float:
        """Multiply-accumulates of one time step of the layers as dense operations (every
        input multiplied): ``Σ C_in C_out k² S_l²`` + dense products."""
        total, c_in = 0.0, int(self.in_channels)
        for c, size in zip(self.channels, self.map_sizes(), strict=True):
            total += c_in * c * self.kernel ** 2 * size ** 2
            c_in = c
        dense = self.dense_sizes
        return total + sum(a * b for a, b in itertools.pairwise(dense))


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
        def forward(ctx, current, params):  # type: ignore[override]
            beta, threshold, reset, _surrogate, _slope = params
            charge = current.contiguous().clone()
            spikes = lif_recurrence_(charge, beta, threshold, reset)
            ctx.save_for_backward(charge)
            ctx.params = params
            ctx.set_materialize_grads(False)
            return spikes, charge

        @staticmethod
        def backward(ctx, grad_spikes, grad_charge):  # type: ignore[override]
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


def _custom_network_cls() -> Any:
    import torch.nn.functional as F
    from torch import nn

    from spikebench.backends.base import LinearLayersWeights, NetworkOutput, SpikingNetwork
    from spikebench.backends.custom import lif_network

    class CustomConvNetwork(LinearLayersWeights, nn.Module, SpikingNetwork):
        """Convolutions over ``T·B`` at once, the custom engine's LIF recurrence per stage,
        :func:`~spikebench.backends.custom.lif_network` for the dense tail."""

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


# ---------------------------------------------------------------------------- registry

#: Builders of the convolutional network per backend name: ``"module:function"`` returning
#: the ``nn.Module`` class (called as ``cls(spec)``), or such a callable.
_BUILDERS: dict[str, str | Callable[[], Any]] = {
    "custom": _custom_network_cls,
    "snntorch": "spikebench.backends.conv_snntorch:network_class",
    "spikingjelly": "spikebench.backends.conv_spikingjelly:network_class",
}


def register_conv_builder(backend: str, network_class: Callable[[], Any]) -> None:
    """Let ``backend`` (a plug-in) build convolutional networks: ``network_class()`` returns
    an ``nn.Module`` class taking a :class:`ConvNetworkSpec`; prove it with
    :func:`~spikebench.backends.conv_conformance.check_conv_backend`."""
    _BUILDERS[str(backend)] = network_class


def conv_backends() -> list[str]:
    """Backend names with a convolutional builder."""
    return sorted(_BUILDERS)


def conv_unsupported(backend: str) -> str:
    """Why ``backend`` cannot build a convolutional network ("" when it can)."""
    if backend in _BUILDERS:
        return ""
    return (f"backend {backend!r} has no convolutional network builder (image rules run on "
            f"{', '.join(conv_backends())}; a plug-in registers one with "
            "spikebench.backends.conv.register_conv_builder)")


def network_class(backend: str) -> Any:
    """The ``nn.Module`` class building ``backend``'s convolutional network."""
    reason = conv_unsupported(backend)
    if reason:
        raise BackendError(reason)
    builder = _BUILDERS[backend]
    if isinstance(builder, str):
        import importlib

        module, _, attr = builder.partition(":")
        try:
            builder = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise BackendError(f"backend {backend!r}: convolutional builder unavailable "
                               f"({exc})") from None
    return builder()


def build_conv(backend: str, spec: ConvNetworkSpec, *, device: Any = "cpu", dtype: Any = None,
               seed: int | None = None) -> Any:
    """Build ``spec`` with ``backend``'s primitives on ``device`` (float32 by default);
    ``seed`` fixes the initial weights, the same on every backend."""
    import torch

    cls = network_class(backend)
    spec.neuron_spec()
    net = build_seeded(lambda: cls(spec), seed)
    return net.to(device=device, dtype=dtype or torch.float32)


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
           "conv_unsupported", "custom_lif", "network_class", "register_conv_builder"]
