"""The backend contract: one framework-neutral network spec, built and run by every backend.

A *backend* turns a :class:`NetworkSpec` into a :class:`SpikingNetwork` (a ``torch.nn.Module``)
using its own framework's primitives. All backends implement the same neuron, pinned here so
that the results table compares frameworks, not accidental equation differences.

Leaky integrate-and-fire, per layer ``l`` and time step ``t`` (``I`` = input current)::

    I[t]  = W x[t] + b                                  (x = spikes of the layer below, or input)
    H[t]  = beta * U[t-1] + I[t]                        (charge; U[-1] = 0)
    S[t]  = Θ(H[t] - θ)              Θ(z) = 1 if z > 0 else 0   (strict comparison)
    U[t]  = H[t] - θ S[t]            reset = "subtract"
          = H[t] (1 - S[t])          reset = "zero"
          = H[t]                     reset = "none"

The reset acts in the same step as the spike (SpikingJelly's default; snnTorch with
``reset_delay=False``) and the reset term is not detached from the graph. In the backward pass
``dS/dH`` is replaced by the surrogate derivative of ``H - θ`` (:data:`SURROGATES`).

The network's output is the last layer's spikes ``S[t]`` and charge ``H[t]`` (the membrane before
reset, which is what a membrane-potential loss reads) for every step.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch

Reset = Literal["subtract", "zero", "none"]
Surrogate = Literal["fast_sigmoid", "arctan", "sigmoid"]

#: Surrogate derivatives ``dS/dH`` of ``z = H - θ`` with slope ``k`` (the same in every backend):
#: fast_sigmoid: 1 / (1 + k|z|)^2            (snnTorch ``fast_sigmoid(slope=k)``)
#: arctan:       (k/2) / (1 + (π/2 · k · z)^2)  (snnTorch ``atan(alpha=k)``,
#:                                              SpikingJelly ``ATan(alpha=k)``)
#: sigmoid:      k σ(kz)(1 - σ(kz))          (snnTorch ``sigmoid(slope=k)``,
#:                                            SpikingJelly ``Sigmoid(alpha=k)``)
SURROGATES: tuple[str, ...] = ("fast_sigmoid", "arctan", "sigmoid")
RESETS: tuple[str, ...] = ("subtract", "zero", "none")


from spikebench.errors import BackendError  # noqa: E402  (re-exported here for plugins)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Framework-neutral description of a feed-forward LIF network.

    ``sizes`` lists layer widths from input to output, e.g. ``(64, 128, 2)``: two LIF layers.
    """

    sizes: tuple[int, ...]
    beta: float = 0.9
    threshold: float = 1.0
    reset: Reset = "subtract"
    surrogate: Surrogate = "fast_sigmoid"
    slope: float = 25.0
    neuron: str = "lif"
    bias: bool = True

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise BackendError(f"NetworkSpec.sizes must list >= 2 positive widths, got {sizes}")
        if not 0.0 <= self.beta <= 1.0:
            raise BackendError(f"NetworkSpec.beta must be in [0, 1], got {self.beta}")
        if self.threshold <= 0:
            raise BackendError(f"NetworkSpec.threshold must be > 0, got {self.threshold}")
        if self.reset not in RESETS:
            raise BackendError(f"NetworkSpec.reset must be one of {RESETS}, got {self.reset!r}")
        if self.surrogate not in SURROGATES:
            raise BackendError(
                f"NetworkSpec.surrogate must be one of {SURROGATES}, got {self.surrogate!r}"
            )
        if self.slope <= 0:
            raise BackendError(f"NetworkSpec.slope must be > 0, got {self.slope}")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1


@dataclasses.dataclass
class NetworkOutput:
    """What one forward pass over ``[T, B, F]`` input returns.

    ``spikes`` and ``membrane`` are the output layer's ``S[t]`` and ``H[t]``, shape ``[T, B, O]``;
    ``layer_spike_counts`` holds, per layer, the total number of spikes in the batch (a 0-d tensor,
    for spike and synaptic-operation statistics).
    """

    spikes: torch.Tensor
    membrane: torch.Tensor
    layer_spike_counts: list[torch.Tensor]


