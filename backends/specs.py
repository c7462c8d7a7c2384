"""The framework-neutral network specs every backend builds: plain frozen values.

``NetworkSpec`` describes a feed-forward LIF network, ``ConvNetworkSpec`` a
convolutional one; the equations they pin are in ``spikebench.backends.base`` (dense LIF)
and ``spikebench.backends.conv`` (convolutional stages). Invalid values raise
``BackendError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Literal

from spikebench.errors import BackendError

Reset = Literal["subtract", "zero", "none"]
Surrogate = Literal["fast_sigmoid", "arctan", "sigmoid"]

#: Surrogate derivatives ``dS/dH`` of ``z = H - θ`` with slope ``k`` (the same in every backend):
#: fast_sigmoid: 1 / (1 + k|z|)^2            (snnTorch ``fast_sigmoid(slope=k)``)
#: arctan:       (k/2) / (1 + (π/2 · k · z)^2)  (snnTorch ``atan(alpha=k)``,
#:                                              SpikingJelly ``ATan(alpha=k)``)
#: sigmoid:      k σ(kz)(1 - σ(kz))          (snnTorch ``sigmoid(slope=k)``,
#:                                            SpikingJelly ``Sigmoid(alpha=k)``)
SURROGATES: tuple[Surrogate, ...] = ("fast_sigmoid", "arctan", "sigmoid")
RESETS: tuple[Reset, ...] = ("subtract", "zero", "none")


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Framework-neutral description of a feed-forward LIF network.

    Every backend builds the same network from it (the equation is pinned in
    ``spikebench.backends.base``).

    Parameters
    ----------
    sizes : tuple of int
        Layer widths from input to output, e.g. ``(64, 128, 2)``: two LIF layers.
    beta : float, default 0.9
        Membrane decay per step, in [0, 1].
    threshold : float, default 1.0
        Firing threshold θ (> 0).
    reset : {"subtract", "zero", "none"}, default "subtract"
        What a spike does to the membrane (``RESETS``).
    surrogate : {"fast_sigmoid", "arctan", "sigmoid"}, default "fast_sigmoid"
        Derivative that replaces ``dS/dH`` in the backward pass (``SURROGATES``).
    slope : float, default 25.0
        The surrogate's sharpness k (> 0).
    neuron : str, default "lif"
        Neuron model; backends declare the ones they build.
    bias : bool, default True
        Whether the linear layers have biases.

    Raises
    ------
    BackendError
        A value out of range, naming the field.

    Examples
    --------
    >>> from spikebench.backends import NetworkSpec
    >>> spec = NetworkSpec(sizes=(64, 128, 2), reset="zero")
    >>> spec.n_layers
    2
    >>> NetworkSpec(sizes=(64, 2), beta=1.5)
    Traceback (most recent call last):
    ...
    spikebench.errors.BackendError: NetworkSpec.beta must be in [0, 1], got 1.5
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
        """LIF layers: ``len(sizes) - 1``."""
        return len(self.sizes) - 1


@dataclasses.dataclass(frozen=True)
class ConvNetworkSpec:
    """Framework-neutral description of a convolutional LIF network.

    ``len(channels)`` stages (convolution ``kernel`` × ``kernel``, same padding; max-pooling
    ``pool`` × ``pool`` of the currents; LIF neurons), then dense LIF layers ``hidden`` and
    ``outputs`` on the flattened maps, run on ``[T, B, in_channels, image_size, image_size]``
    input (``spikebench.backends.conv``).

    Parameters
    ----------
    image_size : int, default 64
        Side of the square input, in pixels.
    in_channels : int, default 1
        Input channels.
    channels : tuple of int, default (8, 16)
        Output channels of each convolutional stage.
    kernel : int, default 3
        Convolution kernel side (odd).
    pool : int, default 2
        Max-pooling window and stride of each stage.
    hidden : tuple of int, default ()
        Widths of the dense hidden layers.
    outputs : int, default 2
        Output neurons.
    beta, threshold, reset, surrogate, slope, bias
        The neurons' parameters, as in ``NetworkSpec``.

    Raises
    ------
    BackendError
        A value out of range, or an image too small for the pooling stages.

    Examples
    --------
    >>> from spikebench.backends.specs import ConvNetworkSpec
    >>> spec = ConvNetworkSpec(image_size=16, channels=(4, 8), hidden=(32,))
    >>> spec.feature_size, spec.dense_sizes, spec.n_layers
    (4, (128, 32, 2), 4)
    """

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
        """The neuron parameters as a dense ``NetworkSpec`` (for the framework nodes)."""
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
