"""A spikebench backend plugin: the pinned LIF network as one TorchScript function.

Per layer and step (the equation of ``spikebench.backends.base``)::

    H[t] = β U[t-1] + I[t],   S[t] = Θ(H[t] - θ),   U[t] = H[t] - θ S[t] | H[t](1 - S[t]) | H[t]

The spike is written ``S = Θ(z) + (p(z) - p(z).detach())`` with ``z = H - θ`` and ``p`` a
primitive of the surrogate derivative (``z / (1 + k|z|)`` for fast_sigmoid, ``atan(π/2·k·z)/π``
for arctan, ``σ(kz)`` for sigmoid): the forward value is exactly ``Θ(z)`` (``p - p = 0``) and
autograd sees ``dS/dz = p'(z)``, the surrogate. The reset term is not detached. Being plain
differentiable TorchScript, no custom autograd function is needed.

It declares what it builds: a dense LIF network with surrogate gradients, and nothing else
(no convolutional network, no Tempotron). Every rule that needs only those — the
surrogate-gradient rule, active learning, any plug-in rule of that kind — then runs on it with
no further code; the conformance kit checks that ``build_conv`` and ``build_tempotron`` refuse
cleanly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from spikebench.backends.base import Backend, NetworkOutput, NetworkSpec, SpikingNetwork
from spikebench.backends.capabilities import Capability
from spikebench.errors import BackendError

__all__ = ["TorchScriptBackend", "TorchScriptNetwork", "lif_sequence"]

_RESETS = {"subtract": 0, "zero": 1, "none": 2}
_SURROGATES = {"fast_sigmoid": 0, "arctan": 1, "sigmoid": 2}


def _lif_sequence(current: torch.Tensor, beta: float, threshold: float, reset: int,
                  surrogate: int, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.zeros_like(current[0])
    spikes = []
    charges = []
    for t in range(current.shape[0]):
        h = beta * u + current[t]
        z = h - threshold
        if surrogate == 0:
            p = z / (1.0 + slope * z.abs())
        elif surrogate == 1:
            p = torch.atan(1.5707963267948966 * slope * z) / 3.141592653589793
        else:
            p = torch.sigmoid(slope * z)
        s = (z > 0).to(z.dtype) + (p - p.detach())
        if reset == 0:
            u = h - threshold * s
        elif reset == 1:
            u = h * (1.0 - s)
        else:
            u = h
        spikes.append(s)
        charges.append(h)
    return torch.stack(spikes), torch.stack(charges)


with warnings.catch_warnings():  # torch.jit.script is deprecated in recent PyTorch, still works
    warnings.simplefilter("ignore", DeprecationWarning)
    lif_sequence = torch.jit.script(_lif_sequence)


class TorchScriptNetwork(nn.Module, SpikingNetwork):
    """``nn.Linear`` per layer (all steps in one product) and :func:`lif_sequence`."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=spec.bias) for a, b in zip(spec.sizes[:-1], spec.sizes[1:]))

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        spec = self.spec
        s = x.to(self.layers[0].weight.dtype)
        charge = s
        counts = []
        for lin in self.layers:
            s, charge = lif_sequence(lin(s), float(spec.beta), float(spec.threshold),
                                     _RESETS[spec.reset], _SURROGATES[spec.surrogate],
                                     float(spec.slope))
            counts.append(s.detach().sum())
        return NetworkOutput(spikes=s, membrane=charge, layer_spike_counts=counts)

    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [(lin.weight.detach().clone(),
                 None if lin.bias is None else lin.bias.detach().clone()) for lin in self.layers]

    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        weights = list(weights)
        if len(weights) != len(self.layers):
            raise BackendError(f"expected {len(self.layers)} (W, b) pairs, got {len(weights)}")
        with torch.no_grad():
            for i, (lin, (w, b)) in enumerate(zip(self.layers, weights)):
                if tuple(w.shape) != tuple(lin.weight.shape):
                    raise BackendError(f"layer {i}: weight shape {tuple(w.shape)} != "
                                       f"{tuple(lin.weight.shape)}")
                lin.weight.copy_(w)
                if lin.bias is not None:
                    lin.bias.copy_(b if b is not None else torch.zeros_like(lin.bias))


class TorchScriptBackend(Backend):
    """The pinned LIF network compiled with TorchScript (an example plugin)."""

    name = "torchscript"
    framework = "spikebench-torchscript"
    capabilities = frozenset({Capability.DENSE_LIF, Capability.SURROGATE_GRADIENTS})

    def build(self, spec, *, device="cpu", dtype=None, seed=None) -> TorchScriptNetwork:
        self.check_supported(spec)
        if seed is None:
            net = TorchScriptNetwork(spec)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = TorchScriptNetwork(spec)
        return net.to(device=device, dtype=dtype or torch.float32)
