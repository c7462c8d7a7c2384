"""The project's exception types: every error a user can trigger is one of these.

Each message names the file, field or value at fault and says what to do. Catching
:class:`SpikebenchError` catches them all (the CLI prints the message without a traceback).
"""

from __future__ import annotations


class SpikebenchError(Exception):
    """Base class of every user-facing spikebench error."""


class DataError(SpikebenchError, ValueError):
    """Bad input data: dataset.json, a volume, a feature table."""


class SpecError(SpikebenchError, ValueError):
    """A study spec (TOML) that is malformed, misspelt or impossible."""


class BackendError(SpikebenchError, ValueError):
    """A backend cannot build or run what was asked (unsupported neuron, rule, surrogate...)."""


class RuleError(SpikebenchError, ValueError):
    """A learning rule cannot train with the given parameters or backend."""


class UsageError(SpikebenchError):
    """A command line the CLI refuses (printed as one line, exit code 2)."""
