"""SNN backends behind one contract, discovered through the ``spikebench.backends`` entry points.

Users see ``spikebench.backends.get_backend("snntorch")``; third-party packages register their
own ``Backend`` subclass under the same entry-point group and appear in ``spikebench
backends`` without any change here.
"""

from __future__ import annotations

from spikebench.backends.base import (
    RESETS,
    SURROGATES,
    Backend,
    NetworkOutput,
    NetworkSpec,
    SpikingNetwork,
)
from spikebench.backends.registry import available_backends, get_backend
from spikebench.errors import BackendError

__all__ = [
    "RESETS",
    "SURROGATES",
    "Backend",
    "BackendError",
    "NetworkOutput",
    "NetworkSpec",
    "SpikingNetwork",
    "available_backends",
    "get_backend",
]
