"""SpikingJelly backend: ``activation_based`` multi-step layers and neurons, pinned to the shared
equation of :mod:`spikebench.backends.base`; the Tempotron from ``timing_based``.

SpikingJelly 2.0's ``neuron.LIFNode`` (``activation_based/neuron/lif.py``; its CPU/torch path is
``spikingjelly/_ops/lif/reference.py``) computes::

    H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / τ         decay_input=True (default)
    H[t] = V[t-1] - (V[t-1] - V_reset) / τ + X[t]            decay_input=False
    S[t] = heaviside(H[t] - V_th)          heaviside(z) = [z >= 0]   (non-strict!)
    V[t] = H[t] - V_th S[t]  (v_reset=None, "soft")  |  S V_reset + (1 - S) H[t]  (hard)

so with ``decay_input=False``, ``V_reset = 0`` in the charge (SpikingJelly uses 0 for the soft
reset too) and ``τ = 1 / (1 - β)`` the charge is ``β V + X`` (exact in real arithmetic; in floating
point ``1 - 1/τ`` may differ from ``β`` in the last bit). ``LIFNode`` asserts ``τ > 1``, so
``β = 0`` (or a β so small that ``1/(1-β)`` rounds to 1) cannot be expressed, and it has no
"no reset" mode: those two cases use
:class:`PinnedLIFNode`, a ``SimpleBaseNode`` subclass (SpikingJelly's charge/fire/reset
interface) whose ``neuronal_charge`` is the pinned ``H = β V + X``. ``detach_reset=False`` keeps
the reset in the graph, and the reset acts in the step of the spike (SpikingJelly's only mode).

Threshold: SpikingJelly fires at ``H >= V_th``; the pinned equation at ``H > θ``. The backend's
surrogate modules (:class:`StrictSurrogate`, a ``SurrogateFunctionBase``) fire strictly and use
SpikingJelly's own backward functions::

    arctan(k):       surrogate.atan_backward(alpha=k)      (k/2) / (1 + (π/2 · k · z)²)
    sigmoid(k):      surrogate.sigmoid_backward(alpha=k)   k σ(kz)(1 - σ(kz))
    fast_sigmoid(k): (2/k) surrogate.soft_sign_backward(alpha=k)
                     (SoftSign's derivative is k / (2 (1 + k|z|)²); SpikingJelly has no
                     fast sigmoid with spikebench's / snnTorch's scale)

Because these modules are not SpikingJelly's built-in classes, ``lif_multi_step`` routes to its
torch reference implementation (autograd through a Python loop) rather than the fused op
``torch.ops.sj_lif`` (which hard-codes ``>=`` and float32 state). The neuron's stored voltage
sequence (``store_v_seq=True``) is the post-reset ``V``; the charge output ``H`` of the last
layer is recomputed from it with SpikingJelly's charge expression, bit for bit the value the
neuron compared with the threshold.

The state is reset with ``functional.reset_net`` at the start of every forward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from spikebench.backends.base import (
    LinearLayersWeights,
    ModuleBackend,
    NetworkOutput,
    NetworkSpec,
    SpikingNetwork,
    TempotronNetwork,
)
from spikebench.backends.capabilities import ALL as ALL_CAPABILITIES
from spikebench.backends.conv import ConvNetworkSpec, conv_layers
from spikebench.backends.tempotron import kernel_v0
from spikebench.errors import BackendError

# SpikingJelly's custom ops make torch look for Triton kernels; on a CPU machine torch logs
# "Triton not available" once per op, which is noise to users.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

try:
    from spikingjelly.activation_based import functional as sj_functional
    from spikingjelly.activation_based import layer as sj_layer
    from spikingjelly.activation_based import neuron as sj_neuron
    from spikingjelly.activation_based import surrogate as sj_surrogate
    from spikingjelly.activation_based.neuron.base_node import SimpleBaseNode
except ImportError as exc:  # pragma: no cover - exercised only without spikingjelly
    raise ImportError(f"the spikingjelly backend needs spikingjelly ({exc})") from exc


def _fast_sigmoid_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    grad, _ = sj_surrogate.soft_sign_backward(grad_output, x, alpha)
    return grad * (2.0 / alpha), None


_BACKWARD = {
    "arctan": sj_surrogate.atan_backward,
    "sigmoid": sj_surrogate.sigmoid_backward,
    "fast_sigmoid": _fast_sigmoid_backward,
}


class _StrictSpike(torch.autograd.Function):
    """Forward ``[z > 0]``; backward one of SpikingJelly's surrogate backward functions."""

    @staticmethod
    def forward(ctx, x, alpha, kind):
        ctx.save_for_backward(x)
        ctx.alpha, ctx.kind = alpha, kind
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return _BACKWARD[ctx.kind](grad_output, x, ctx.alpha)[0], None, None


