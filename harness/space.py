"""Search spaces: a rule's default hyperparameter ranges, overridden key by key from the spec.

In a spec (``[space.<rule>]``) a parameter is a fixed value, a range or a list of choices::

    lr = {low = 1e-4, high = 1e-1, log = true}   # float range (log-uniform)
    hidden = {low = 16, high = 128, step = 16}   # int range (both bounds ints)
    encoding = {choices = ["direct", "rate"]}    # categorical
    epochs = 20                                  # fixed
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpecError

if TYPE_CHECKING:
    import optuna


@dataclasses.dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False


@dataclasses.dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    step: int = 1


@dataclasses.dataclass(frozen=True)
class Categorical:
    choices: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Fixed:
    value: Any


Param = Float | Int | Categorical | Fixed


def parse_param(where: str, raw: Any) -> Param:
    """Turn a spec value into a :data:`Param`; ``where`` names the key in error messages."""
    if isinstance(raw, Float | Int | Categorical | Fixed):
        return raw
    if not isinstance(raw, Mapping):
        if isinstance(raw, list):
            raise SpecError(f"{where}: a list is ambiguous; write {{choices = {raw!r}}}")
        return Fixed(raw)
    if "choices" in raw:
        return _parse_choices(where, raw)
    return _parse_range(where, raw)


def _parse_choices(where: str, raw: Mapping[str, Any]) -> Categorical:
    """``{choices = [...]}``: a non-empty list and no other key."""
    keys = set(raw)
    if keys - {"choices"}:
        other = sorted(keys - {"choices"})
        raise SpecError(f"{where}: 'choices' cannot be combined with {other}")
    choices = raw["choices"]
    if not isinstance(choices, list) or not choices:
        raise SpecError(f"{where}.choices must be a non-empty list, got {choices!r}")
    return Categorical(tuple(choices))


def _check_range_keys(where: str, keys: set[str]) -> None:
    unknown = keys - {"low", "high", "log", "step"}
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {sorted(unknown)}; a range takes low, high, log, step"
        )
    if not {"low", "high"} <= keys:
        raise SpecError(f"{where}: a range needs both 'low' and 'high' (got {sorted(keys)})")


def _check_bounds(where: str, low: Any, high: Any, log: Any) -> None:
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{where}.{name} must be a finite number, got {v!r}")
    if not isinstance(log, bool):
        raise SpecError(f"{where}.log must be true or false, got {log!r}")


def _optuna_checked(where: str, low: Any, high: Any, log: bool, step: int | None = None,
                    integer: bool = False) -> None:
    """Let Optuna's own distributions judge the range (low <= high, log ranges positive, no
    step on a log range): the spec is refused with Optuna's reason, named by key, before any
    trial would hit it."""
    from optuna.distributions import FloatDistribution, IntDistribution

    try:
        if integer:
            IntDistribution(low, high, log=log, step=step or 1)
        else:
            FloatDistribution(low, high, log=log)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _parse_int_range(where: str, raw: Mapping[str, Any], low: int, high: int, log: bool) -> Int:
    step = raw.get("step", 1)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise SpecError(f"{where}.step must be a positive integer, got {step!r}")
    _optuna_checked(where, low, high, log, step, integer=True)
    return Int(low, high, log, step)


def _parse_range(where: str, raw: Mapping[str, Any]) -> Float | Int:
    """``{low, high[, log][, step]}``: an int range when both bounds are ints, else float."""
    keys = set(raw)
    _check_range_keys(where, keys)
    low, high, log = raw["low"], raw["high"], raw.get("log", False)
    _check_bounds(where, low, high, log)
    if isinstance(low, int) and isinstance(high, int):
        return _parse_int_range(where, raw, low, high, log)
    if "step" in keys:
        raise SpecError(f"{where}.step is only for integer ranges (low and high both integers)")
    _optuna_checked(where, float(low), float(high), log)
    return Float(float(low), float(high), log)


def merge_space(
    defaults: Mapping[str, Param], overrides: Mapping[str, Any], where: str,
    domains: Mapping[str, Domain] | None = None,
) -> dict[str, Param]:
    """Defaults updated by the spec's overrides; unknown names are errors listing the known.
    Every override is checked against its default and its domain (``domains``, the rule's
    :meth:`~spikebench.harness.rules.Rule.domains`; by default :func:`builtin_domains`) by
    :func:`check_override` before any work."""
    if domains is None:
        domains = builtin_domains(defaults)
    space = dict(defaults)
    for key, raw in overrides.items():
        if key not in defaults:
            raise SpecError(
                f"{where}.{key}: unknown parameter; known: {', '.join(sorted(defaults))}"
            )
        space[key] = check_override(f"{where}.{key}", key, defaults[key],
                                    parse_param(f"{where}.{key}", raw), domains.get(key))
    return space


@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a hyper-parameter may take at all, whatever range a spec asks for: every
    override is checked against it before any work (a rule declares its own in
    :meth:`~spikebench.harness.rules.Rule.domains`)."""

    low: float | None = None
    high: float | None = None
    #: ``low`` itself allowed (``False``: strictly above it, e.g. a learning rate > 0)
    low_inclusive: bool = True
    #: A count (neurons, steps, epochs...): the message says so.
    count: bool = False

    @classmethod
    def counting(cls, high: int) -> Domain:
        """An integer that counts something: 1 to ``high`` (the bound that keeps memory and
        run time finite)."""
        return cls(1, high, count=True)

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is outside the domain (a message naming ``name``), or ``None``."""
        if self.count and not self.low <= value <= self.high:
            return (f"{value} is out of range; {name} counts something and must be between "
                    f"{self.low:g} and {self.high:g}")
        below = self.low is not None and (
            value < self.low if self.low_inclusive else value <= self.low)
        if self.low is not None and self.high is not None and (below or value > self.high):
            return f"must be between {self.low:g} and {self.high:g}, got {value!r}"
        if below:
            return f"must be {'>=' if self.low_inclusive else '>'} {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}, got {value!r}"
        return None


#: The built-in rules' parameter domains, by name (also the default for a plug-in rule that
#: declares none). Integer parameters that count something (neurons, time steps, epochs,
#: samples) are at least 1 and at most the bound that keeps memory and run time finite (time
#: steps and hidden neurons size the ``[T, B, H]`` activations; inference runs up to 16 × the
#: training T).
COUNTS: dict[str, int] = {
    "hidden": 4096, "steps": 512, "epochs": 100_000, "batch_size": 65_536,
    "patience": 100_000, "neurons_per_class": 1024, "population": 1024,
    "stdp_epochs": 10_000, "stdp_batch": 65_536, "readout_epochs": 100_000,
    "seed_patients": 100_000, "batch_per_round": 65_536,
}
#: Float hyperparameters that must be > 0 (rates, time constants, gains), ≥ 0, or in [0, 1].
POSITIVE = frozenset({"lr", "readout_lr", "tau", "tau_plus", "tau_minus", "slope", "gain",
                      "threshold", "target_rate", "init_std"})
NON_NEGATIVE = frozenset({"weight_decay", "tet_lambda", "a_plus", "homeostasis"})
UNIT = frozenset({"beta", "budget"})


def builtin_domains(names: Iterable[str]) -> dict[str, Domain]:
    """The domains of ``names`` that spikebench knows by name (:data:`COUNTS`,
    :data:`POSITIVE`, :data:`NON_NEGATIVE`, :data:`UNIT`)."""
    out: dict[str, Domain] = {}
    for name in names:
        if name in COUNTS:
            out[name] = Domain.counting(COUNTS[name])
        elif name in POSITIVE:
            out[name] = Domain(0.0, low_inclusive=False)
        elif name in NON_NEGATIVE:
            out[name] = Domain(0.0)
        elif name in UNIT:
            out[name] = Domain(0.0, 1.0)
    return out


def _kind(value: Any) -> type:
    """The spec type of a scalar: bool, int, float or str (int before float; bool first)."""
    for t in (bool, int, float, str):
        if isinstance(value, t):
            return t
    return type(value)


def _values(param: Param) -> list[Any]:
    """The values a parameter can take that decide its type and range (bounds of a range)."""
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Categorical):
        return list(param.choices)
    return [param.low, param.high]


def check_override(where: str, name: str, default: Param, param: Param,
                   domain: Domain | None = None) -> Param:
    """``param`` (the spec's override of ``name``) checked against the rule's ``default``: the
    same type (an int where a float is expected is taken as a float), finite numbers, values
    in ``domain`` (counts ≥ 1 and below their memory bound, rates > 0, ...), and for a
    parameter whose default is a set of names, only those names. Returns the (possibly
    widened) param."""
    expected = {_kind(v) for v in _values(default)}
    if len(expected) != 1 or next(iter(expected)) not in (bool, int, float, str):
        return param  # lists or mixed defaults: the rule checks them itself
    kind = next(iter(expected))
    param = _widen(param) if kind is float else param
    for value in _values(param):
        got = _kind(value)
        if got is not kind:
            shown = _TYPE_NAMES.get(got, got.__name__)
            raise SpecError(f"{where}: expected {_TYPE_NAMES[kind]} like the rule's default "
                            f"{_values(default)[0]!r}, got {value!r} ({shown})")
        _check_domain(where, name, value, domain)
    if kind is str and isinstance(default, Categorical):
        unknown = [v for v in _values(param) if v not in default.choices]
        if unknown:
            raise SpecError(f"{where}: {unknown[0]!r} is not one of "
                            f"{', '.join(map(repr, default.choices))}")
    return param


_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def _widen(param: Param) -> Param:
    """Integers given for a float parameter, as floats."""
    if isinstance(param, Fixed) and _kind(param.value) is int:
        return Fixed(float(param.value))
    if isinstance(param, Int):
        if param.step != 1:
            return param  # refused by the type check: a float range has no step
        return Float(float(param.low), float(param.high), param.log)
    if isinstance(param, Categorical):
        return Categorical(tuple(float(c) if _kind(c) is int else c for c in param.choices))
    return param


def _check_domain(where: str, name: str, value: Any, domain: Domain | None) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: must be a finite number, got {value!r}")
    if domain is not None and not isinstance(value, (bool, str)):
        problem = domain.problem(name, value)
        if problem:
            raise SpecError(f"{where}: {problem}")


def suggest(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Draw one value per parameter from an Optuna ``trial``."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, Fixed):
            params[name] = p.value
        elif isinstance(p, Float):
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            params[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step)
        else:
            params[name] = trial.suggest_categorical(name, list(p.choices))
    return params


def default_values(space: Mapping[str, Param]) -> dict[str, Any]:
    """A deterministic point of the space (the middle / first choice), for quick runs and tests."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, Fixed):
            out[name] = p.value
        elif isinstance(p, Float):
            out[name] = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
        elif isinstance(p, Int):
            mid = (p.low + p.high) // 2
            out[name] = p.low + (mid - p.low) // p.step * p.step
        else:
            out[name] = p.choices[0]
    return out
