"""The project's exception types: every error a user can trigger is one of these.

Each message names the file, field or value at fault and says what to do. Catching
``SpikebenchError`` catches them all (the CLI prints the message without a traceback).
"""

from __future__ import annotations


class SpikebenchError(Exception):
    """Base class of every user-facing spikebench error.

    Its message names the file, field or value at fault and says what to do; the command line
    prints it as one ``spikebench: error:`` line.

    Examples
    --------
    >>> import spikebench
    >>> from spikebench.errors import SpecError
    >>> try:
    ...     raise SpecError("[study].seed: must be >= 0, got -1")
    ... except spikebench.SpikebenchError as error:
    ...     print(error)
    [study].seed: must be >= 0, got -1
    """


class DataError(SpikebenchError, ValueError):
    """Bad input data: dataset.json, a volume, a feature table."""


class SpecError(SpikebenchError, ValueError):
    """A study spec (TOML) that is malformed, misspelt or impossible."""


class BackendError(SpikebenchError, ValueError):
    """A backend cannot build or run what was asked (unsupported neuron, reset, surrogate...).

    Examples
    --------
    >>> from spikebench.backends import BackendError, NetworkSpec
    >>> try:
    ...     NetworkSpec(sizes=(4,))
    ... except BackendError as error:
    ...     print(error)
    NetworkSpec.sizes must list >= 2 positive widths, got (4,)
    """


class RuleError(SpikebenchError, ValueError):
    """A learning rule cannot train with the given parameters or backend."""


class UsageError(SpikebenchError):
    """A command line the CLI refuses (printed as one line, exit code 2)."""


class OutputError(SpikebenchError, OSError):
    """A file spikebench writes could not be written (a full disk, a quota, a read-only or
    forbidden folder). The message names the file and the fix; the ``errno``, ``strerror`` and
    ``filename`` of the cause are kept, so code that handles ``OSError`` still does."""

    def __init__(self, message: str, code: int | None = None, strerror: str | None = None,
                 filename: str | None = None) -> None:
        OSError.__init__(self, code, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str | None, str | None]]:
        return type(self), (self.message, self.errno, self.strerror, self.filename)
