"""The custom engine as a backend plug-in: what it builds and from which classes.

The engine itself — the LIF recurrence, its fused C++ kernels, the whole-network pass — is
:mod:`spikebench.backends.custom`; its convolutional network is
:func:`spikebench.backends.conv.custom_network_class`; its Tempotron the direct kernel
evaluation :class:`~spikebench.backends.tempotron.DirectTempotron`.
"""

from __future__ import annotations

from spikebench.backends.base import ModuleBackend
from spikebench.backends.capabilities import ALL as ALL_CAPABILITIES
from spikebench.backends.conv import custom_network_class
from spikebench.backends.custom import CustomNetwork
from spikebench.backends.tempotron import DirectTempotron


class CustomBackend(ModuleBackend):
    """spikebench's own engine (no framework dependency beyond PyTorch)."""

    name = "custom"
    framework = "torch"
    capabilities = ALL_CAPABILITIES
    network_cls = CustomNetwork
    conv_network_cls = custom_network_class
    tempotron_cls = DirectTempotron

    def version(self) -> str:
        """The engine is part of spikebench: spikebench's version (and the torch it runs on)."""
        from importlib.metadata import PackageNotFoundError, version

        import torch

        try:
            own = version("spikebench")
        except PackageNotFoundError:  # a source tree that was never installed
            own = "unknown"
        return f"{own} (torch {torch.__version__.split('+')[0]})"