class StrictSurrogate(sj_surrogate.SurrogateFunctionBase):
    """A SpikingJelly surrogate module firing at ``z > 0`` (``kind``: arctan/sigmoid/fast_sigmoid).

    ``spiking=False`` gives the primitive (smooth) function, as SpikingJelly's modules do.
    """

    def __init__(self, kind: str, alpha: float, spiking: bool = True) -> None:
        if kind not in _BACKWARD:
            raise BackendError(f"spikingjelly backend: unknown surrogate {kind!r}")
        super().__init__(spiking=spiking, alpha=float(alpha), kind=kind)

    @staticmethod
    def spiking_function(x: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
        return _StrictSpike.apply(x, alpha, kind)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float, kind: str) -> torch.Tensor:
        if kind == "arctan":
            return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5
        if kind == "sigmoid":
            return torch.sigmoid(alpha * x)
        return 0.5 * (alpha * x / (1 + (alpha * x).abs())) + 0.5


class PinnedLIFNode(SimpleBaseNode):
    """``H[t] = β V[t-1] + X[t]``; fire ``H > θ`` (via the surrogate); reset subtract / zero / none.

    Used where ``LIFNode`` cannot express the spec (``β = 0`` or ``reset = "none"``).
    :attr:`charge_seq` collects ``H[t]`` in multi-step mode.
    """

    v: torch.Tensor  # membrane state: a SimpleBaseNode memory, a tensor from the first charge on

    def __init__(self, beta: float, threshold: float, reset: str,
                 surrogate_function: sj_surrogate.SurrogateFunctionBase) -> None:
        super().__init__(v_threshold=threshold, v_reset=None if reset == "subtract" else 0.0,
                         surrogate_function=surrogate_function, detach_reset=False,
                         step_mode="m")
        self.beta, self.reset_mode = float(beta), reset
        self.charges: list[torch.Tensor] = []

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.beta * self.v + x

    def neuronal_fire(self) -> torch.Tensor:
        self.charges.append(self.v)
        return super().neuronal_fire()

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        if self.reset_mode != "none":
            super().neuronal_reset(spike)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.charges = []
        return super().multi_step_forward(x_seq)

    def charge_seq(self, x_seq: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.charges)


