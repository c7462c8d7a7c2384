"""The networks a backend builds, as the harness and the rules see them.

``SpikingNetwork`` (dense or convolutional LIF network, ``Backend.build`` /
``Backend.build_conv``), its ``NetworkOutput``, and ``TempotronNetwork``
(``Backend.build_tempotron``). Every concrete network is also a ``torch.nn.Module``; the
equation they implement is pinned in ``spikebench.backends.base``, which re-exports these
classes (the contract's one import path).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from typing import Self

    import torch

    from spikebench.backends.specs import ConvNetworkSpec, NetworkSpec


@dataclasses.dataclass
class NetworkOutput:
    """What one forward pass over ``[T, B, F]`` input returns.

    Attributes
    ----------
    spikes : torch.Tensor
        The output layer's spikes ``S[t]``, shape ``[T, B, O]``.
    membrane : torch.Tensor
        The output layer's charge ``H[t]`` (the membrane before reset), shape ``[T, B, O]``.
    layer_spike_counts : list of torch.Tensor
        Per layer, the total number of spikes in the batch (0-d tensors), for the spike and
        synaptic-operation counters.

    Examples
    --------
    >>> import torch
    >>> from spikebench.backends import NetworkSpec, get_backend
    >>> net = get_backend("custom").build(NetworkSpec(sizes=(4, 8, 2)), seed=0)
    >>> out = net(torch.ones(5, 3, 4))
    >>> out.membrane.shape, len(out.layer_spike_counts)
    (torch.Size([5, 3, 2]), 2)
    """

    spikes: torch.Tensor
    membrane: torch.Tensor
    layer_spike_counts: list[torch.Tensor]


#: The spec a network was built from: ``NetworkSpec`` (dense) or ``ConvNetworkSpec``.
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

    ``SpikingNetwork[NetworkSpec]`` is what ``Backend.build`` returns,
    ``SpikingNetwork[ConvNetworkSpec]`` what ``Backend.build_conv`` returns. Weights are
    exchanged in one neutral format (``[(W [out, in], b [out] or None), ...]`` per layer,
    float tensors), so the same weights can be loaded into every backend and give the same
    spikes there (``check_backend`` proves it).

    Attributes
    ----------
    spec : NetworkSpec or ConvNetworkSpec
        The spec the network was built from.

    Examples
    --------
    >>> import torch
    >>> from spikebench.backends import NetworkSpec, get_backend
    >>> spec = NetworkSpec(sizes=(4, 8, 2))
    >>> custom = get_backend("custom").build(spec, seed=0)
    >>> other = get_backend("snntorch").build(spec)
    >>> other.set_weights(custom.get_weights())
    >>> x = torch.rand(10, 3, 4)  # [T, B, F]
    >>> out = custom(x)
    >>> out.spikes.shape
    torch.Size([10, 3, 2])
    >>> torch.equal(out.spikes, other(x).spikes)
    True
    """

    spec: SpecT

    if TYPE_CHECKING:
        def __call__(self, x: torch.Tensor) -> NetworkOutput: ...

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> NetworkOutput:
        """Run all time steps of ``x`` from a fresh (zero) state.

        Parameters
        ----------
        x : torch.Tensor
            Input ``[T, B, F]`` (``[T, B, C, S, S]`` for a convolutional network): currents or
            spikes, already encoded.

        Returns
        -------
        NetworkOutput
            The output layer's spikes and charge at every step, and each layer's spike count.
        """

    @abc.abstractmethod
    def get_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Detached copies of the weights.

        Returns
        -------
        list of (torch.Tensor, torch.Tensor or None)
            Per layer ``(W [out, in], b [out])``, ``b`` None without biases.
        """

    @abc.abstractmethod
    def set_weights(self, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        """Load weights in the neutral format.

        Parameters
        ----------
        weights : sequence of (torch.Tensor, torch.Tensor or None)
            Per layer ``(W [out, in], b [out] or None)``, as ``get_weights`` returns them.

        Raises
        ------
        BackendError
            The number of layers or a shape does not match the spec.
        """


class TempotronNetwork(TorchModuleMethods, abc.ABC):
    """A Tempotron layer (Gütig & Sompolinsky 2006). Concrete classes also subclass ``nn.Module``.

    ``forward(spike_times)`` takes one spike time per afferent, ``[B, N_in]`` in time-step units
    (``inf`` or NaN = no spike), and returns the *unshunted* potential on the grid
    ``t = 0, 1, ..., steps-1``::

        V[t, b, o] = Σ_i weight[o, i] K(t - t_i)      K(s) = V0 (e^{-s/τ} - e^{-s/τs}) for s >= 0

    with ``V0`` normalising the kernel's peak to 1 (``spikebench.backends.tempotron.
    psp_kernel``). Shunting after the first threshold crossing and the learning rule live in
    ``spikebench.harness.rules.tempotron``, identical for every backend.

    Attributes
    ----------
    steps : int
        Time steps of the potential's grid.
    tau, tau_s : float
        Membrane and synaptic time constants of the kernel, in steps.
    weight : torch.Tensor
        ``[N_out, N_in]`` afferent weights, an ``nn.Parameter`` the rules update in place.

    Examples
    --------
    >>> import torch
    >>> from spikebench.backends import get_backend
    >>> layer = get_backend("custom").build_tempotron(3, 1, steps=20, seed=0)
    >>> times = torch.tensor([[2.0, 5.5, float("inf")]])  # the third afferent is silent
    >>> layer(times).shape  # [steps, B, N_out]
    torch.Size([20, 1, 1])
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
        """The unshunted potential of each pattern.

        Parameters
        ----------
        spike_times : torch.Tensor
            ``[B, N_in]`` spike times in time-step units (``inf`` or NaN: no spike).

        Returns
        -------
        torch.Tensor
            ``[steps, B, N_out]`` potentials on the grid ``t = 0, ..., steps - 1``.
        """

    def prepare(self, spike_times: torch.Tensor, kernel: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Prepare fixed patterns once; return their potential as a function of the weights.

        A rule that presents the same patterns for many epochs prepares them once, so that what
        does not depend on the weights is computed once per fit and only the weight-dependent
        part runs on every mini-batch, alike for every backend. This default keeps the spike
        times and calls ``forward``; ``check_tempotron`` checks overrides.

        Parameters
        ----------
        spike_times : torch.Tensor
            ``[n, N_in]`` spike times of every pattern.
        kernel : torch.Tensor, optional
            The rule's kernel matrix ``K(t − t_i)``, ``[steps, n, N_in]``, of the same patterns
            on this layer's grid (τ, τs), for a layer whose forward is that kernel times
            ``Wᵀ``; a layer with dynamics of its own ignores it.

        Returns
        -------
        callable
            ``potential(idx)``: the unshunted potential ``[steps, len(idx), N_out]`` of the
            patterns ``idx`` (a 1-d index tensor) with the weights *at the time of the call*;
            equal to ``forward(spike_times[idx])``.
        """
        return lambda idx: self(spike_times[idx])


__all__ = ["NetworkOutput", "SpecT", "SpikingNetwork", "TempotronNetwork", "TorchModuleMethods"]
