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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from typing import Self

    import torch

from spikebench.backends.capabilities import Capability, capability_set
from spikebench.backends.capabilities import describe as describe_capabilities
from spikebench.backends.specs import (  # re-exported (__all__): the contract's values
    RESETS,
    SURROGATES,
    ConvNetworkSpec,
    NetworkSpec,
    Reset,
    Surrogate,
)
from spikebench.errors import BackendError


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


#: The spec a network was built from: :class:`NetworkSpec` (dense) or :class:`ConvNetworkSpec`.
SpecT = TypeVar("SpecT", bound="NetworkSpec | ConvNetworkSpec")


class TorchModuleMethods:
    """The ``torch.nn.Module`` methods the harness and the rules call on a built network,
    declared for type checkers only: every concrete network also subclasses
    ``torch.nn.Module``, which implements them (the contract stays free of a torch import)."""

    if TYPE_CHECKING:
        def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
        def named_parameters(self, prefix: str = "", recurse: bool = True,
                             remove_duplicate: bool = True
                             ) -> Iterator[tuple[str, torch.nn.Parameter]]: ...
        def train(self, mode: bool = True) -> Self: ...
        def eval(self) -> Self: ...
        def requires_grad_(self, requires_grad: bool = True) -> Self: ...
        def zero_grad(self, set_to_none: bool = True) -> None: ...
        def to(self, *args: Any, **kwargs: Any) -> Self: ...


