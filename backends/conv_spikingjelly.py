"""SpikingJelly's convolutional network for :class:`~spikebench.backends.conv.ConvNetworkSpec`.

``layer.Conv2d`` → ``layer.MaxPool2d`` → LIF node per stage and ``layer.Flatten`` →
``layer.Linear`` → LIF node per dense layer, all in multi-step mode (``step_mode="m"``: each
module runs over all ``T`` steps at once, convolutions over ``T·B``). The nodes are the ones
the dense SpikingJelly network uses (:func:`~spikebench.backends.spikingjelly_backend.
make_node`: ``LIFNode(τ = 1/(1-β), decay_input=False)`` with a strict-threshold surrogate, or
the pinned node where ``LIFNode`` cannot express the spec), so ``H[t] = β V[t-1] + X[t]``,
``S[t] = Θ(H[t] - θ)``, reset in the step of the spike. The state is reset with
``functional.reset_net`` at the start of every forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spikebench.backends.base import LinearLayersWeights, NetworkOutput, SpikingNetwork
from spikebench.backends.conv import ConvNetworkSpec, conv_layers
from spikebench.backends.spikingjelly_backend import make_node, sj_functional, sj_layer


class SpikingJellyConvNetwork(LinearLayersWeights, nn.Module, SpikingNetwork):
    """SpikingJelly multi-step convolutional LIF network (module docstring)."""

    def __init__(self, spec: ConvNetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(conv_layers(spec, sj_layer.Conv2d, sj_layer.Linear,
                                                step_mode="m"))
        self.pool = (sj_layer.MaxPool2d(spec.pool, step_mode="m") if spec.pool > 1
                     else nn.Identity())
        self.flatten = sj_layer.Flatten(step_mode="m")
        neuron = spec.neuron_spec()
        n = len(self.layers)
        self.neurons = nn.ModuleList(make_node(neuron, store_v_seq=i == n - 1)
                                     for i in range(n))

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        sj_functional.reset_net(self)
        s = x.to(self.layers[0].weight.dtype)
        n_conv = len(self.spec.channels)
        counts = []
        current = s
        for i, (syn, node) in enumerate(zip(self.layers, self.neurons)):
            if i < n_conv:
                current = self.pool(syn(s))
            else:
                current = syn(self.flatten(s) if i == n_conv else s)
            s = node(current)
            counts.append(s.detach().sum())
        charge = self.neurons[-1].charge_seq(current)
        return NetworkOutput(spikes=s, membrane=charge, layer_spike_counts=counts)


def network_class() -> Any:
    """The registry's builder entry (:data:`spikebench.backends.conv._BUILDERS`)."""
    return SpikingJellyConvNetwork
