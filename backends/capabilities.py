"""What a backend can build: the small vocabulary that connects backends and learning rules.

A backend declares the capabilities it provides (``Backend.capabilities``); a learning rule
declares the ones it needs (``Rule.needs``). A backend serves a rule exactly when it provides
everything the rule needs, decided in one place (``spikebench.harness.rules.serving``), in
the manner of scikit-learn's estimator tags: neither side names the other.

========================  =====================================================================
capability                what the backend provides
========================  =====================================================================
``dense_lif``             ``build``: a feed-forward LIF
                          network (``NetworkSpec``) on
                          ``[T, B, F]`` input, forward pass
``surrogate_gradients``   the backward pass of its networks through the spec's surrogate
                          derivative ``dS/dH`` (gradient-trained rules)
``conv_lif``              ``build_conv``: a convolutional
                          LIF network (``ConvNetworkSpec``) on
                          ``[T, B, C, S, S]`` input
``tempotron``             ``build_tempotron``: Tempotron
                          potentials (``TempotronNetwork``)
========================  =====================================================================

The conformance kit (``check_backend``) checks each
declared capability against the reference engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Capability(StrEnum):
    """One thing a backend can build.

    A backend declares the capabilities it provides (``Backend.capabilities``), a rule the
    ones it needs (``Rule.needs``); a backend serves a rule when it provides them all.

    Attributes
    ----------
    DENSE_LIF : str
        ``"dense_lif"``: ``Backend.build``, a feed-forward LIF network on ``[T, B, F]`` input.
    SURROGATE_GRADIENTS : str
        ``"surrogate_gradients"``: the backward pass of its networks through the spec's
        surrogate derivative (gradient-trained rules).
    CONV_LIF : str
        ``"conv_lif"``: ``Backend.build_conv``, a convolutional LIF network.
    TEMPOTRON : str
        ``"tempotron"``: ``Backend.build_tempotron``, Tempotron potentials.

    Examples
    --------
    >>> from spikebench.backends.capabilities import Capability
    >>> Capability("conv_lif") is Capability.CONV_LIF
    True
    >>> Capability.TEMPOTRON.description
    'Tempotron potentials'
    """

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
