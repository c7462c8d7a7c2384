"""snnTorch backend: ``nn.Linear`` layers and ``snntorch.Leaky`` neurons, pinned to the shared
equation of :mod:`spikebench.backends.base`.

snnTorch 1.0's ``Leaky`` (``snntorch/_neurons/leaky.py``) computes, per step, from the stored
post-reset membrane ``mem``::

    reset = Θ(mem - θ).detach()                                     (mem_reset)
    mem   = β mem + I - reset θ         (subtract)   |  β (1 - reset) mem + I   (zero)
    spk   = Θ(mem - θ)  with spike_grad's surrogate in backward      (fire, strict ``>``)
    if not reset_delay:  mem = mem - (spk - reset) θ   |   mem - (spk - reset) mem

With its default ``reset_delay=True`` the reset of a spike at ``t`` is applied at ``t+1`` (the
returned ``mem`` is not reset in the step that fired). With ``reset_delay=False`` the reset acts
in the step of the spike, and ``- reset`` cancels the detached reset applied at the start of the
step: ``U[t] = H[t] - θ S[t]``, the reset term *not* detached (it goes through ``spk``). One
difference is left: the spike of step ``t`` is tested on ``β U[t-1] + I - θ Θ(U[t-1] - θ)``, so
when ``U[t-1] > θ`` (possible with subtract reset once ``H > 2θ``) snnTorch subtracts θ twice
before the comparison. :class:`PinnedLeaky` overrides ``mem_reset`` to return zeros, which
removes that start-of-step reset; everything else is snnTorch's own code, and ``fire`` is wrapped
only to record the charge ``H[t]`` (snnTorch returns the post-reset ``mem``).

Surrogates (``snntorch.surrogate``; the forward is ``(z > 0).float()``, strict)::

    fast_sigmoid(slope=k):  1 / (k|z| + 1)²                     = spikebench fast_sigmoid(k)
    atan(alpha=k):          (k/2) / (1 + (π/2 · k · z)²)         = spikebench arctan(k)
    sigmoid(slope=k):       k e^{-kz} / (e^{-kz} + 1)²           = spikebench sigmoid(k)

``snntorch.surrogate.sigmoid`` evaluates ``exp(-kz)`` unguarded: for ``kz < -88`` (float32) it
is ``inf/inf = NaN``. The backend feeds it ``max(z, -80/k)``: the forward value is unchanged
(still negative, no spike) and the derivative there is below 1e-33, i.e. zero.

snnTorch's surrogate forward returns float32 whatever the input dtype; spikes are cast back to the
network's dtype so float64 runs stay float64.
"""

from __future__ import annotations

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

try:  # imported at module level so a missing framework fails at get_backend() time
    import snntorch
    from snntorch import surrogate as snn_surrogate
except ImportError as exc:  # pragma: no cover - exercised only without snntorch
    raise ImportError(f"the snntorch backend needs snntorch ({exc})") from exc


