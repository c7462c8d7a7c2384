"""What a backend can build: the small vocabulary that connects backends and learning rules.

A backend declares the capabilities it provides (:attr:`~spikebench.backends.base.Backend.
capabilities`); a learning rule declares the ones it needs (:attr:`~spikebench.harness.rules.
base.Rule.needs`). A backend serves a rule exactly when it provides everything the rule needs,
decided in one place (:mod:`spikebench.harness.rules.serving`), in the manner of
scikit-learn's estimator tags: neither side names the other.

========================  =====================================================================
capability                what the backend provides
========================  =====================================================================
``dense_lif``             :meth:`~spikebench.backends.base.Backend.build`: a feed-forward LIF
                          network (:class:`~spikebench.backends.base.NetworkSpec`) on
                          ``[T, B, F]`` input, forward pass
``surrogate_gradients``   the backward pass of its networks through the spec's surrogate
                          derivative ``dS/dH`` (gradient-trained rules)
``conv_lif``              :meth:`~spikebench.backends.base.Backend.build_conv`: a convolutional
                          LIF network (:class:`~spikebench.backends.conv.ConvNetworkSpec`) on
                          ``[T, B, C, S, S]`` input
``tempotron``             :meth:`~spikebench.backends.base.Backend.build_tempotron`: Tempotron
                          potentials (:class:`~spikebench.backends.base.TempotronNetwork`)
========================  =====================================================================

The conformance kit (:func:`~spikebench.backends.conformance.check_backend`) checks each
declared capability against the reference engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Capability(StrEnum):
    """One thing a backend can build (module docstring)."""

    DENSE_LIF = "dense_lif"
    SURROGATE_GRADIENTS = "surrogate_gradients"
    CONV_LIF = "conv_lif"
    TEMPOTRON = "tempotron"

    @property
    def description(self) -> str:
        """What the capability means, in the words the listings and error messages use."""
        return DESCRIPTIONS[self]


DESCRIPTIONS: dict[Capability, str] = {
    Capability.DENSE_LIF: "a dense LIF network",
    Capability.SURROGATE_GRADIENTS: "surrogate gradients through its networks",
    Capability.CONV_LIF: "a convolutional LIF network",
    Capability.TEMPOTRON: "Tempotron potentials",
}

#: Everything the built-in backends provide.
ALL: frozenset[Capability] = frozenset(Capability)


def capability_set(values: Iterable[str | Capability], where: str) -> frozenset[Capability]:
    """``values`` as capabilities; a ``TypeError`` naming ``where`` and the known names for an
    unknown one (a plug-in's declaration is checked when its class is defined)."""
    out = set()
    for value in values:
        try:
            out.add(Capability(value))
        except ValueError:
            known = ", ".join(c.value for c in Capability)
            raise TypeError(f"{where}: unknown capability {value!r}; known: {known}") from None
    return frozenset(out)


def describe(capabilities: Iterable[Capability]) -> str:
    """``"a dense LIF network, Tempotron potentials"`` (in the vocabulary's order)."""
    have = set(capabilities)
    return ", ".join(c.description for c in Capability if c in have) or "nothing"