class SpikingNetwork(TorchModuleMethods, Generic[SpecT], abc.ABC):
    """A network built by a backend. Concrete classes also subclass ``torch.nn.Module``.

    ``SpikingNetwork[NetworkSpec]`` is what :meth:`Backend.build` returns,
    ``SpikingNetwork[ConvNetworkSpec]`` what :meth:`Backend.build_conv` returns; :attr:`spec`
    is the spec it was built from. Weights are exchanged in one neutral format
    (``[(W [out, in], b [out] or None), ...]`` per layer, float tensors) so the same weights can
    be loaded into every backend.
    """

    spec: SpecT

    if TYPE_CHECKING:
        def __call__(self, x: torch.Tensor) -> NetworkOutput: ...

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> NetworkOutput:
        """Run all time steps of ``x`` (``[T, B, F]``) from a fresh (zero) state."""

    @abc.abstractmethod
    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Detached copies of each layer's ``(W, b)``."""

    @abc.abstractmethod
    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Load ``(W, b)`` per layer (shapes must match the spec)."""


class TempotronNetwork(TorchModuleMethods, abc.ABC):
    """A Tempotron layer (Gütig & Sompolinsky 2006). Concrete classes also subclass ``nn.Module``.

    ``forward(spike_times)`` takes one spike time per afferent, ``[B, N_in]`` in time-step units
    (``inf`` or NaN = no spike), and returns the *unshunted* potential on the grid
    ``t = 0, 1, ..., steps-1``::

        V[t, b, o] = Σ_i weight[o, i] K(t - t_i)      K(s) = V0 (e^{-s/τ} - e^{-s/τs}) for s >= 0

    with ``V0`` normalising the kernel's peak to 1 (:func:`spikebench.backends.tempotron.
    psp_kernel`). Shunting after the first threshold crossing and the learning rule live in
    :mod:`spikebench.harness.rules.tempotron`, identical for every backend.
    """

    steps: int
    tau: float
    tau_s: float

    if TYPE_CHECKING:
        def __call__(self, spike_times: torch.Tensor) -> torch.Tensor: ...

        # read by the harness and the rules, never assigned: an attribute or a property
        @property
        def weight(self) -> torch.Tensor:
            """``[N_out, N_in]``, an ``nn.Parameter`` (updated in place by the rules)."""

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
        :func:`~spikebench.backends.conformance.tempotron.check_tempotron` checks overrides."""
        return lambda idx: self(spike_times[idx])


class Backend(abc.ABC):
    """A pluggable SNN implementation, registered in the ``spikebench.backends`` entry-point group.

    A backend declares what it can build (:attr:`capabilities`, a set of
    :class:`~spikebench.backends.capabilities.Capability`) and builds it from spikebench's
    framework-neutral specs with its own framework's primitives. It never names learning rules:
    which backend serves which rule follows from the capabilities a rule needs
    (:mod:`spikebench.harness.rules.serving`).

    Subclasses set the class attributes and implement :meth:`build` (and :meth:`build_conv` /
    :meth:`build_tempotron` for the capabilities they declare). Run
    :func:`spikebench.backends.conformance.check_backend` from your tests to prove conformance.

    Examples
    --------
    >>> from spikebench.backends import get_backend
    >>> from spikebench.backends.capabilities import Capability
    >>> Capability.TEMPOTRON in get_backend("custom").capabilities
    True
    """

    name: ClassVar[str]
    #: Python distribution that provides the framework, for version reporting.
    framework: ClassVar[str] = ""
    neurons: ClassVar[frozenset[str]] = frozenset({"lif"})
    resets: ClassVar[frozenset[str]] = frozenset(RESETS)
    surrogates: ClassVar[frozenset[str]] = frozenset(SURROGATES)
    #: What this backend can build (see :mod:`spikebench.backends.capabilities`).
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.DENSE_LIF, Capability.SURROGATE_GRADIENTS})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "rules" in cls.__dict__:
            raise TypeError(
                f"{cls.__qualname__}.rules: backends declare what they can build, not which "
                "rules they serve; replace it by capabilities = frozenset({Capability."
                "DENSE_LIF, Capability.SURROGATE_GRADIENTS, ...}) (spikebench.backends."
                "capabilities)")
        cls.capabilities = capability_set(cls.capabilities, f"{cls.__qualname__}.capabilities")

    @abc.abstractmethod
    def build(
        self,
        spec: NetworkSpec,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> SpikingNetwork[NetworkSpec]:
        """Build a dense LIF network (capability ``dense_lif``).

        Parameters
        ----------
        spec : NetworkSpec
            The network to build; :meth:`check_supported` refuses what the backend lacks.
        device : str or torch.device, default "cpu"
            Where the parameters live.
        dtype : torch.dtype, optional
            Parameter dtype (float32 by default).
        seed : int, optional
            Fixes the initial weights (the same on every backend for the same seed).

        Returns
        -------
        SpikingNetwork
            A ``torch.nn.Module`` running ``[T, B, F]`` input from a zero state.

        Raises
        ------
        BackendError
            When the spec asks for a neuron, reset or surrogate the backend lacks.
        """

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
        """Build a Tempotron layer (capability ``tempotron``; see :class:`TempotronNetwork`).

        Raises
        ------
        BackendError
            When the backend does not declare the capability (the default).
        """
        raise BackendError(self.lacks_message(frozenset({Capability.TEMPOTRON})))

    def build_conv(
        self,
        spec: ConvNetworkSpec,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> SpikingNetwork[ConvNetworkSpec]:
        """Build a convolutional LIF network (capability ``conv_lif``) on ``[T, B, C, S, S]``
        input; the same weights give the same spikes on every backend
        (:mod:`spikebench.backends.conv`, checked by
        :func:`~spikebench.backends.conformance.conv.check_conv_backend`).

        Raises
        ------
        BackendError
            When the backend does not declare the capability (the default).
        """
        raise BackendError(self.lacks_message(frozenset({Capability.CONV_LIF})))

    def lacking(self, needs: frozenset[Capability]) -> frozenset[Capability]:
        """The capabilities of ``needs`` this backend does not provide."""
        return frozenset(needs) - self.capabilities

    def lacks_message(self, needs: frozenset[Capability]) -> str:
        """Why this backend cannot provide ``needs`` ("" when it can): the one wording."""
        missing = self.lacking(needs)
        if not missing:
            return ""
        return (f"backend {self.name!r} cannot build {describe_capabilities(missing)} "
                f"(capabilities {', '.join(sorted(missing))}); it provides: "
                f"{', '.join(sorted(self.capabilities)) or 'none'}")

    def warm_up(self, device: str | torch.device = "cpu") -> None:
        """Pay the one-time costs (kernel builds or loads, compilation, first allocations) of
        every declared capability with a tiny build and pass, so that no timed fit pays them.
        The harness calls it once per process and backend (:func:`~spikebench.harness.fit.
        warm_up`); override it when a framework has other one-time costs."""
        import torch

        if Capability.DENSE_LIF in self.capabilities:
            net = self.build(NetworkSpec(sizes=(4, 8, 2)), device=device, seed=0)
            dev = next(iter(net.parameters())).device
            out = net(torch.rand(6, 3, 4, device=dev)).membrane.sum()
            if Capability.SURROGATE_GRADIENTS in self.capabilities:
                out.backward()
        if Capability.CONV_LIF in self.capabilities:
            conv = self.build_conv(ConvNetworkSpec(image_size=8, channels=(2,)), device=device,
                                   seed=0)
            dev = next(iter(conv.parameters())).device
            out = conv(torch.rand(2, 2, 1, 8, 8, device=dev)).membrane.sum()
            if Capability.SURROGATE_GRADIENTS in self.capabilities:
                out.backward()
        if Capability.TEMPOTRON in self.capabilities:
            layer = self.build_tempotron(4, 2, steps=8, device=device, seed=0)
            layer(torch.full((3, 4), 2.0, device=layer.weight.device))

    def check_supported(self, spec: NetworkSpec) -> None:
        """Raise :class:`BackendError` naming the field if ``spec`` is not supported."""
        problems = []
        if spec.neuron not in self.neurons:
            problems.append(f"neuron {spec.neuron!r} (supported: {sorted(self.neurons)})")
        if spec.reset not in self.resets:
            problems.append(f"reset {spec.reset!r} (supported: {sorted(self.resets)})")
        if spec.surrogate not in self.surrogates:
            problems.append(f"surrogate {spec.surrogate!r} (supported: {sorted(self.surrogates)})")
        if problems:
            raise BackendError(f"backend {self.name!r} does not support " + "; ".join(problems))

    def describe(self) -> dict[str, Any]:
        """Name, framework version and what the backend provides (for ``spikebench backends``
        and ``protocol.json``)."""
        return {
            "name": self.name,
            "version": self.version(),
            "capabilities": sorted(self.capabilities),
            "neurons": sorted(self.neurons),
            "resets": sorted(self.resets),
            "surrogates": sorted(self.surrogates),
        }


T = TypeVar("T")


def build_seeded(factory: Callable[[], T], seed: int | None) -> T:
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


class NetworkClass(Protocol):
    """What :attr:`ModuleBackend.network_cls` is: a network class called as
    ``network_cls(spec)``."""

    def __call__(self, spec: NetworkSpec, /) -> SpikingNetwork[NetworkSpec]: ...


class ConvNetworkClass(Protocol):
    """What :attr:`ModuleBackend.conv_network_cls` gives: a class called as
    ``conv_network_cls(spec)``."""

    def __call__(self, spec: ConvNetworkSpec, /) -> SpikingNetwork[ConvNetworkSpec]: ...


class TempotronClass(Protocol):
    """What :attr:`ModuleBackend.tempotron_cls` is: a layer class called as
    ``tempotron_cls(n_inputs, n_outputs, steps=, tau=, tau_s=)``."""

    def __call__(self, n_inputs: int, n_outputs: int, /, *, steps: int, tau: float,
                 tau_s: float | None) -> TempotronNetwork: ...


class ModuleBackend(Backend):
    """A :class:`Backend` whose network and Tempotron are ``torch.nn.Module`` classes built from
    their arguments: set :attr:`network_cls` (called as ``network_cls(spec)``) and, for the
    Tempotron rule, :attr:`tempotron_cls` (``tempotron_cls(n_inputs, n_outputs, steps=, tau=,
    tau_s=)``). Building checks support, seeds the initial weights (:func:`build_seeded`) and
    moves the module to the device and dtype (float32 by default), as the built-ins do.
    """

    network_cls: ClassVar[NetworkClass]
    tempotron_cls: ClassVar[TempotronClass | None] = None
    #: The convolutional network class (``conv_network_cls(spec)``) for capability
    #: ``conv_lif``, or a zero-argument function returning it (imported on first use).
    conv_network_cls: ClassVar[ConvNetworkClass | Callable[[], ConvNetworkClass] | None] = None

    def build(self, spec: NetworkSpec, *, device: str | torch.device = "cpu",
              dtype: torch.dtype | None = None, seed: int | None = None
              ) -> SpikingNetwork[NetworkSpec]:
        import torch

        self.check_supported(spec)
        cls = type(self).network_cls
        net = build_seeded(lambda: cls(spec), seed)
        return net.to(device=device, dtype=dtype or torch.float32)

    def build_tempotron(self, n_inputs: int, n_outputs: int, *, steps: int, tau: float = 15.0,
                        tau_s: float | None = None, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, seed: int | None = None
                        ) -> TempotronNetwork:
        cls = type(self).tempotron_cls
        if cls is None:
            return super().build_tempotron(n_inputs, n_outputs, steps=steps, tau=tau,
                                           tau_s=tau_s, device=device, dtype=dtype, seed=seed)
        import torch

        layer = build_seeded(lambda: cls(n_inputs, n_outputs, steps=steps, tau=tau,
                                         tau_s=tau_s), seed)
        return layer.to(device=device, dtype=dtype or torch.float32)

    def build_conv(self, spec: ConvNetworkSpec, *, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, seed: int | None = None
                   ) -> SpikingNetwork[ConvNetworkSpec]:
        factory = type(self).conv_network_cls
        if factory is None:
            return super().build_conv(spec, device=device, dtype=dtype, seed=seed)
        import torch

        cls = (cast("ConvNetworkClass", factory) if isinstance(factory, type)
               else cast("Callable[[], ConvNetworkClass]", factory)())  # imported on first use
        spec.neuron_spec()
        net = build_seeded(lambda: cls(spec), seed)
        return net.to(device=device, dtype=dtype or torch.float32)


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


__all__ = [
    "RESETS", "SURROGATES", "Backend", "ConvNetworkClass", "ConvNetworkSpec", "LinearLayersWeights",
    "ModuleBackend", "NetworkClass", "NetworkOutput", "NetworkSpec", "Reset", "SpecT",
    "SpikingNetwork", "Surrogate", "TempotronClass", "TempotronNetwork", "TorchModuleMethods",
    "build_seeded", "set_linear_weights",
]
