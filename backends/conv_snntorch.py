"""snnTorch's convolutional network for :class:`~spikebench.backends.conv.ConvNetworkSpec`.

``nn.Conv2d`` → ``nn.MaxPool2d`` → :class:`~spikebench.backends.snntorch_backend.PinnedLeaky`
per stage, ``nn.Linear`` → ``PinnedLeaky`` per dense layer, stepped over time in Python (the
idiomatic snnTorch loop of its convolutional tutorial). The neuron is the same pinned
``snntorch.Leaky`` the dense snnTorch network uses (``H[t] = β U[t-1] + I[t]``,
``S[t] = Θ(H[t] - θ)``, reset in the step of the spike; see
:mod:`spikebench.backends.snntorch_backend`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikebench.backends.base import LinearLayersWeights, NetworkOutput, SpikingNetwork
from spikebench.backends.conv import ConvNetworkSpec, conv_layers
from spikebench.backends.snntorch_backend import PinnedLeaky, spike_function


class SnnTorchConvNetwork(LinearLayersWeights, nn.Module, SpikingNetwork):
    """snnTorch convolutional LIF network (module docstring)."""

    def __init__(self, spec: ConvNetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(conv_layers(spec))
        self.pool = nn.MaxPool2d(spec.pool) if spec.pool > 1 else nn.Identity()
        self.neurons = nn.ModuleList(
            PinnedLeaky(spec.beta, spec.threshold, spike_function(spec.surrogate, spec.slope),
                        spec.reset)
            for _ in self.layers)

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        dtype = self.layers[0].weight.dtype
        x = x.to(dtype)
        n_conv = len(self.spec.channels)
        mems = [lif.reset_mem() for lif in self.neurons]  # fresh zero state per call
        counts = [x.new_zeros(()) for _ in self.layers]
        out_spikes, out_charge = [], []
        for t in range(x.shape[0]):
            s = x[t]
            for i, (syn, lif) in enumerate(zip(self.layers, self.neurons)):
                if i < n_conv:
                    cur = self.pool(syn(s))
                else:
                    cur = syn(s.flatten(1))
                s, mems[i] = lif(cur, mems[i])
                counts[i] = counts[i] + s.detach().sum()
            out_spikes.append(s)
            out_charge.append(self.neurons[-1].charge)
        return NetworkOutput(spikes=torch.stack(out_spikes), membrane=torch.stack(out_charge),
                             layer_spike_counts=counts)


def network_class() -> Any:
    """The registry's builder entry (:data:`spikebench.backends.conv._BUILDERS`)."""
    return SnnTorchConvNetwork