class _LIFNode(sj_neuron.LIFNode):
    """``LIFNode(τ = 1/(1-β), decay_input=False)``; :meth:`charge_seq` recomputes ``H``."""

    def __init__(self, beta: float, threshold: float, reset: str,
                 surrogate_function: sj_surrogate.SurrogateFunctionBase,
                 store_v_seq: bool) -> None:
        tau = math.inf if beta == 1.0 else 1.0 / (1.0 - beta)
        super().__init__(tau=tau, decay_input=False, v_threshold=threshold,
                         v_reset=None if reset == "subtract" else 0.0,
                         surrogate_function=surrogate_function, detach_reset=False,
                         step_mode="m", store_v_seq=store_v_seq)

    def charge_seq(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``H[t] = V[t-1] - (V[t-1] - 0) / τ + X[t]`` from the stored post-reset voltages."""
        v = self.v_seq
        prev = torch.cat([torch.zeros_like(v[:1]), v[:-1]])
        return prev - (prev - 0.0) / self.tau + x_seq


#: A neuron module of this backend: both record ``H[t]`` for :meth:`charge_seq`.
Node = PinnedLIFNode | _LIFNode


def make_node(spec: NetworkSpec, store_v_seq: bool) -> Node:
    """The SpikingJelly neuron module for ``spec`` (see the module docstring)."""
    sg = StrictSurrogate(spec.surrogate, spec.slope)
    tau = math.inf if spec.beta == 1.0 else 1.0 / (1.0 - spec.beta)
    if spec.reset == "none" or not tau > 1.0:  # LIFNode asserts τ > 1 (β > 0 in floating point)
        return PinnedLIFNode(spec.beta, spec.threshold, spec.reset, sg)
    return _LIFNode(spec.beta, spec.threshold, spec.reset, sg, store_v_seq)


class SpikingJellyNetwork(LinearLayersWeights, nn.Module, SpikingNetwork[NetworkSpec]):
    """``layer.Linear(step_mode="m")`` → LIF node per layer, each run over all ``T`` steps."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        n = spec.n_layers
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for i, (a, b) in enumerate(zip(spec.sizes[:-1], spec.sizes[1:])):
            self.layers.append(sj_layer.Linear(a, b, bias=spec.bias, step_mode="m"))
            self.neurons.append(make_node(spec, store_v_seq=i == n - 1))

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        sj_functional.reset_net(self)
        s = x.to(self.layers[0].weight.dtype)
        counts = []
        current = s
        for fc, node in zip(self.layers, self.neurons):
            current = fc(s)
            s = node(current)
            counts.append(s.detach().sum())
        charge = cast(Node, self.neurons[-1]).charge_seq(current)
        return NetworkOutput(spikes=s, membrane=charge, layer_spike_counts=counts)



class SpikingJellyTempotron(nn.Module, TempotronNetwork):
    """Tempotron on ``spikingjelly.timing_based.neuron.Tempotron``.

    SpikingJelly 2.0's Tempotron is a continuous-event model: its ``forward`` returns the
    *shunted* peak ``(v_max, t_peak, t_spike)`` per trial, not a potential trace. This layer owns
    one such module (its ``weight`` is :attr:`weight`) and evaluates the unshunted potential on
    the grid with SpikingJelly's own PSP kernel (``spikingjelly._ops.tempotron.reference._psp``:
    ``e^{-d/τ} (1 - e^{-δ d}) / δ / normaliser`` with ``δ = 1/τs - 1/τ``, which is
    ``K(d)`` normalised to a unit peak). :meth:`peak` exposes the continuous-time answer of the
    same weights (for cross-checks; the rule's shunting on the grid lives in the harness).
    """

    def __init__(self, n_inputs: int, n_outputs: int, *, steps: int, tau: float = 15.0,
                 tau_s: float | None = None) -> None:
        super().__init__()
        from spikingjelly.timing_based import neuron as tb_neuron

        self.steps, self.tau = int(steps), float(tau)
        self.tau_s = float(tau_s) if tau_s is not None else self.tau / 4
        kernel_v0(self.tau, self.tau_s)  # validates
        self.neuron = tb_neuron.Tempotron(n_inputs, n_outputs, duration=float(max(steps - 1, 1)),
                                          tau=self.tau, tau_s=self.tau_s)
        with torch.no_grad():
            self.neuron.weight.normal_(0.0, 0.01)

    @property
    def weight(self) -> torch.Tensor:
        return self.neuron.weight

    def kernel(self, delay: torch.Tensor) -> torch.Tensor:
        """SpikingJelly's normalised PSP kernel at ``delay`` (0 for ``delay < 0`` / non-finite)."""
        from spikingjelly._ops.tempotron.reference import _phi, _psp
        from spikingjelly.timing_based.functional import _parameters

        slow, fast, delta = _parameters(1.0, self.tau, self.tau_s, 1.0)
        d64 = delay.double()
        valid = torch.isfinite(d64) & (d64 >= 0)
        d = torch.where(valid, d64, torch.zeros_like(d64))
        peak = d.new_tensor(delta * slow).log1p() / delta
        normalizer = torch.exp(-peak / slow) * _phi(peak, delta)
        value, _, _ = _psp(d, slow, fast, delta, normalizer)
        return torch.where(valid, value, torch.zeros_like(value)).to(delay.dtype)

    def forward(self, spike_times: torch.Tensor) -> torch.Tensor:
        w = self.neuron.weight
        t = torch.arange(self.steps, device=spike_times.device, dtype=w.dtype)
        k = self.kernel(t[:, None, None] - spike_times[None].to(w.dtype))  # [T, B, N_in]
        return k @ w.T

    def prepare(self, spike_times: torch.Tensor, kernel: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
        """SpikingJelly's kernel matrix of the patterns, evaluated once (by its own ``_psp``, in
        chunks of patterns to bound the float64 temporaries), then ``K[:, idx] Wᵀ`` per call:
        the numbers :meth:`forward` gives. The rule's ``kernel`` is not used."""
        w = self.neuron.weight
        t = torch.arange(self.steps, device=spike_times.device, dtype=w.dtype)
        times = spike_times.to(w.dtype)
        fixed = torch.empty((self.steps, *times.shape), dtype=w.dtype, device=times.device)
        for start in range(0, len(times), 1024):
            fixed[:, start:start + 1024] = self.kernel(t[:, None, None]
                                                       - times[None, start:start + 1024])
        return lambda idx: fixed[:, idx] @ self.neuron.weight.T

    def peak(self, spike_times: torch.Tensor, threshold: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SpikingJelly's continuous ``(v_max, t_peak, t_spike)`` for ``[B, N_in]`` spike times
        on the window ``[0, steps - 1]`` (shunting after the first crossing of ``threshold``)."""
        from spikingjelly.timing_based import functional as tb_functional

        w = self.neuron.weight
        times = spike_times.to(w.dtype)
        valid = torch.isfinite(times) & (times >= 0) & (times <= self.neuron.duration)
        batch_idx, input_idx = valid.nonzero(as_tuple=True)
        counts = torch.bincount(batch_idx, minlength=times.shape[0])
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return tb_functional.tempotron(times[batch_idx, input_idx], input_idx, offsets, w,
                                       self.neuron.duration, self.tau, self.tau_s,
                                       float(threshold))



class SpikingJellyConvNetwork(LinearLayersWeights, nn.Module,
                              SpikingNetwork[ConvNetworkSpec]):
    """SpikingJelly's convolutional network for :class:`~spikebench.backends.conv.
    ConvNetworkSpec`.

    ``layer.Conv2d`` → ``layer.MaxPool2d`` → LIF node per stage and ``layer.Flatten`` →
    ``layer.Linear`` → LIF node per dense layer, all in multi-step mode (``step_mode="m"``:
    each module runs over all ``T`` steps at once, convolutions over ``T·B``). The nodes are
    those of the dense network (:func:`make_node`), so ``H[t] = β V[t-1] + X[t]``,
    ``S[t] = Θ(H[t] - θ)``, reset in the step of the spike. The state is reset with
    ``functional.reset_net`` at the start of every forward pass.
    """

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
        charge = cast(Node, self.neurons[-1]).charge_seq(current)
        return NetworkOutput(spikes=s, membrane=charge, layer_spike_counts=counts)


class SpikingJellyBackend(ModuleBackend):
    """SpikingJelly (``activation_based`` LIF nodes, ``timing_based`` Tempotron), pinned."""

    name = "spikingjelly"
    framework = "spikingjelly"
    capabilities = ALL_CAPABILITIES
    network_cls = SpikingJellyNetwork
    conv_network_cls = SpikingJellyConvNetwork
    tempotron_cls = SpikingJellyTempotron
