"""The backend contract: one framework-neutral network spec, built and run by every backend.

A *backend* turns a ``NetworkSpec`` into a ``SpikingNetwork`` (a ``torch.nn.Module``)
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
``dS/dH`` is replaced by the surrogate derivative of ``H - θ`` (``SURROGATES``).

The network's output is the last layer's spikes ``S[t]`` and charge ``H[t]`` (the membrane before
reset, which is what a membrane-potential loss reads) for every step.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, cast

if TYPE_CHECKING:

    import torch

from spikebench.backends.capabilities import Capability, capability_set
from spikebench.backends.capabilities import describe as describe_capabilities
from spikebench.backends.networks import (  # re-exported (__all__): the built networks
    NetworkOutput,
    SpecT,
    SpikingNetwork,
    TempotronNetwork,
    TorchModuleMethods,
)
from spikebench.backends.specs import (  # re-exported (__all__): the contract's values
    RESETS,
    SURROGATES,
    ConvNetworkSpec,
    NetworkSpec,
    Reset,
    Surrogate,
)
from spikebench.errors import BackendError


class Backend(abc.ABC):
    """A pluggable SNN implementation, registered in the ``spikebench.backends`` entry-point group.

    A backend declares what it can build (``capabilities``, a set of
    ``Capability``) and builds it from spikebench's
    framework-neutral specs with its own framework's primitives. It never names learning rules:
    which backend serves which rule follows from the capabilities a rule needs
    (``spikebench.harness.rules.serving``).

    Subclasses set the class attributes and implement ``build`` (and ``build_conv`` /
    ``build_tempotron`` for the capabilities they declare). Run
    ``spikebench.backends.conformance.check_backend`` from your tests to prove conformance.

    Attributes
    ----------
    name : str
        The registered name (``spikebench backends`` lists it).
    framework : str
        The Python distribution that provides the framework, for version reporting.
    neurons : frozenset of str
        Neuron models it builds (``{"lif"}``).
    resets : frozenset of str
        Reset modes it supports (of ``RESETS``: subtract, zero, none).
    surrogates : frozenset of str
        Surrogate derivatives it supports (of ``SURROGATES``).
    capabilities : frozenset of Capability
        What it can build: ``dense_lif`` (and ``surrogate_gradients``) by default; add
        ``conv_lif`` / ``tempotron`` with ``build_conv`` / ``build_tempotron``.

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
    #: What this backend can build (see ``spikebench.backends.capabilities``).
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
            The network to build; ``check_supported`` refuses what the backend lacks.
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
        """Build a Tempotron layer (capability ``tempotron``; see ``TempotronNetwork``).

        Parameters
        ----------
        n_inputs, n_outputs : int
            Afferents and output neurons.
        steps : int
            Time steps of the potential's grid.
        tau : float, default 15.0
            Membrane time constant, in steps.
        tau_s : float, optional
            Synaptic time constant (default ``tau / 4``).
        device, dtype, seed
            As for ``build``.

        Returns
        -------
        TempotronNetwork
            A ``torch.nn.Module`` returning the unshunted potential.

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
        """Build a convolutional LIF network (capability ``conv_lif``).

        The same weights give the same spikes on every backend (``spikebench.backends.conv``,
        checked by ``check_conv_backend``).

        Parameters
        ----------
        spec : ConvNetworkSpec
            The network to build.
        device, dtype, seed
            As for ``build``.

        Returns
        -------
        SpikingNetwork
            A ``torch.nn.Module`` running ``[T, B, C, S, S]`` input from a zero state.

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
        The harness calls it once per process and backend; override it when a framework has
        other one-time costs."""
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
        """Refuse a spec this backend cannot build, before any work.

        Parameters
        ----------
        spec : NetworkSpec
            The network a rule is about to build.

        Raises
        ------
        BackendError
            Naming each unsupported field (neuron, reset, surrogate) and what is supported.
        """
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
        """What the backend is and provides (for ``spikebench backends`` and
        ``protocol.json``).

        Returns
        -------
        dict
            ``name``, ``version``, ``capabilities``, ``neurons``, ``resets`` and ``surrogates``.
        """
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
    """What ``ModuleBackend.network_cls`` is: a network class called as
    ``network_cls(spec)``."""

    def __call__(self, spec: NetworkSpec, /) -> SpikingNetwork[NetworkSpec]: ...


class ConvNetworkClass(Protocol):
    """What ``ModuleBackend.conv_network_cls`` gives: a class called as
    ``conv_network_cls(spec)``."""

    def __call__(self, spec: ConvNetworkSpec, /) -> SpikingNetwork[ConvNetworkSpec]: ...


class TempotronClass(Protocol):
    """What ``ModuleBackend.tempotron_cls`` is: a layer class called as
    ``tempotron_cls(n_inputs, n_outputs, steps=, tau=, tau_s=)``."""

    def __call__(self, n_inputs: int, n_outputs: int, /, *, steps: int, tau: float,
                 tau_s: float | None) -> TempotronNetwork: ...


class ModuleBackend(Backend):
    """A ``Backend`` whose network and Tempotron are ``torch.nn.Module`` classes built from
    their arguments: set ``network_cls`` (called as ``network_cls(spec)``) and, for the
    Tempotron rule, ``tempotron_cls`` (``tempotron_cls(n_inputs, n_outputs, steps=, tau=,
    tau_s=)``). Building checks support, seeds the initial weights (``build_seeded``) and
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
