"""Typed rule parameters: one frozen dataclass per rule, built from an Optuna or spec dict.

A rule declares ``params_type``, a frozen dataclass whose fields are exactly the names of its
:meth:`~spikebench.harness.rules.Rule.search_space` (with their types and defaults), and its
``fit`` reads ``params.hidden`` instead of ``int(p["hidden"])``. The harness turns the values
Optuna drew (or a spec fixed) into that object with :func:`parse_params` before every fit:

- a field typed ``int`` takes an integer (or a float with an integral value), ``float`` any
  real number (NaN and inf pass: the rule's own :func:`~spikebench.harness.rules.base.
  check_finite_params` prunes the trial as diverged), ``bool`` only ``True``/``False``,
  ``str`` only a string; ``Literal[...]`` one of its values; ``tuple[X, ...]`` a list or
  tuple of ``X`` (a single ``X`` is a one-element tuple); ``X | None`` also ``None``; any
  other annotation takes the value as it is;
- an unknown or a missing key, or a value of the wrong kind, is a :class:`RuleError` naming
  the rule and the key.

A rule with genuinely free-form parameters keeps ``params_type = dict`` (the default of
:class:`~spikebench.harness.rules.Rule`): :func:`parse_params` then hands ``fit`` a plain
``dict`` of the values, unchecked.

Example::

    @dataclasses.dataclass(frozen=True)
    class ReadoutParams:
        hidden: int = 64
        lr: float = 1e-2
        encoding: str = "rate"

    parse_params("readout", ReadoutParams, {"hidden": 32.0, "lr": 1, "encoding": "rate"})
    # ReadoutParams(hidden=32, lr=1.0, encoding='rate')
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np

from spikebench.errors import RuleError

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def is_free_form(params_type: type) -> bool:
    """Whether ``params_type`` declares free-form parameters (a ``dict``, not a dataclass)."""
    return not dataclasses.is_dataclass(params_type)


def field_types(params_type: type) -> dict[str, Any]:
    """``{field: resolved annotation}`` of a parameters dataclass, in field order."""
    hints = typing.get_type_hints(params_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(params_type)}


def defaults(params_type: type) -> dict[str, Any]:
    """``{field: default}`` of a parameters dataclass (``dataclasses.MISSING`` where none)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params_type):
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = f.default
    return out


def parse_params(rule: str, params_type: type, values: Mapping[str, Any]) -> Any:
    """``params_type`` built from ``values`` (module docstring); ``rule`` names the rule in
    every error. A ``dict`` ``params_type`` returns ``dict(values)``; an instance of
    ``params_type`` is returned as it is."""
    if isinstance(values, params_type) and not isinstance(values, Mapping):
        return values
    if is_free_form(params_type):
        return dict(values)
    if not isinstance(values, Mapping):
        raise RuleError(f"rule {rule!r}: parameters must be a mapping of names to values, "
                        f"got {type(values).__name__}")
    types_ = field_types(params_type)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise RuleError(f"rule {rule!r}: unknown parameter {unknown[0]!r}"
                        f"{f' (and {unknown[1:]})' if unknown[1:] else ''}; "
                        f"its parameters are {', '.join(types_)}")
    missing = [name for name in types_ if name not in values]
    if missing:
        raise RuleError(f"rule {rule!r}: missing parameter {missing[0]!r}"
                        f"{f' (and {missing[1:]})' if missing[1:] else ''}")
    return params_type(**{name: coerce(rule, name, hint, values[name])
                          for name, hint in types_.items()})


def coerce(rule: str, name: str, hint: Any, value: Any) -> Any:
    """``value`` as the type ``hint`` of parameter ``name`` (module docstring)."""
    if hint in _KINDS:
        out = _scalar(hint, value)
        if out is _REFUSED:
            raise RuleError(f"rule {rule!r}: parameter {name!r} must be {_KINDS[hint]}, "
                            f"got {value!r} ({type(value).__name__})")
        return out
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise RuleError(f"rule {rule!r}: parameter {name!r} must be one of "
                            f"{', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        items = value if isinstance(value, list | tuple) else (value,)
        return tuple(coerce(rule, name, args[0], item) for item in items)
    if origin in (typing.Union, types.UnionType) and type(None) in args and value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return coerce(rule, name, rest[0], value)
    return value


_REFUSED = object()


def _scalar(kind: type, value: Any) -> Any:
    """``value`` as ``kind`` (int, float, bool or str), or ``_REFUSED``."""
    is_bool = isinstance(value, bool | np.bool_)
    if kind is bool:
        return bool(value) if is_bool else _REFUSED
    if kind is str:
        return value if isinstance(value, str) else _REFUSED
    if is_bool or not isinstance(value, numbers.Real):
        return _REFUSED
    if kind is float:
        return float(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return int(number) if number.is_integer() else _REFUSED


def as_dict(params: Any) -> dict[str, Any]:
    """A plain ``{name: value}`` of a parameters object (a dataclass or a mapping), e.g. to
    record it in ``model.info``."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    return dict(params)