class SpikingNetwork(abc.ABC):
    """A network built by a backend. Concrete classes also subclass ``torch.nn.Module``.

    Weights are exchanged in one neutral format (``[(W [out, in], b [out] or None), ...]`` per
    layer, float tensors) so the same weights can be loaded into every backend.
    """

    spec: NetworkSpec

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> NetworkOutput:
        """Run all time steps of ``x`` (``[T, B, F]``) from a fresh (zero) state."""

    @abc.abstractmethod
    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Detached copies of each layer's ``(W, b)``."""

    @abc.abstractmethod
    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Load ``(W, b)`` per layer (shapes must match the spec)."""


class TempotronNetwork(abc.ABC):
    """A Tempotron layer (Gütig & Sompolinsky 2006). Concrete classes also subclass ``nn.Module``.

    ``forward(spike_times)`` takes one spike time per afferent, ``[B, N_in]`` in time-step units
    (``inf`` or NaN = no spike), and returns the *unshunted* potential on the grid
    ``t = 0, 1, ..., steps-1``::

        V[t, b, o] = Σ_i weight[o, i] K(t - t_i)      K(s) = V0 (e^{-s/τ} - e^{-s/τs}) for s >= 0

    with ``V0`` normalising the kernel's peak to 1 (:func:`spikebench.backends.tempotron.
    psp_kernel`). Shunting after the first threshold crossing and the learning rule live in
    :mod:`spikebench.harness.rules.tempotron`, identical for every backend.
    """

    weight: torch.Tensor  # [N_out, N_in], an nn.Parameter
    steps: int
    tau: float
    tau_s: float

    @abc.abstractmethod
    def forward(self, spike_times: torch.Tensor) -> torch.Tensor:
        """``[B, N_in]`` spike times -> ``[steps, B, N_out]`` potentials."""

    def prepare(self, spike_times: torch.Tensor, kernel: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``potential(idx)``: the unshunted potential ``[steps, len(idx), N_out]`` of patterns
        ``idx`` (a 1-d index tensor) of ``spike_times`` ``[n, N_in]`` with the layer's weights
        *at the time of the call*; equal to ``forward(spike_times[idx])``.

        A rule that presents the same patterns for many epochs prepares them once, so that what
        does not depend on the weights is computed once per fit and only the weight-dependent
        part runs on every mini-batch, alike for every backend. ``kernel``: the rule's kernel
        matrix ``K(t − t_i)`` ``[steps, n, N_in]`` of the same patterns on this layer's grid
        (τ, τs), for a layer whose forward is that kernel times ``Wᵀ``; a layer with dynamics of
        its own ignores it. This default keeps the spike times and calls :meth:`forward`;
        :func:`~spikebench.backends.conformance_tempotron.check_tempotron` checks overrides."""
        return lambda idx: self(spike_times[idx])


class Backend(abc.ABC):
    """A pluggable SNN implementation, registered in the ``spikebench.backends`` entry-point group.

    Subclasses set the class attributes to declare what they support and implement :meth:`build`.
    Run :func:`spikebench.backends.conformance.check_backend` from your tests to prove conformance.
    """

    name: ClassVar[str]
    #: Python distribution that provides the framework, for version reporting.
    framework: ClassVar[str] = ""
    neurons: ClassVar[frozenset[str]] = frozenset({"lif"})
    resets: ClassVar[frozenset[str]] = frozenset(RESETS)
    surrogates: ClassVar[frozenset[str]] = frozenset(SURROGATES)
    #: Names of the learning rules this backend can serve (see ``spikebench rules``).
    rules: ClassVar[frozenset[str]] = frozenset({"surrogate"})

    @abc.abstractmethod
    def build(
        self,
        spec: NetworkSpec,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> SpikingNetwork:
        """Build a network for ``spec`` on ``device``; ``seed`` fixes the initial weights."""

    def version(self) -> str:
        """Version of the underlying framework (or of spikebench for the custom engine)."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.framework or "spikebench")
        except PackageNotFoundError:
            return "unknown"

    def build_tempotron(
        self,
        n_inputs: int,
        n_outputs: int,
        *,
        steps: int,
        tau: float = 15.0,
        tau_s: float | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> TempotronNetwork:
        """Build a Tempotron layer from this framework's primitives (optional capability).

        Backends that list ``"tempotron"`` in :attr:`rules` override this; see
        :class:`TempotronNetwork` for the contract.
        """
        raise BackendError(f"backend {self.name!r} does not provide a Tempotron primitive")

    def unsupported_rule(self, rule: str) -> str:
        """Why this backend cannot serve learning rule ``rule`` ("" when it can): the one
        wording of that message, used by the cell planner and by the rules."""
        return unsupported_rule(self, rule)

    def require_rule(self, rule: str) -> None:
        """Raise :class:`BackendError` with :meth:`unsupported_rule`'s message if needed."""
        require_rule(self, rule)

    def check_supported(self, spec: NetworkSpec, rule: str | None = None) -> None:
        """Raise :class:`BackendError` naming the field if ``spec``/``rule`` is not supported."""
        problems = []
        if spec.neuron not in self.neurons:
            problems.append(f"neuron {spec.neuron!r} (supported: {sorted(self.neurons)})")
        if spec.reset not in self.resets:
            problems.append(f"reset {spec.reset!r} (supported: {sorted(self.resets)})")
        if spec.surrogate not in self.surrogates:
            problems.append(f"surrogate {spec.surrogate!r} (supported: {sorted(self.surrogates)})")
        if rule is not None and rule not in self.rules:
            problems.append(f"rule {rule!r} (supported: {', '.join(sorted(self.rules))})")
        if problems:
            raise BackendError(f"backend {self.name!r} does not support " + "; ".join(problems))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version(),
            "rules": sorted(self.rules),
            "neurons": sorted(self.neurons),
            "resets": sorted(self.resets),
            "surrogates": sorted(self.surrogates),
        }


def build_seeded(factory: Any, seed: int | None) -> Any:
    """Call ``factory()`` with the global RNG seeded (and restored afterwards) when ``seed`` is set.

    Shared by the backends so that the same ``seed`` gives every backend the same initial weights
    (all of them initialise ``nn.Linear`` layers in the same order).
    """
    if seed is None:
        return factory()
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


class ModuleBackend(Backend):
    """A :class:`Backend` whose network and Tempotron are ``torch.nn.Module`` classes built from
    their arguments: set :attr:`network_cls` (called as ``network_cls(spec)``) and, for the
    Tempotron rule, :attr:`tempotron_cls` (``tempotron_cls(n_inputs, n_outputs, steps=, tau=,
    tau_s=)``). Building checks support, seeds the initial weights (:func:`build_seeded`) and
    moves the module to the device and dtype (float32 by default), as the built-ins do.
    """

    network_cls: ClassVar[Any]
    tempotron_cls: ClassVar[Any] = None

    def build(self, spec, *, device="cpu", dtype=None, seed=None):  # type: ignore[override]
        import torch

        self.check_supported(spec)
        net = build_seeded(lambda: self.network_cls(spec), seed)
        return net.to(device=device, dtype=dtype or torch.float32)

    def build_tempotron(self, n_inputs, n_outputs, *, steps, tau=15.0, tau_s=None,  # type: ignore[override]
                        device="cpu", dtype=None, seed=None):
        if self.tempotron_cls is None:
            return super().build_tempotron(n_inputs, n_outputs, steps=steps, tau=tau,
                                           tau_s=tau_s, device=device, dtype=dtype, seed=seed)
        import torch

        layer = build_seeded(lambda: self.tempotron_cls(n_inputs, n_outputs, steps=steps,
                                                        tau=tau, tau_s=tau_s), seed)
        return layer.to(device=device, dtype=dtype or torch.float32)


class LinearLayersWeights:
    """``get_weights`` / ``set_weights`` for a network whose layers are ``self.layers``, a list
    of ``nn.Linear`` (the neutral ``[(W, b), ...]`` format); shared by the built-in networks."""

    layers: Any  # torch.nn.ModuleList of nn.Linear

    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [
            (lin.weight.detach().clone(), None if lin.bias is None else lin.bias.detach().clone())
            for lin in self.layers
        ]

    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        set_linear_weights(list(self.layers), weights)


def set_linear_weights(layers: Sequence[torch.nn.Linear],
                       weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Copy neutral ``(W, b)`` pairs into ``nn.Linear`` layers, checking shapes (shared helper)."""
    import torch

    weights = list(weights)
    if len(weights) != len(layers):
        raise BackendError(f"expected weights for {len(layers)} layers, got {len(weights)}")
    with torch.no_grad():
        for i, (lin, (w, b)) in enumerate(zip(layers, weights)):
            if tuple(w.shape) != tuple(lin.weight.shape):
                raise BackendError(f"layer {i}: weight shape {tuple(w.shape)} != "
                                   f"{tuple(lin.weight.shape)}")
            lin.weight.copy_(w)
            if lin.bias is not None:
                if b is None:
                    lin.bias.zero_()
                elif tuple(b.shape) != tuple(lin.bias.shape):
                    raise BackendError(f"layer {i}: bias shape {tuple(b.shape)} != "
                                       f"{tuple(lin.bias.shape)}")
                else:
                    lin.bias.copy_(b)
            elif b is not None and bool(torch.any(b != 0)):
                raise BackendError(f"layer {i}: spec has bias=False but a non-zero bias was given")


def unsupported_rule(backend: Any, rule: str) -> str:
    """Why ``backend`` (anything with ``name`` and ``rules``) cannot serve ``rule`` ("" when it
    can): the one wording of that message."""
    if rule in backend.rules:
        return ""
    return (f"backend {backend.name!r} does not support rule {rule!r} "
            f"(supported: {', '.join(sorted(backend.rules))})")


def require_rule(backend: Any, rule: str) -> None:
    """Raise :class:`BackendError` with :func:`unsupported_rule`'s message if needed."""
    reason = unsupported_rule(backend, rule)
    if reason:
        raise BackendError(reason)