def spike_function(kind: str, slope: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ``snntorch.surrogate`` spike function whose derivative is spikebench's ``kind``."""
    if kind == "fast_sigmoid":
        return snn_surrogate.fast_sigmoid(slope=slope)
    if kind == "arctan":
        return snn_surrogate.atan(alpha=slope)
    if kind == "sigmoid":
        sig = snn_surrogate.sigmoid(slope=slope)
        floor = -80.0 / slope

        def guarded_sigmoid(z: torch.Tensor) -> torch.Tensor:
            return sig(z.clamp(min=floor))

        return guarded_sigmoid
    raise BackendError(f"snntorch backend: unknown surrogate {kind!r}")


class PinnedLeaky(snntorch.Leaky):
    """``snntorch.Leaky`` with ``reset_delay=False`` and no start-of-step reset.

    ``H[t] = β U[t-1] + I[t]``, ``S[t] = Θ(H[t] - θ)``, ``U[t] = H[t] - θ S[t]`` (subtract),
    ``H[t] (1 - S[t])`` (zero) or ``H[t]`` (none). :attr:`charge` holds the last ``H[t]``.
    """

    def __init__(self, beta: float, threshold: float, spike_grad, reset: str) -> None:
        super().__init__(beta=beta, threshold=threshold, spike_grad=spike_grad,
                         reset_mechanism=reset, reset_delay=False)
        self.charge: torch.Tensor | None = None
        self._exact = {"beta": float(beta), "threshold": float(threshold)}

    def _apply(self, fn, recurse=True):
        # snnTorch stores beta/threshold as float32 buffers: refill them after a dtype change so
        # float64 runs use the exact values, not float32-rounded ones.
        out = super()._apply(fn, recurse)
        _refill(self, self._exact)
        return out

    def mem_reset(self, mem: torch.Tensor) -> torch.Tensor:
        # With reset_delay=False the reset of step t is applied inside step t; the detached
        # start-of-step reset only cancels against it, except in the spike test (see module doc).
        return torch.zeros_like(mem)

    def fire(self, mem: torch.Tensor) -> torch.Tensor:
        self.charge = mem
        return super().fire(mem).to(mem.dtype)

    def last_charge(self) -> torch.Tensor:
        """``H[t]`` of the step just run."""
        if self.charge is None:
            raise BackendError("PinnedLeaky: no step has run yet")
        return self.charge


def _pinned(neurons: nn.ModuleList) -> list[PinnedLeaky]:
    """A network's neurons as what they are (``nn.ModuleList`` yields plain modules)."""
    return cast("list[PinnedLeaky]", list(neurons))


def _refill(module: nn.Module, exact: dict[str, float]) -> None:
    with torch.no_grad():
        for name, value in exact.items():
            buf = getattr(module, name)
            if torch.is_tensor(buf) and buf.is_floating_point():
                buf.fill_(value)


class _ExactSynaptic(snntorch.Synaptic):
    """``snntorch.Synaptic`` whose alpha/beta buffers keep their exact value across dtypes."""

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__(alpha=alpha, beta=beta, threshold=1.0, reset_mechanism="none",
                         reset_delay=False)
        self._exact = {"alpha": float(alpha), "beta": float(beta)}

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        _refill(self, self._exact)
        return out


class SnnTorchNetwork(LinearLayersWeights, nn.Module, SpikingNetwork[NetworkSpec]):
    """``nn.Linear`` → :class:`PinnedLeaky` per layer, stepped over time in Python (the
    idiomatic snnTorch loop, with explicit ``mem`` state initialised by ``reset_mem``)."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(
            nn.Linear(a, b, bias=spec.bias) for a, b in zip(spec.sizes[:-1], spec.sizes[1:])
        )
        self.neurons = nn.ModuleList(
            PinnedLeaky(spec.beta, spec.threshold, spike_function(spec.surrogate, spec.slope),
                        spec.reset)
            for _ in self.layers
        )

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        dtype = self.layers[0].weight.dtype
        x = x.to(dtype)
        neurons = _pinned(self.neurons)
        mems = [lif.reset_mem() for lif in neurons]  # fresh zero state per call
        counts = [x.new_zeros(()) for _ in self.layers]
        out_spikes, out_charge = [], []
        for t in range(x.shape[0]):
            s = x[t]
            for i, (fc, lif) in enumerate(zip(self.layers, neurons)):
                s, mems[i] = lif(fc(s), mems[i])
                counts[i] = counts[i] + s.detach().sum()
            out_spikes.append(s)
            out_charge.append(neurons[-1].last_charge())
        return NetworkOutput(spikes=torch.stack(out_spikes), membrane=torch.stack(out_charge),
                             layer_spike_counts=counts)



class SnnTorchTempotron(nn.Module, TempotronNetwork):
    """Tempotron potential from ``snntorch.Synaptic`` (no firing, no reset).

    ``Synaptic`` runs ``syn[t] = α syn[t-1] + X[t]``, ``mem[t] = β mem[t-1] + syn[t]`` with
    ``α = e^{-1/τs}``, ``β = e^{-1/τ}``. An impulse ``X[m] = 1`` gives
    ``mem[m+n] = (β^{n+1} - α^{n+1}) / (β - α) = K(n+1) / (V0 (β - α))``: the discrete
    double-exponential is the sampled kernel, one step early and scaled. Hence
    ``V[t] = V0 (β - α) mem[t-1]`` (``V[0] = 0``). A spike at a non-integer time
    ``t_i = m + f`` enters as two impulses, ``a`` at ``m`` and ``b`` at ``m + 1``, with
    ``a = (β^{1-f} - α^{1-f}) / (β - α)``, ``b = α^{1-f} - α a``, which reproduce
    ``K(t - t_i)`` exactly on the grid (``f = 0``: ``a = 1, b = 0``). The input current of
    the neuron is ``X W_afferentᵀ``, an ``nn.Linear`` without bias whose weight is
    :attr:`weight`. Spike times must be ``>= 0`` (``inf``/NaN = no spike).
    """

    def __init__(self, n_inputs: int, n_outputs: int, *, steps: int, tau: float = 15.0,
                 tau_s: float | None = None) -> None:
        super().__init__()
        self.steps, self.tau = int(steps), float(tau)
        self.tau_s = float(tau_s) if tau_s is not None else self.tau / 4
        self.v0 = kernel_v0(self.tau, self.tau_s)  # validates tau, tau_s
        self.alpha, self.beta = math.exp(-1 / self.tau_s), math.exp(-1 / self.tau)
        self.fc = nn.Linear(n_inputs, n_outputs, bias=False)
        with torch.no_grad():
            self.fc.weight.normal_(0.0, 0.01)
        self.neuron = _ExactSynaptic(self.alpha, self.beta)

    @property
    def weight(self) -> torch.Tensor:
        return self.fc.weight

    def impulses(self, spike_times: torch.Tensor) -> torch.Tensor:
        """``[steps, B, N_in]`` input train ``X`` placing each spike as described above."""
        dtype = self.fc.weight.dtype
        times = spike_times.to(dtype)
        finite = torch.isfinite(times)
        if bool((times[finite] < 0).any()):
            raise BackendError("snntorch Tempotron: spike times must be >= 0 (inf = no spike)")
        m = torch.where(finite, torch.floor(times), torch.full_like(times, float(self.steps)))
        f = torch.where(finite, times - m, torch.zeros_like(times))
        a_, b_ = self.alpha, self.beta
        g = 1.0 - f
        a = (b_ ** g - a_ ** g) / (b_ - a_)
        b = a_ ** g - a_ * a
        x = times.new_zeros((self.steps + 1, *times.shape))
        idx = m.clamp(max=self.steps).long()
        x.scatter_add_(0, idx[None], a[None])
        x.scatter_add_(0, (idx + 1).clamp(max=self.steps)[None], b[None])
        return x[: self.steps]

    def forward(self, spike_times: torch.Tensor) -> torch.Tensor:
        return self._potential(self.impulses(spike_times))

    def prepare(self, spike_times: torch.Tensor, kernel: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The impulse trains of the patterns, placed once (they do not depend on the
        weights), then snnTorch's ``Synaptic`` dynamics per call: the numbers :meth:`forward`
        gives. The rule's ``kernel`` is not used."""
        x = self.impulses(spike_times)
        return lambda idx: self._potential(x[:, idx])

    def _potential(self, x: torch.Tensor) -> torch.Tensor:
        """``V`` ``[T, B, N_out]`` from the input train ``x`` ``[T, B, N_in]``."""
        current = self.fc(x)  # [T, B, N_out]
        syn, mem = self.neuron.reset_mem()
        mems = []
        for t in range(self.steps - 1):
            _, syn, mem = self.neuron(current[t], syn, mem)
            mems.append(mem)
        zero = current.new_zeros(current.shape[1:])
        v = torch.stack([zero, *mems]) if mems else zero[None]
        return (self.v0 * (self.beta - self.alpha)) * v



class SnnTorchConvNetwork(LinearLayersWeights, nn.Module, SpikingNetwork[ConvNetworkSpec]):
    """snnTorch's convolutional network for :class:`~spikebench.backends.conv.ConvNetworkSpec`.

    ``nn.Conv2d`` → ``nn.MaxPool2d`` → :class:`PinnedLeaky` per stage, ``nn.Linear`` →
    ``PinnedLeaky`` per dense layer, stepped over time in Python (the idiomatic snnTorch loop
    of its convolutional tutorial). The neuron is the same pinned ``snntorch.Leaky`` the dense
    network uses (``H[t] = β U[t-1] + I[t]``, ``S[t] = Θ(H[t] - θ)``, reset in the step of the
    spike).
    """

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
        neurons = _pinned(self.neurons)
        mems = [lif.reset_mem() for lif in neurons]  # fresh zero state per call
        counts = [x.new_zeros(()) for _ in self.layers]
        out_spikes, out_charge = [], []
        for t in range(x.shape[0]):
            s = x[t]
            for i, (syn, lif) in enumerate(zip(self.layers, neurons)):
                if i < n_conv:
                    cur = self.pool(syn(s))
                else:
                    cur = syn(s.flatten(1))
                s, mems[i] = lif(cur, mems[i])
                counts[i] = counts[i] + s.detach().sum()
            out_spikes.append(s)
            out_charge.append(neurons[-1].last_charge())
        return NetworkOutput(spikes=torch.stack(out_spikes), membrane=torch.stack(out_charge),
                             layer_spike_counts=counts)


class SnnTorchBackend(ModuleBackend):
    """snnTorch (``snntorch.Leaky`` / ``snntorch.Synaptic``), pinned to the shared equation."""

    name = "snntorch"
    framework = "snntorch"
    capabilities = ALL_CAPABILITIES
    network_cls = SnnTorchNetwork
    conv_network_cls = SnnTorchConvNetwork
    tempotron_cls = SnnTorchTempotron
